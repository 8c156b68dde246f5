#!/usr/bin/env bash
# One GPU slice of training (docs/training.md has the loop): on the GPU machine, from the project root, with
# .device-train/ carried (bench/stage-train.sh made it here):
#   device tool: carry [".device-train"], timeout_s 600,
#   command:     bash bench/device-train.sh 7
# It resumes from the newest training state in the repository (train/*.safetensors, the one with the most steps in
# its metadata; none: a new `small` model, the bundled natural4x's shape), trains for MINUTES with the recipe below,
# printing steps/s and images/s, evaluates on the evaluation photos against bicubic, and writes to $OUT (at most 8
# files, each under 16 MiB):
#   model.safetensors   the new state: the EMA weights in f16 (12 MiB for `small`); commit it as train/<name>
#   train.log           the trainer's output (throughput lines, the final summary)
#   log.jsonl, loss.png the loss per step and its plot
#   eval.jsonl, sheet.png   `sr3 eval` rows (bicubic and the candidate) and its contact sheet
#   summary.txt         each stage's exit code and seconds, the adapter, the mean evaluation row
# The state is the EMA model alone: a slice restarts the raw weights from it with fresh Adam moments and a short
# warm-up, so one 12 MiB file travels each way (the tree that travels must stay under 64 MiB).
# Env overrides: BATCH (16), PATCH (128), LR (1e-4), EMA (0.999), WARMUP (100), BLUR (off), CONV (the conv kernel for
# the forward passes: mma where `sr3 doctor` offers tensor cores, else the default), EVAL_STEPS (20); for a smoke run
# on the software device: CONFIG (small: the model a first slice creates), EVAL_CROP (256), EVAL_PHOTOS (all),
# EVAL_LIMIT_S (150), STATE_DIR (train: where the states are looked for).
set -u
MIN=${1:?usage: bash bench/device-train.sh MINUTES}
cd "$(dirname "$0")/.."
# on the GPU machine node_modules is not in the tree (git-ignored): unpack the staged one; here it is installed
{ command -v node >/dev/null 2>&1 && [ -f node_modules/webgpu/package.json ]; } || source .device-train/enter.sh
OUT=${OUT:-out/device-train}
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"
SR3="node .device-train/sr3.mjs"
[ -f .device-train/sr3.mjs ] || SR3="node bin/sr3.js"
stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  # SIGINT first: the trainer then saves its checkpoint before it exits
  timeout -s INT -k 30 "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s (limit $limit s)" | tee -a "$summary"
  return $rc
}
# the newest state: the train/*.safetensors whose metadata records the most training steps
state=$(node -e '
const fs = require("fs"); let best = null, bestSteps = -1;
const dir = process.argv[1];
for (const f of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
  if (!f.endsWith(".safetensors") || f.includes(".state.")) continue;
  const b = fs.readFileSync(dir + "/" + f); const n = Number(b.readBigUInt64LE(0));
  const meta = JSON.parse(b.subarray(8, 8 + n).toString()).__metadata__ || {};
  const steps = JSON.parse(meta.training || "{}").steps || 0;
  if (steps > bestSteps) { best = dir + "/" + f; bestSteps = steps; }
}
if (best) console.log(best);' "${STATE_DIR:-train}")
stage doctor 30 "$summary" $SR3 doctor
conv=${CONV:-}
if [ -z "$conv" ] && grep -q 'mma (mixed precision, tensor cores) *yes' "$summary"; then conv=mma; fi
[ -n "$conv" ] && export SR3_CONV_KERNEL=$conv
echo "state: ${state:-none (a new ${CONFIG:-small} model)}; conv kernel: ${conv:-default}" | tee -a "$summary"
if [ -n "$state" ]; then from=(--resume "$state"); else from=(--config "${CONFIG:-small}" --target residual); fi
# the trainer stops itself at MINUTES; the limit leaves it time to compile and save
stage train $(( MIN * 60 + 120 )) "$OUT/train.log" $SR3 train --data .device-train/photos/train --out "$OUT/model.safetensors" "${from[@]}" \
  --minutes "$MIN" --batch "${BATCH:-16}" --patch "${PATCH:-128}" --lr "${LR:-1e-4}" --warmup "${WARMUP:-100}" --ema "${EMA:-0.999}" \
  ${BLUR:+--blur "$BLUR"} --state-dtype f16 --moments drop --save-every 100000 --report-every 15 --quiet
grep -E 'steps/s|trained' "$OUT/train.log" | tail -3 >> "$summary"
mv -f "$OUT/model.safetensors.log.jsonl" "$OUT/log.jsonl" 2>/dev/null
mv -f "$OUT/model.safetensors.loss.png" "$OUT/loss.png" 2>/dev/null
rm -f "$OUT/model.safetensors.state.safetensors"   # the raw weights: the next slice restarts from the EMA ones
stage eval "${EVAL_LIMIT_S:-150}" "$OUT/eval.jsonl" $SR3 eval --data .device-train/photos/eval --model "$OUT/model.safetensors" --crop "${EVAL_CROP:-256}" \
  ${EVAL_PHOTOS:+--limit "$EVAL_PHOTOS"} \
  --steps "${EVAL_STEPS:-20}" --sheet "$OUT/sheet.png" --json
tail -1 "$OUT/eval.jsonl" >> "$summary"
ls -la "$OUT" >> "$summary"
cat "$summary"
