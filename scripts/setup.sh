#!/usr/bin/env bash
# Creates .venv with a Python >= 3.12 that can hold mitmproxy 12 and the openai SDK 3.x
# side by side, and installs rtproxy (editable) with its test dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local c v
    for c in python3.13 python3.12 python3; do
        if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            command -v "$c"; return 0
        fi
    done
    if command -v pyenv >/dev/null 2>&1; then
        for v in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[3-9]|^3\.12' | sort -rV); do
            c="$(pyenv root)/versions/$v/bin/python"
            [ -x "$c" ] && { echo "$c"; return 0; }
        done
    fi
    return 1
}

if [ ! -x .venv/bin/python ]; then
    PY=$(find_python) || { echo "setup: need Python 3.12 or newer (python3.13 on PATH, or pyenv)" >&2; exit 2; }
    echo "setup: creating .venv with $("$PY" --version)"
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c 'import rtproxy, mitmproxy, openai, agents' || { echo "setup: install failed" >&2; exit 2; }
# Node clients for tests/test_clients_e2e.py (openai, @openai/agents-realtime), pinned by
# tests/clients/package-lock.json; `npm ci` only when the lock file changed since the last one.
if command -v npm >/dev/null 2>&1; then
    lock_sum=$(sha256sum tests/clients/package-lock.json | cut -d' ' -f1)
    if [ "$(cat tests/clients/node_modules/.lock-sha256 2>/dev/null)" != "$lock_sum" ]; then
        echo "setup: npm ci in tests/clients"
        (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error) || { echo "setup: npm ci failed" >&2; exit 2; }
        echo "$lock_sum" > tests/clients/node_modules/.lock-sha256
    fi
else
    echo "setup: npm not found; the Node client tests will be skipped" >&2
fi
echo "setup: ready (.venv/bin/rtproxy)"
