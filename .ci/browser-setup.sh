#!/usr/bin/env bash
# Install what the dashboard's browser tests need, when it is missing: Debian's chromium
# (driven at /usr/bin/chromium) and the Python playwright package. Playwright's own browser
# download ("playwright install") is never used: the tests launch the system chromium.
# Safe to run again: it installs nothing that is already there.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
    echo "== browser-setup: installing Debian's chromium"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if ! python3 -c "import playwright" >/dev/null 2>&1; then
    echo "== browser-setup: installing the playwright Python package"
    python3 -m pip install -q "playwright>=1.40"
fi

chromium --version
python3 -c "import importlib.metadata as m; print('playwright', m.version('playwright'))"
