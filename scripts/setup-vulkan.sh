#!/usr/bin/env bash
# Make sure this machine has a WebGPU adapter for Dawn (the `webgpu` npm package).
# With a working adapter this installs nothing. On Debian/Ubuntu without one, it installs Mesa's software
# Vulkan driver (lavapipe). Debian 12's own Mesa (22.x) is too old for Dawn, so there it comes from
# bookworm-backports. Idempotent: safe to run any number of times.
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/sr3-xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR"

probe() {
  [ -d node_modules/webgpu ] || return 1
  node --input-type=module -e '
    import { create, globals } from "webgpu";
    Object.assign(globalThis, globals);
    const gpu = create([]);
    const a = await gpu.requestAdapter();
    if (!a) process.exit(1);
    const info = a.info ?? {};
    console.log(`setup: WebGPU adapter found: ${info.description || info.device || info.vendor || "unnamed"}`);
    process.exit(0);
  ' 2>/dev/null
}

if probe; then echo "setup: nothing to install"; exit 0; fi
if [ ! -d node_modules/webgpu ]; then
  echo "setup: node_modules/webgpu is missing; run 'npm ci' first (the adapter probe needs it)" >&2
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup: no WebGPU adapter, and this is not a Debian/Ubuntu machine. Install a Vulkan driver" >&2
  echo "       (a GPU vendor's driver, or Mesa >= 24 with lavapipe: package mesa-vulkan-drivers)." >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "setup: need root (or sudo) to install mesa-vulkan-drivers" >&2; exit 1; }
  SUDO="sudo"
fi

. /etc/os-release
if [ "${ID:-}" = debian ] && [ "${VERSION_CODENAME:-}" = bookworm ]; then
  src=/etc/apt/sources.list.d/sr3-bookworm-backports.sources
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding the Debian bookworm-backports source ($src)"
    $SUDO tee "$src" >/dev/null <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  echo "setup: apt-get update"
  $SUDO apt-get update -qq
  echo "setup: installing mesa-vulkan-drivers (Mesa's software Vulkan, lavapipe) from bookworm-backports"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
else
  echo "setup: apt-get update"
  $SUDO apt-get update -qq
  echo "setup: installing mesa-vulkan-drivers (Mesa's software Vulkan, lavapipe)"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
fi

if [ -d node_modules/webgpu ]; then
  if probe; then echo "setup: done"; exit 0; fi
  echo "setup: installed Mesa's Vulkan driver, but Dawn still finds no adapter; run 'npx sr3 doctor' for details" >&2
  exit 1
fi
echo "setup: installed Mesa's Vulkan driver; run 'npm ci' and then 'npx sr3 doctor'"
