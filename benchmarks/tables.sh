#!/usr/bin/env bash
# One lane of `make tables`: every table behind the CPU suite (experiments/tables/), one after another, one torch
# thread. Run two lanes side by side on two cores: they share each table's store (claims), and the same command goes
# on after a kill. The 1-D tables are 32 log-spaced LRs x 10 seeds; the multi-dimensional ones a grid of 8 LRs x 3 x 3
# (finetune: 8 x 2 x 2 x 3 with the backbone's LR multiplier) x 4 seeds. Hours of CPU in all (about 12 s a trial with
# its evaluations): start it early and commit results/tables/ as it goes.
set -euo pipefail
LRSEARCH=${LRSEARCH:-.venv/bin/lrsearch}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
one_d() { $LRSEARCH tabulate "experiments/tables/$1.toml" --lrs 32 --seeds 0 1 2 3 4 5 6 7 8 9 --results "results/tables/$1"; }
grid() { local name=$1; shift; $LRSEARCH tabulate "experiments/tables/$name.toml" --lrs 8 --points "$@" --seeds 0 1 2 3 \
  --results "results/tables/$name"; }
for w in nobn resnet-adamw finetune caffe-cpu; do one_d "$w"; done
grid nobn-lr-wd-mom weight_decay=3 one_minus_momentum=3
grid resnet-adamw-lr-wd-mom weight_decay=3 one_minus_momentum=3
grid caffe-cpu-lr-wd-mom weight_decay=3 one_minus_momentum=3
grid finetune-lr-wd-mom-backbone weight_decay=2 one_minus_momentum=2 backbone_lr_mult=3
