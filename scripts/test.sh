#!/usr/bin/env bash
# The test suite: unit tests and end-to-end tests on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
