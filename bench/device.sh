#!/usr/bin/env bash
# Issue 6's GPU check in one call of the device tool (15 minutes of device time per session, start included).
# Here, once per dependency change:    npm ci && bash ../shared/device/stage.sh
# Device tool: carry [".device"], command:  source .device/enter.sh && bash bench/device.sh
# Every stage has its own time limit and the script goes on past a failed one; at most 8 files come back from $OUT:
#   summary.txt   each stage's exit code and seconds, doctor's report, the table
#   tests.log     the GPU-relevant tests (golden forward/sampler/training on this card, the f16 and mma kernels)
#   bench-tiled.jsonl, bench-mma.jsonl, bench-extra.jsonl   `npm run bench -- --json` rows: the f32 tiled kernel
#                 with its defaults; the mixed-precision tensor-core kernel (also with 64x64 tiles, and with
#                 GroupNorm written out) and the f32-accuracy one (mma3), or the f16 FMA kernel where mma cannot run;
#                 the f32 U-Net rows without split-K, with 64x64 tiles, without the prefetch, with GroupNorm written
#                 out, with flash attention, without Dawn's robustness;
#                 a per-dispatch profile of a step
#   torch.jsonl   bench/torch_unet.py: the reference architecture in PyTorch on the same card
#   table.md      bench/compare.ts over all of it: the table
# Total limits: 570 s at most (the f16 stage runs only when mma cannot, in place of the three mma variants), inside the
# tool's 600 s per command (use timeout_s 600).
set -u
OUT=${OUT:-out/device}
# The GPU machine gets only the node binary (.device/enter.sh), no npm or npx: run the packages' entry points.
TSX="node node_modules/tsx/dist/cli.mjs"
UVU="node node_modules/uvu/bin.js"
BENCH="$TSX bench/run.ts"
mkdir -p "$OUT"
# the U-Net rows of the table (the variants leave out 64->512 at batch 8, the slowest row)
TARGETS='^unet (16->128 128x128 b[18]|64->512 512x512 b1)$'
summary="$OUT/summary.txt"
: > "$summary"

stage() { # name limit_s logfile command...
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s (limit $limit s)" | tee -a "$summary"
  return $rc
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >> "$summary" 2>&1
stage doctor 20 "$summary" node bin/sr3.js doctor
stage tests 65 "$OUT/tests.log" $UVU -r tsx test '(conv-variants|forward-golden|sample-golden|train-golden|kernels|backward|adam)'
# --json: the rows go to stdout, progress and failures to stderr (kept in the same file: compare.ts skips non-JSON)
# the networks first (the table), then the kernels, each under its own limit
stage bench-nets 75 "$OUT/bench-tiled.jsonl" $BENCH --json --reps 20 --filter '^(unet|upscale)'
stage bench-kernels 35 "$OUT/bench-tiled.jsonl" $BENCH --json --reps 20 --filter '^(conv|groupnorm|attention|train)'
# if the tensor-core kernel cannot run (its reason is in the file), the FMA f16 kernel's rows take its place; if it
# can, the split f32-accuracy form's rows, and the U-Net rows again with 64x64 tiles only (the default takes 128
# where a layer is large enough)
if stage bench-mma 70 "$OUT/bench-mma.jsonl" $BENCH --json --reps 20 --conv-kernel mma --filter '^(conv|unet|upscale)'; then
  # the f32-accuracy tensor-core kernel (three f16 products a fragment): the f32 rows' other candidate
  stage bench-mma3 40 "$OUT/bench-mma.jsonl" $BENCH --json --reps 10 --conv-kernel mma3 --filter "^conv3x3 64->64 [0-9x]+ b[18]( gn\+swish emb)?$|$TARGETS"
  stage bench-mma64 20 "$OUT/bench-mma.jsonl" env SR3_MMA_TILE=64x64 $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS"
  # GroupNorm + Swish written out before each conv instead of recomputed (an exp) in every tap of the gather, which
  # may bound the tensor-core kernel
  stage bench-mma-normout 20 "$OUT/bench-mma.jsonl" env SR3_NORM=materialized $BENCH --json --reps 10 --conv-kernel mma --filter "$TARGETS"
else
  stage bench-f16 40 "$OUT/bench-mma.jsonl" $BENCH --json --reps 10 --conv-kernel f16 --filter '^(conv3x3 64->64|unet)'
fi
# PyTorch on this card before the variants, so the table's ratio survives the command being cut short
# the architecture first (float64 forward vs the golden eps, a few seconds), then the timings that the targets name
stage torch-check 20 "$OUT/torch.jsonl" python3 bench/torch_unet.py --check test/fixtures/golden/tiny
stage torch 55 "$OUT/torch.jsonl" python3 bench/torch_unet.py --reps 20 --impls eager-fp32,eager-fp32-tf32,graph-fp16
# variants, each for its own question
stage bench-nosplit 20 "$OUT/bench-extra.jsonl" env SR3_SPLIT_K=0 $BENCH --json --reps 10 --filter "$TARGETS"
stage bench-64tiles 20 "$OUT/bench-extra.jsonl" env SR3_TILED_TILE=64x64 $BENCH --json --reps 10 --filter "$TARGETS"
stage bench-noprefetch 20 "$OUT/bench-extra.jsonl" env SR3_TILED_PREFETCH=0 $BENCH --json --reps 10 --filter "$TARGETS"
stage bench-normout 20 "$OUT/bench-extra.jsonl" env SR3_NORM=materialized $BENCH --json --reps 10 --filter "$TARGETS"
# attention: the flash-style kernel (CPU-tuned) in place of the GEMM form GPUs get by default (16->128 only has it)
stage bench-flashattn 20 "$OUT/bench-extra.jsonl" env SR3_ATTENTION=flash $BENCH --json --reps 10 --filter '^unet 16->128'
# Dawn's robustness transform bounds-checks every storage access (the kernels check their own bounds): its cost
stage bench-norobust 20 "$OUT/bench-extra.jsonl" env SR3_DAWN_FLAGS='enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia,disable_robustness' $BENCH --json --reps 10 --filter "$TARGETS"
# where a 16->128 step goes: every dispatch timed alone, by pipeline, and the slowest 15 (kind "profile" rows)
stage profile 20 "$OUT/bench-extra.jsonl" $BENCH --json --reps 5 --profile --filter '^unet 16->128 128x128 b1$'
stage compare 10 "$OUT/table.md" $TSX bench/compare.ts "$OUT/bench-tiled.jsonl" "$OUT/bench-mma.jsonl" "$OUT/bench-extra.jsonl" "$OUT/torch.jsonl"
cat "$OUT/table.md" >> "$summary"
grep -E "worst|skipped|mma|Total|Passed|Failed|FAIL" "$OUT/tests.log" | head -40 >> "$summary"
cat "$summary"
