#!/usr/bin/env bash
# The GPU workload's table and its cost clock as one prepared device call (make gpu-tables), sized for one call of
# at most 9 minutes on an H100 or H200 prepared with ../shared/device (docs/gpu.md):
#   1. the cost clock on that GPU: seconds per training step of the `gpu` task under SGD and each self-tuning
#      contender, each block closed by torch.cuda.synchronize        -> results/calibration-gpu/
#   2. the table: experiments/tables/gpu.toml, LRS log-spaced LRs x 10 seeds, LANES processes side by side on the
#      one GPU (they share the store by claims; a seed is a run)     -> results/tables/gpu/
#      Lanes stop starting work near the deadline and are interrupted at it: a seed not recorded at every LR is
#      left out of the table (table.py), and the same command finishes it later.
#   3. the searchers' decision seconds on that machine, on the table -> results/calibration-gpu/decisions.csv
# After each stage everything is packed into $OUT/results.tgz, so a call killed at its limit still returns what
# it finished. Then, on any machine: `lrsearch run experiments/suite-gpu-table.toml` (the suite's searchers at 100
# seeds on the table) and `lrsearch report results/suite-cpu-tables` (its CPU -> GPU finding).
# TINY=1: the same steps with tiny settings on a CPU, into runs/gpu-tables-tiny/ (checks this script).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-tables-out}
SUITE_SECONDS=${SUITE_SECONDS:-510}
LANES=${LANES:-4}
started=$(date +%s)
mkdir -p "$OUT"

if [ "${TINY:-0}" = 1 ]; then
  root=runs/gpu-tables-tiny
  experiment=experiments/benchmark-smoke.toml
  task=smoke device=cpu lrs=3 seeds=(0 1) cal_args=(--steps 2)
  LANES=2
else
  root=results
  experiment=experiments/tables/gpu.toml
  task=gpu device=cuda lrs=${LRS:-20} seeds=(0 1 2 3 4 5 6 7 8 9) cal_args=()
fi
mkdir -p "$root/tables"
left() { echo $(( SUITE_SECONDS - ($(date +%s) - started) )); }
pack() {
  tar czf "$OUT/results.tgz" -C "$root" $(cd "$root" && ls -d tables/gpu calibration-gpu 2>/dev/null) \
    && echo "packed $(du -h "$OUT/results.tgz" | cut -f1) after $1, $(left) s left"
}

echo "== 1. the cost clock on this device ($(left) s left)"
$PY -m lrsearch calibrate --tasks "$task" --device "$device" --out "$root/calibration-gpu" "${cal_args[@]}" 2>&1 \
  | tee "$OUT/calibrate.log"
pack "stage 1"

echo "== 2. the table, $LANES lanes ($(left) s left)"
lane() {
  timeout -k 10 --signal=INT "$(( $(left) - 60 ))" $PY -m lrsearch tabulate "$experiment" --lrs "$lrs" \
    --seeds "${seeds[@]}" --device "$device" --results "$root/tables/gpu" --quiet > "$OUT/lane-$1.log" 2>&1
  echo "lane $1 ended (rc $?, $(left) s left)"
}
for i in $(seq 1 "$LANES"); do lane "$i" & sleep 2; done
wait
tail -n 4 "$OUT/lane-1.log"
pack "stage 2"

echo "== 3. decision seconds on this machine ($(left) s left)"
if [ "$(left)" -gt 20 ]; then
  timeout -k 5 "$(( $(left) - 10 ))" $PY -m lrsearch calibrate --decisions "$root/tables/gpu" \
    --out "$root/calibration-gpu" 2>&1 | tail -n 3 | tee "$OUT/decisions.log"
fi
pack "stage 3"
echo "done in $(( $(date +%s) - started )) s"
