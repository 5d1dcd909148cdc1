#!/usr/bin/env bash
# The GPU checks as one prepared call (make gpu-suite), sized for one device call of at most 9 minutes
# on an H100 or H200 prepared with ../shared/device (see docs/gpu.md):
#   1. the fast net over 5 seeds, the LR sweep that sets the gpu task's target, and airbench94's own
#      script as a reference when $REFERENCE names it           -> results/fast-net-gpu/
#   2. trainer speed, the fast net with and without torch.compile -> results/trainer-gpu/
#   3. the gpu benchmark preset with that target, seed after seed  -> results/benchmark-gpu/
#      (resumable: whatever stage 3 had not finished when the time ran out, the same command finishes,
#      given results/benchmark-gpu/results.sqlite back)
# After each stage everything is packed into $OUT/results.tgz, so a call killed at its limit still
# returns what it finished. SUITE_SECONDS (default 540) is the whole suite's time; stage 3 stops
# starting seeds it cannot finish and is cut off at the deadline (trials are committed as they finish).
# TINY=1: the same steps with tiny settings on a CPU, into runs/gpu-suite-tiny/ (checks this script).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-runs/gpu-suite-out}
SUITE_SECONDS=${SUITE_SECONDS:-540}
REFERENCE=${REFERENCE:-}
started=$(date +%s)
mkdir -p "$OUT"

if [ "${TINY:-0}" = 1 ]; then
  root=runs/gpu-suite-tiny
  fast_args=(--tiny --seeds 2 --lrs 3.0)
  experiment=experiments/benchmark-smoke.toml
  bench_args=(--only random optuna-tpe)
  seeds=(0 1)
else
  root=results
  fast_args=(--seeds 5 --lrs 0.75 3.0)
  experiment=experiments/benchmark-gpu.toml
  bench_args=()
  seeds=(0 1 2)
fi
mkdir -p "$root"
left() { echo $(( SUITE_SECONDS - ($(date +%s) - started) )); }
pack() {
  tar czf "$OUT/results.tgz" -C "$root" $(cd "$root" && ls -d fast-net-gpu trainer-gpu benchmark-gpu 2>/dev/null) \
    && echo "packed $(du -h "$OUT/results.tgz" | cut -f1) after $1, $(left) s left"
}

echo "== 1. fast net over seeds ($(left) s left)"
ref=()
[ -n "$REFERENCE" ] && ref=(--reference "$REFERENCE")
$PY benchmarks/fast_net.py "${fast_args[@]}" "${ref[@]}" --out "$root/fast-net-gpu" 2>&1 | tee "$OUT/fast_net.log"
pack "stage 1"
target=$(cat "$root/fast-net-gpu/target.txt" 2>/dev/null || echo "")
echo "target from stage 1: ${target:-none, the experiment keeps its own}"

echo "== 2. trainer speed, with and without compile ($(left) s left)"
$PY benchmarks/trainer.py --out "$root/trainer-gpu" 2>&1 | tee "$OUT/trainer.log"
pack "stage 2"

echo "== 3. benchmark preset ($(left) s left)"
if [ ${#bench_args[@]} -eq 0 ]; then  # strategies whose library did not travel are left out, and named
  read -r -a usable < <($PY -c "from lrsearch import load_experiment; from lrsearch.search.strategies import REGISTRY
e = load_experiment('$experiment'); print(' '.join(s for s in e.strategies if not REGISTRY[s].missing_packages()))")
  bench_args=(--only "${usable[@]}")
  echo "strategies run: ${usable[*]}"
fi
target_args=()
[ -n "$target" ] && target_args=(--target "$target")
for seed in "${seeds[@]}"; do
  [ "$(left)" -lt 60 ] && { echo "seed $seed: not started, $(left) s left"; break; }
  timeout --signal=INT "$(( $(left) - 15 ))" $PY -m lrsearch run "$experiment" --seeds "$seed" "${bench_args[@]}" \
    "${target_args[@]}" --results "$root/benchmark-gpu" 2>&1 | tail -n 3 | tee -a "$OUT/benchmark.log"
  pack "stage 3, seed $seed"
done
$PY -m lrsearch report "$root/benchmark-gpu" 2>&1 | tail -n 1
pack "the report"
echo "suite done in $(( $(date +%s) - started )) s"
