#!/usr/bin/env bash
# Make sure Debian's Chromium is installed for the browser test (test/browser.test.ts) and the demo screenshot.
# Idempotent: installs nothing when /usr/bin/chromium exists. Never downloads a browser build of its own
# (no `npx playwright install`): playwright-core drives the distribution's Chromium.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "setup-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo chromium) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-chromium: /usr/bin/chromium is missing and this is not a Debian/Ubuntu machine; install Chromium" >&2
  echo "                so that /usr/bin/chromium exists (the browser test needs it)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup-chromium: need root (or sudo) to install chromium" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup-chromium: installing Debian's chromium package"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
