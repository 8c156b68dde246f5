#!/usr/bin/env bash
# Issue 6's GPU check in one call of the device tool (15 minutes of device time per session, start included).
# Here, once per dependency change:    npm ci && bash ../shared/device/stage.sh
# The working tree that travels must stay under the tool's 64 MiB: with .device (about 37 MiB) that may mean moving
# models/natural4x.safetensors (24 MiB, which no stage here uses) out of the tree for the call, and back after.
# Device tool: carry [".device"], command:  source .device/enter.sh && bash bench/device.sh   (timeout_s 600)
# Every stage has its own time limit and the script goes on past a failed one; at most 8 files come back from $OUT:
#   summary.txt   each stage's exit code and seconds, doctor's report, the table, the tests' accuracy lines
#   tests.log     the accuracy tests on this card: every conv kernel and variant, the golden forward and sampler
#   bench-nets.jsonl    `npm run bench -- --json` rows with the defaults (the f32 tiled kernel): U-Nets, upscales,
#                       then the kernels (conv2d forward and backward, GroupNorm, attention)
#   bench-mma.jsonl     the tensor-core kernels: mma (f16 operands, the fastest path), mma3 (f32 accuracy)
#   bench-extra.jsonl   variants of the U-Net rows, each for its own question, and a per-dispatch profile of a step
#   torch.jsonl   bench/torch_unet.py: the reference architecture in PyTorch on the same card
#   table.md      bench/compare.ts over all of it: the issue's table
# What the first H100 runs taught (2026-11-26): each U-Net row takes 7-14 s to build (build_ms: parameters, pipelines,
# first run) before its timings, so a stage needs that on top of them; the most important rows go first. Limits
# total 565 s.
set -u
source "$(dirname "$0")/device-lib.sh"

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$summary" 2>&1
stage doctor 15 "$summary" node bin/sr3.js doctor
# the f32 default on the issue's U-Net rows and the upscales (64->512 at b8, 587 ms a step in 2026-11, is left out)
stage bench-nets 90 "$OUT/bench-nets.jsonl" $BENCH --json --reps 10 --filter "$TARGETS|^upscale"
# the tensor-core kernels where the adapter has subgroup matrices (doctor says), else the f16 FMA kernel's rows
if grep -q 'mma (mixed precision, tensor cores) *yes' "$summary"; then
  stage bench-mma 60 "$OUT/bench-mma.jsonl" $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS|^upscale 16->128 128x128 b1"
  stage bench-mma3 45 "$OUT/bench-mma.jsonl" $BENCH --json --reps 10 --conv-kernel mma3 --filter "$TARGETS"
else
  stage bench-f16 45 "$OUT/bench-mma.jsonl" $BENCH --json --reps 10 --conv-kernel f16 --filter "$TARGETS"
fi
# PyTorch on this card: the architecture first (float64 forward vs the golden eps), then the timings the targets name
stage torch-check 20 "$OUT/torch.jsonl" python3 bench/torch_unet.py --check test/fixtures/golden/tiny
stage torch 55 "$OUT/torch.jsonl" python3 bench/torch_unet.py --reps 20 --impls eager-fp32,eager-fp32-tf32,graph-fp16
stage compare 10 "$OUT/table.md" $TSX bench/compare.ts "$OUT/bench-nets.jsonl" "$OUT/bench-mma.jsonl" "$OUT/torch.jsonl"
# accuracy on this card (SR3_EXPECT_MMA: a tensor-core kernel refused here is a failure where doctor offered it)
expect=0; grep -q 'mma (mixed precision, tensor cores) *yes' "$summary" && expect=1
stage tests 80 "$OUT/tests.log" env SR3_EXPECT_MMA=$expect $UVU -r tsx test '(conv-variants|forward-golden|sample-golden)'
stage bench-kernels 35 "$OUT/bench-nets.jsonl" $BENCH --json --reps 10 --filter '^(conv|groupnorm|attention)'
# variants of the fastest path, each off by default until measured: the staged tiles padded against workgroup-memory
# bank conflicts (SR3_MMA_PAD); 64-deep k-steps (SR3_MMA_TK: half the steps, barriers and load waits); GroupNorm +
# Swish written out before each conv instead of recomputed (an exp) in every tap of the gather
stage mma-pad 40 "$OUT/bench-extra.jsonl" env SR3_MMA_PAD=1 $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS"
stage mma-tk64 40 "$OUT/bench-extra.jsonl" env SR3_MMA_TK=64 $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS"
stage mma-normout 40 "$OUT/bench-extra.jsonl" env SR3_NORM=materialized $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS"
# where a 16->128 step goes: every dispatch timed alone, by pipeline, and the slowest 15 (kind "profile" rows)
stage profile 25 "$OUT/bench-extra.jsonl" $BENCH --json --reps 5 --profile --filter '^unet 16->128 128x128 b1$'
: > "$OUT/table.md"
stage compare 10 "$OUT/table.md" $TSX bench/compare.ts "$OUT/bench-nets.jsonl" "$OUT/bench-mma.jsonl" "$OUT/bench-extra.jsonl" "$OUT/torch.jsonl"
cat "$OUT/table.md" >> "$summary"
grep -E "worst|skipped|validate|Total|Passed|Failed|FAIL|✘" "$OUT/tests.log" | head -60 >> "$summary"
cat "$summary"
