#!/usr/bin/env bash
# Installs Debian's chromium for the HTML export tests (idempotent: does nothing
# when /usr/bin/chromium is already there). playwright drives it; its own
# browser download is not used.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no apt-get; install chromium at /usr/bin/chromium by hand" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi
echo "install_browser: installing chromium"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends chromium
