#!/usr/bin/env bash
# A second GPU call for issue 6, after bench/device.sh: the GEMM conv variants that the first H100 run pointed to,
# each on three conv shapes and the issue's three U-Net rows, in one call (limits total 300 s: use timeout_s 340).
# It ran once (2026-11-26, H100), when the inline gather and 4 subgroups were the defaults; the batched gather and 8
# subgroups are now (each variant names its switches, so it measures the same forms). Most stages ran out of time
# building U-Nets before their 64->512 row: give them more if the session's device time allows.
# Here, once per dependency change:    npm ci && bash ../shared/device/stage.sh
# Device tool: carry [".device"], command:  source .device/enter.sh && bash bench/device-variants.sh
#   variants.log    conv-variants.test.ts on this card (every variant's accuracy with NVIDIA's 16x16 fragments)
#   variants.jsonl  `npm run bench -- --json` rows, one stage a variant (the rows name their switches)
#   table.md        bench/compare.ts over them (variants.jsonl first, then any earlier files given as arguments)
#   summary.txt     each stage's exit code and seconds, then the table
# Each stage builds its own U-Nets (7-14 s each on an H100: parameters, pipelines, first run) before timing them.
set -u
source "$(dirname "$0")/device-lib.sh"
CONVS='^conv3x3 (64->64 128x128 b8|1024->1024 32x32 b1 gn\+swish res|64->64 512x512 b1 gn\+swish emb)$'
rows="$OUT/variants.jsonl"

variant() { # name limit_s kernel env...
  local name=$1 limit=$2 kernel=$3
  shift 3
  stage "$name" "$limit" "$rows" env "$@" $BENCH --json --reps 10 --conv-kernel "$kernel" --filter "$CONVS|$TARGETS"
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >> "$summary" 2>&1
stage tests 45 "$OUT/variants.log" env SR3_EXPECT_MMA=1 $UVU -r tsx test 'conv-variants'
# most informative first: the f32-accuracy tensor-core kernel as it is, then the new forms
variant mma3 35 mma3 SR3_BATCH_LOADS=0 SR3_MMA_SUBGROUPS=4
variant mma-batched-8sg 35 mma SR3_BATCH_LOADS=1 SR3_MMA_SUBGROUPS=8
variant mma3-batched-8sg 35 mma3 SR3_BATCH_LOADS=1 SR3_MMA_SUBGROUPS=8
variant mma-batched 30 mma SR3_BATCH_LOADS=1 SR3_MMA_SUBGROUPS=4
variant mma-8sg 30 mma SR3_BATCH_LOADS=0 SR3_MMA_SUBGROUPS=8
variant tiled-batched 30 tiled SR3_BATCH_LOADS=1
# the defaults of then again on this machine, for ratios within one run
variant mma 25 mma SR3_BATCH_LOADS=0 SR3_MMA_SUBGROUPS=4
variant tiled 25 tiled SR3_BATCH_LOADS=0
stage compare 10 "$OUT/table.md" $TSX bench/compare.ts "$rows" "$@"
cat "$OUT/table.md" >> "$summary"
grep -E "worst|skipped|validate|Total|Passed|Failed|FAIL|✘" "$OUT/variants.log" | head -60 >> "$summary"
cat "$summary"
