#!/usr/bin/env bash
# Stage a GPU training slice (bench/device-train.sh): writes .device-train/ (git-ignored), everything the bare GPU
# machine needs that the working tree does not carry, kept small because the tree that travels must stay under 64 MiB:
#   node.xz            this machine's node binary (as ../shared/device/stage.sh packs it)
#   node_modules.txz   only webgpu's linux-x64 Dawn build: the CLI is bundled, so no tsx, TypeScript or dev packages
#   sr3.mjs            `sr3` as one ES module (esbuild; pngjs and jpeg-js inside, webgpu left outside)
#   *.deb              the Vulkan/EGL loader libraries (apt-get download, as stage.sh)
#   photos/            bench/pack-photos.ts: the training photos at <= 512 px JPEG, the evaluation crops as PNG
#   enter.sh           source it first in the device command
# Run from the project root after `npm ci`, once per dependency or photo change (a few minutes):
#   bash bench/stage-train.sh [--train /work/photos/train] [--eval /work/photos/eval]
# It ends by printing the size of what would travel (tracked files without models/natural4x.safetensors, which the
# slice does not use and which has to leave the tree for the call, plus .device-train/) and fails over 64 MiB.
set -euo pipefail
root=$(git rev-parse --show-toplevel); cd "$root"
D=.device-train
grep -qx "/$D/" "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null || echo "/$D/" >> "$(git rev-parse --git-common-dir)/info/exclude"
mkdir -p $D
[ -s $D/node.xz ] || xz -T2 -9 -c "$(readlink -f "$(command -v node)")" > $D/node.xz
tar -cJf $D/node_modules.txz node_modules/webgpu/package.json node_modules/webgpu/index.js node_modules/webgpu/LICENSE.md \
  node_modules/webgpu/dist/linux-x64
echo "import { main } from '../engine/node/cli.ts'; process.exitCode = await main(process.argv.slice(2));" > $D/sr3-entry.ts
node_modules/.bin/esbuild $D/sr3-entry.ts --bundle --platform=node --format=esm --target=node20 --external:webgpu --external:bullmq --external:ioredis \
  --banner:js="import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);" \
  --minify --outfile=$D/sr3.mjs --log-level=warning
rm $D/sr3-entry.ts
if ! ls $D/*.deb >/dev/null 2>&1; then
  lists=/tmp/device-apt-lists; mkdir -p $lists/partial
  o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
  apt-get $o update -qq >/dev/null 2>&1
  (cd $D && apt-get $o download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
fi
sed "s#\.device/#$D/#g" "$root/../shared/device/enter.sh" > $D/enter.sh 2>/dev/null || sed "s#\.device/#$D/#g" /work/shared/device/enter.sh > $D/enter.sh
[ -d $D/photos/train ] || node_modules/.bin/tsx bench/pack-photos.ts --out $D/photos "$@"
tracked=$(git ls-files -z | grep -zv '^models/natural4x.safetensors$' | xargs -0 stat -c %s | awk '{s+=$1} END {print s}')
extra=$(du -sb $D | cut -f1)
mib=$(( (tracked + extra) / 1048576 ))
du -sh $D/* | sed 's/^/  /'
echo "travels: $(( tracked / 1048576 )) MiB tracked (without models/natural4x.safetensors) + $(( extra / 1048576 )) MiB $D = $mib MiB of 64"
[ $mib -lt 64 ] || { echo "over the device's 64 MiB: shrink the photos (bench/pack-photos.ts --long) or the state" >&2; exit 1; }
echo staged
