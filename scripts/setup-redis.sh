#!/usr/bin/env bash
# Make sure Debian's redis-server is installed for the queue test (test/queue.test.ts), which starts its own server on
# 127.0.0.1 on a free port, without persistence, and stops it. Idempotent: installs nothing when redis-server exists.
# Installing the package on a machine with systemd also enables Debian's own service, which listens on the loopback
# only (127.0.0.1 and ::1, port 6379); the tests do not use it.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
  echo "setup-redis: $(redis-server --version | cut -d' ' -f1-3) already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-redis: redis-server is missing and this is not a Debian/Ubuntu machine; install Redis >= 6.2 so that" >&2
  echo "             redis-server is on the PATH (the queue test starts one)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup-redis: need root (or sudo) to install redis-server" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
echo "setup-redis: installing Debian's redis-server package"
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server
redis-server --version
