#!/usr/bin/env bash
# Run node with a newer lavapipe, one whose Vulkan has cooperative matrices (Mesa 25.1 and later), so that Dawn offers
# 'chromium-experimental-subgroup-matrix' (f16->f32 8x8x8) and the tensor-core conv kernel ('mma') runs and is tested
# on a machine without a GPU. Debian 12's Mesa (25.0 from bookworm-backports) has none, so this takes Mesa from
# Debian 13's backports into a folder of the project's, next to nothing installed system-wide: apt downloads the
# packages with a private configuration (no root needed) and dpkg-deb unpacks them; a copy of this machine's node,
# given that folder's glibc loader and library path (patchelf, from the same packages), runs with a Vulkan ICD file
# that names its lavapipe. Child processes that run process.execPath (tsx does) get the same node.
#
#   bash scripts/lavapipe-coopmat.sh node_modules/uvu/bin.js -r tsx test conv-variants    # node's arguments
#   npm run test:mma                                                                     # the mma tests this way
#
# The folder is .cache/lavapipe-coopmat (SR3_COOPMAT_DIR to move it; about 420 MiB, made once; the node copy is
# remade when the machine's node changes).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
D="${SR3_COOPMAT_DIR:-$ROOT/.cache/lavapipe-coopmat}"
SUITES="${SR3_COOPMAT_SUITES:-trixie trixie-backports}"
RELEASE="${SR3_COOPMAT_RELEASE:-trixie-backports}"
LIB="$D/root/usr/lib/x86_64-linux-gnu"

fail() { echo "lavapipe-coopmat: $*" >&2; exit 1; }
[ "$(uname -m)" = x86_64 ] || fail "only x86_64 is set up (this machine is $(uname -m))"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || fail "needs apt-get and dpkg-deb (a Debian-like machine)"
NODE="$(command -v node)" || fail "node is not on PATH"

if [ ! -f "$D/ready" ]; then
  echo "lavapipe-coopmat: fetching Mesa from Debian $RELEASE into $D (once)" >&2
  rm -rf "$D.part"
  mkdir -p "$D.part"/{etc/apt/sources.list.d,etc/apt/preferences.d,var/lib/apt/lists/partial,var/cache/apt/archives/partial,var/lib/dpkg,root}
  touch "$D.part/var/lib/dpkg/status"
  KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$KEYRING" ] || fail "no Debian archive keyring at $KEYRING (apt-get install debian-archive-keyring)"
  cat > "$D.part/etc/apt/sources.list.d/mesa.sources" <<SRC
Types: deb
URIs: http://deb.debian.org/debian
Suites: $SUITES
Components: main
Signed-By: $KEYRING
SRC
  APT=(apt-get -q -o "Dir=$D.part" -o "Dir::State::status=$D.part/var/lib/dpkg/status" -o Debug::NoLocking=1
       -o APT::Architecture=amd64 -o APT::Install-Recommends=false)
  "${APT[@]}" update >&2 || fail "apt-get update failed for Debian $SUITES (is deb.debian.org reachable?)"
  "${APT[@]}" install -y --download-only -t "$RELEASE" mesa-vulkan-drivers libvulkan1 patchelf >&2 || fail "downloading Mesa from $RELEASE failed"
  for f in "$D.part"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$f" "$D.part/root"; done
  rm -rf "$D.part"/var/cache/apt/archives/*.deb "$D.part"/var/lib/apt/lists
  [ -f "$D.part/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so" ] || fail "the packages had no libvulkan_lvp.so"
  rm -rf "$D"
  mv "$D.part" "$D"
  printf '{"file_format_version": "1.0.1", "ICD": {"library_path": "%s", "api_version": "1.4.0"}}\n' "$LIB/libvulkan_lvp.so" > "$D/lvp_icd.json"
  touch "$D/ready"
fi

# the node copy: this machine's binary with the folder's loader as its interpreter and the folder's libraries first
stamp="$NODE $(stat -c '%s %Y' "$NODE")"
if [ ! -x "$D/bin/node" ] || [ "$(cat "$D/bin/node.stamp" 2>/dev/null)" != "$stamp" ]; then
  mkdir -p "$D/bin"
  cp "$NODE" "$D/bin/node.part"
  # two runs, the library path first: patchelf 0.18 leaves a binary that crashes when one run does both
  PATCHELF=("$LIB/ld-linux-x86-64.so.2" --library-path "$LIB" "$D/root/usr/bin/patchelf")
  "${PATCHELF[@]}" --force-rpath --set-rpath "$LIB" "$D/bin/node.part" &&
    "${PATCHELF[@]}" --set-interpreter "$LIB/ld-linux-x86-64.so.2" "$D/bin/node.part" ||
    fail "patchelf could not rewrite the copy of $NODE"
  "$D/bin/node.part" -e '' || fail "the rewritten copy of $NODE does not start"
  mv "$D/bin/node.part" "$D/bin/node"
  echo "$stamp" > "$D/bin/node.stamp"
fi

export VK_DRIVER_FILES="$D/lvp_icd.json" VK_ICD_FILENAMES="$D/lvp_icd.json"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/sr3-xdg-runtime}"
mkdir -p "$XDG_RUNTIME_DIR"
exec "$D/bin/node" "$@"
