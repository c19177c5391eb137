#!/usr/bin/env bash
# Set up, then show the sample recording shipped in recordings/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/rtproxy show recordings/sample-voice-turn.rtrec
