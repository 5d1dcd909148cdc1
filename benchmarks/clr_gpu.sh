#!/usr/bin/env bash
# The CLR paper reproduction as one prepared GPU call (make clr-gpu), at most 9 minutes on an H100 or H200
# prepared with ../shared/device (see docs/gpu.md):
#   1. speed: one Caffe net alone against 3 seeds stacked (benchmarks/clr_speed.py)  -> results/clr-speed-gpu/
#   2. stage main: Tables 1-2, Figures 1 and 3, every policy x 3 seeds, the faster way of step 1,
#      8 policies side by side                                                           -> results/clr-paper/
#   3. stage extra (Table 3, sigmoid + BN) with the time left; resumable: the same command goes on
#      from the store, given results/clr-paper/results.sqlite back.
# After each stage everything is packed into $OUT/clr.tgz, so a call killed at its limit still returns
# what it finished (runs are committed as they finish). CLR_SECONDS (default 530) is the whole call's time.
# TINY=1: the same steps in QUICK mode with tiny settings on a CPU, into runs/clr-gpu-tiny/ (checks this script).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-runs/clr-gpu-out}
CLR_SECONDS=${CLR_SECONDS:-530}
started=$(date +%s)
mkdir -p "$OUT"
if [ "${TINY:-0}" = 1 ]; then
  root=runs/clr-gpu-tiny
  config=runs/clr-gpu-tiny.toml
  mkdir -p runs
  sed -e 's/^scale = 100/scale = 1000/' -e 's/^train_subset = 10000/train_subset = 1000/' \
      -e 's/^test_subset = 1000/test_subset = 500/' -e 's/^epochs = 8/epochs = 1/' experiments/clr_paper.toml > "$config"
  speed_args=(--tiny)
  run_args=(--quick --results "$root/clr-paper" --workers 2)
else
  root=results
  config=experiments/clr_paper.toml
  speed_args=()
  run_args=(--results "$root/clr-paper")
fi
mkdir -p "$root"
left() { echo $(( CLR_SECONDS - ($(date +%s) - started) )); }
pack() {
  tar czf "$OUT/clr.tgz" -C "$root" $(cd "$root" && ls -d clr-speed-gpu clr-paper 2>/dev/null) \
    && echo "packed $(du -h "$OUT/clr.tgz" | cut -f1) after $1, $(left) s left"
}

echo "== 1. speed: one model against stacked seeds ($(left) s left)"
$PY benchmarks/clr_speed.py "${speed_args[@]}" --out "$root/clr-speed-gpu" 2>&1 | tee "$OUT/clr_speed.log"
stack=$(cat "$root/clr-speed-gpu/choice.txt" 2>/dev/null || echo --stack-seeds)
pack "stage 1"

for stage in main extra; do
  [ "$(left)" -lt 60 ] && { echo "stage $stage: not started, $(left) s left"; break; }
  echo "== stage $stage ($stack; $(left) s left)"
  # the run stops itself at its time limit and writes the report; `timeout` is only a backstop
  timeout -k 5 "$(( $(left) - 5 ))" $PY -m lrsearch clr-paper "$config" --stage "$stage" "$stack" \
    --time-limit "$(( $(left) - 25 ))" "${run_args[@]}" 2>&1 | tee -a "$OUT/clr.log" | grep -v "already complete"
  pack "stage $stage"
done
echo "done in $(( $(date +%s) - started )) s"
