# Shared by bench/device.sh and bench/device-variants.sh (sourced): the GPU machine's entry points and a stage runner.
# The GPU machine gets only the node binary (.device/enter.sh), no npm or npx: run the packages' entry points.
OUT=${OUT:-out/device}
TSX="node node_modules/tsx/dist/cli.mjs"
UVU="node node_modules/uvu/bin.js"
BENCH="$TSX bench/run.ts"
# the U-Net rows of issue 6's table
TARGETS='^unet (16->128 128x128 b[18]|64->512 512x512 b1)$'
mkdir -p "$OUT"
summary="$OUT/summary.txt"
: > "$summary"

# stage NAME LIMIT_S LOGFILE COMMAND...: run COMMAND under its own time limit, appending to LOGFILE, and record its
# exit code and seconds in the summary (the script goes on past a failed or timed-out stage). On an H100 each U-Net
# row took 7-14 s to build (build_ms: parameters, pipelines, first run) before its timings.
stage() {
  local name=$1 limit=$2 log=$3
  shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >> "$log" 2>&1
  local rc=$?
  echo "$name: rc=$rc, $((SECONDS - t0)) s (limit $limit s)" | tee -a "$summary"
  return $rc
}
