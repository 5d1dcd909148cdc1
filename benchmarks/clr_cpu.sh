#!/usr/bin/env bash
# The CLR paper's Figure 1 and Table 1 at the paper's length on a CPU, seed 0 -> results/clr-paper-cpu/
#
#   bash benchmarks/clr_cpu.sh        (or `make clr-cpu`; the same command goes on after a kill or a reboot)
#
# Two lanes side by side, one torch thread each, channels_last: the fastest way to train this net on the
# 2-core machines here (results/clr-paper-cpu/speed/README.md: 27.6 steps/s together against 24.9 for one
# process on both threads). Lane A trains `fixed` (70,000 iterations), then `exp_range` (42,000); lane B
# `clr-table2`, then `triangular2` and `decay` (25,000 each). About 13.8 steps/s a lane: roughly 90 minutes
# a lane for the first 70,000-75,000 iterations, 50 more for exp_range.
# Each run writes its checkpoint to results/clr-paper-cpu/checkpoints/ every 5 minutes and is committed to
# the store when it ends; a killed lane loses at most 5 minutes. Both lanes share the store (claims).
set -uo pipefail
cd "$(dirname "$0")/.."
LRSEARCH=${LRSEARCH:-.venv/bin/lrsearch}
OUT=${OUT:-results/clr-paper-cpu}
EVERY=${EVERY:-5m}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
run() {
  "$LRSEARCH" clr-paper experiments/clr_paper.toml --results "$OUT" --device cpu --seeds 0 \
    --channels-last --checkpoint-every "$EVERY" --only "$@"
}
run fixed exp_range > "$OUT/lane-a.log" 2>&1 &
A=$!
run clr-table2 triangular2 decay > "$OUT/lane-b.log" 2>&1 &
B=$!
wait $A; a=$?
wait $B; b=$?
echo "lane A exit $a, lane B exit $b; report: $OUT/REPORT.md"
[ "$a" = 0 ] && [ "$b" = 0 ]
