# lrsearch: `make benchmark` runs the main job, `make test` the tests.
# Both install first (a .venv with the package and its dependencies).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build of torch, installed before the package so that pip never resolves
# `torch` to a multi-GB CUDA build. On this project's machines 2.13.0 lies on local
# disk. Elsewhere: TORCH="torch --index-url https://download.pytorch.org/whl/cpu",
# or TORCH=torch on a CUDA machine.
TORCH  ?= torch==2.13.0
# Where the data is: $LRSEARCH_DATA if set, else the shared JPEG copy beside the
# checkout when it exists, else ./data/ (see docs/data.md).
SHARED_DATA := $(wildcard ../shared/data/cifar10-jpeg.tar.gz)
export LRSEARCH_DATA ?= $(SHARED_DATA)
# SMAC3's proposals past about 10 trials depend on Python's hash seed: fixed here so that a run repeats across
# processes (docs/strategies.md); the other strategies do not depend on it.
export PYTHONHASHSEED ?= 0
# benchmark preset: gpu where CUDA is available, else cpu; `make benchmark PRESET=smoke` for a check under 2 minutes
PRESET ?= $(shell $(BIN)/python -c "import torch; print('gpu' if torch.cuda.is_available() else 'cpu')" 2>/dev/null || echo cpu)

.PHONY: install test lint benchmark budgets tabulate replay-check report suite parallel-replay tables suite-tables tables-check contenders clr-paper clr-cpu clr-gpu bench-trainer bench-executors gpu-suite gpu-tables clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[dev,ray,selftuning,hpo]"
	# HEBO's and DEHB's last releases pin numpy below the 2.x that torch and pandas need here, and both run on it;
	# Syne Tune's `xgboost` would bring a 470 MB NCCL wheel (the synetune extra has xgboost-cpu instead). Their
	# own imports are in the hebo, dehb and synetune extras; the packages themselves go in without their pins.
	$(BIN)/pip install -q --no-deps hebo==0.3.6 dehb==0.1.2 syne-tune==0.16.0
	touch $@

# pytest-xdist workers: one per core and one more (at most 5), one torch thread each (tests/conftest.py), since
# many tests wait on subprocesses, heartbeats and servers; the tests that start servers in three groups (two
# of Ray's, NNI's), each group's tests one after another on one worker. A plain `.venv/bin/pytest` runs them all
# in one process.
TEST_WORKERS ?= $(shell $(PYTHON) -c "import os; print(min((os.cpu_count() or 1) + 1, 5))")
test: install
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

lint: install
	$(BIN)/ruff check lrsearch tests benchmarks

# The main job: every strategy on the preset's task -> runs/benchmark-$(PRESET)/ (SQLite store, tables,
# figures, REPORT.md beside the committed reference in results/, run.log). Resumes: running it again only
# runs what is missing. RESULTS=results/benchmark-cpu writes the committed reference instead.
RESULTS_FLAG = $(if $(RESULTS),--results $(RESULTS))
benchmark: install
	$(BIN)/lrsearch run experiments/benchmark-$(PRESET).toml $(RESULTS_FLAG)

# Compare search budgets: 2..32 trials over 5 seeds, real training -> runs/budgets/
# REPLAY=1: budgets 1..32 over 100 seeds on the nobn workload's table (results/tables/nobn), every fast searcher,
# through the one runner on the simulated clock (minutes; no training) -> runs/budgets-replay/
# REPLAY=1 SLOW=1: the model-based tools that think for seconds (optuna-gp, SMAC3, HEBO, skopt, BORE, ...), 20 seeds,
# budgets to 16 -> runs/budgets-replay-slow/
budgets: install
	$(BIN)/lrsearch $(if $(filter 1,$(REPLAY)),replay experiments/budgets-replay$(if $(filter 1,$(SLOW)),-slow).toml,run experiments/budgets.toml) $(RESULTS_FLAG)

# K = 1, 2, 4, 8 workers on the simulated clock, the same search on the nobn table at budget 16 (minutes)
# -> runs/parallel-replay/k<K>/ and the speed-ups in runs/parallel-replay/REPORT.md
parallel-replay: install
	$(BIN)/lrsearch replay experiments/parallel-replay.toml --workers 1 2 4 8 $(RESULTS_FLAG)

# The cpu task's table (48 LRs x 3 seeds, ~15 min; benchmarks/parallel_check.py reads it) and real runs of the
# cpu task to check a search on it against (~15 min), both committed under results/; each resumes. Like every experiment they
# write runs/<name>/; RESULTS=results/benchmark-cpu-table (or results/replay-check-cpu) rewrites the committed ones.
tabulate: install
	$(BIN)/lrsearch tabulate experiments/benchmark-cpu.toml $(RESULTS_FLAG)
replay-check: install
	$(BIN)/lrsearch run experiments/replay-check-cpu.toml $(RESULTS_FLAG)

# The CPU suite: 4 workloads x 2 spaces, 10 strategies, 3 seeds -> runs/suite-cpu/<problem>/ and REPORT.md
# (hours: about 1,300 trials of 10 to 20 s each with their 5,000-image evaluations, so about 3 hours on 2 cores with
# WORKERS=2; resumes; WORKERS=2 runs two cooperating workers, one torch thread each).
# RESULTS=results/suite-cpu writes the committed one. `make suite SEEDS=0` runs one seed.
WORKERS ?= 1
suite: install
	for i in $$(seq 2 $(WORKERS)); do OMP_NUM_THREADS=1 $(BIN)/lrsearch run experiments/suite-cpu.toml $(RESULTS_FLAG) \
	  $(if $(SEEDS),--seeds $(SEEDS)) --quiet & done; \
	$(if $(filter-out 1,$(WORKERS)),OMP_NUM_THREADS=1) $(BIN)/lrsearch run experiments/suite-cpu.toml $(RESULTS_FLAG) $(if $(SEEDS),--seeds $(SEEDS)); wait

# The tables behind every suite problem (experiments/tables/*.toml: 32 LRs x 10 seeds; grids of 8 LRs x 3 x 3 x 4
# seeds), two lanes of one torch thread each (benchmarks/tables.sh), hours of CPU; resumes -> results/tables/<table>/
tables: install
	LRSEARCH=$(BIN)/lrsearch bash benchmarks/tables.sh & LRSEARCH=$(BIN)/lrsearch bash benchmarks/tables.sh; wait

# Every searcher of the suite on the tables at 100 seeds, budget 16, simulated clock (minutes; no training)
# -> runs/suite-cpu-tables/; K=4 runs it with 4 workers on the simulated clock -> runs/suite-cpu-tables-k4/;
# SLOW=1: the slow model-based tools (HEBO, SMAC3, skopt, BORE, ...) at 20 seeds -> runs/suite-cpu-tables-slow/
suite-tables: install
ifeq ($(SLOW),1)
	$(BIN)/lrsearch run experiments/suite-cpu-tables-slow.toml --results $(or $(RESULTS),runs/suite-cpu-tables-slow)
else
	$(BIN)/lrsearch run experiments/suite-cpu-tables.toml $(if $(K),--workers $(K) --results $(or $(RESULTS),runs/suite-cpu-tables-k$(K)),$(RESULTS_FLAG))
endif

# The tables checked against real runs (issue 35): random, optuna-tpe and hyperopt-tpe trained on nobn-lr and
# nobn-lr-wd-mom, budget 16, seeds 0..9 (960 trials, about 1.8 hours on 2 idle cores), two cooperating workers of
# one torch thread each -> results/tables-check-cpu/<problem>/; then benchmarks/tables_check.py sets them beside
# results/suite-cpu-tables (`make suite-tables RESULTS=results/suite-cpu-tables` first where a problem is missing)
# under its pass rule -> results/tables-check-cpu/check/REPORT.md. Resumes.
tables-check: install
	OMP_NUM_THREADS=1 $(BIN)/lrsearch run experiments/tables-check-cpu.toml --quiet & \
	OMP_NUM_THREADS=1 $(BIN)/lrsearch run experiments/tables-check-cpu.toml; wait
	$(BIN)/python benchmarks/tables_check.py

# The range tests and the learning-rate-free optimizers trained for real (issue 35): 10 seeds on each CPU workload
# (experiments/contenders-cpu.toml; 440 trials, about 45 minutes on 2 idle cores), two cooperating workers of one
# torch thread each -> results/contenders-cpu/; the tables' suite's findings read it. Resumes.
contenders: install
	OMP_NUM_THREADS=1 $(BIN)/lrsearch run experiments/contenders-cpu.toml --quiet & \
	OMP_NUM_THREADS=1 $(BIN)/lrsearch run experiments/contenders-cpu.toml; wait

# Reproduce the CLR paper's CIFAR-10 experiments -> results/clr-paper/ (a GPU: minutes; resumes across calls).
# STAGE=extra: Table 3 and the sigmoid + BN net (STAGE=all: everything).
# QUICK=1: scaled down for a CPU -> results/clr-paper-quick/
clr-paper: install
	$(BIN)/lrsearch clr-paper experiments/clr_paper.toml --stage $(or $(STAGE),main) $(if $(QUICK),--quick)

# Rebuild tables, figures and reports of every results folder from their stores
report: install
	for d in results/*/ runs/*/; do [ -f "$$d/results.sqlite" ] && $(BIN)/lrsearch report "$$d"; done; true

# Trainer speed (images/s, s/epoch per model) on this machine -> results/trainer-{cpu,gpu}/
bench-trainer: install
	$(BIN)/python benchmarks/trainer.py

# The GPU checks in one call of at most 9 minutes (fast net over seeds, trainer speed with and without
# compile, the gpu benchmark preset) -> results/{fast-net-gpu,trainer-gpu,benchmark-gpu}/; TINY=1 on a CPU
# checks the script itself. On the lent GPU machine run it as `bash benchmarks/gpu_suite.sh` (docs/gpu.md).
gpu-suite: install
	PYTHON=$(BIN)/python bash benchmarks/gpu_suite.sh

# The CLR paper's Figure 1 and Table 1 at full length on a CPU, seed 0, two lanes side by side -> results/clr-paper-cpu/
# (hours; checkpoints every 5 minutes: the same command goes on after a kill)
clr-cpu: install
	LRSEARCH=$(BIN)/lrsearch bash benchmarks/clr_cpu.sh

# The GPU workload's table and its cost clock as one prepared GPU call (benchmarks/gpu_tables.sh) -> results/tables/gpu/,
# results/calibration-gpu/; TINY=1 checks it on a CPU. Then `lrsearch run experiments/suite-gpu-table.toml` anywhere.
gpu-tables: install
	PYTHON=$(BIN)/python bash benchmarks/gpu_tables.sh

# The CLR reproduction as one prepared GPU call (benchmarks/clr_gpu.sh); TINY=1 checks it on a CPU
clr-gpu: install
	PYTHON=$(BIN)/python bash benchmarks/clr_gpu.sh

# The smoke preset under the local executor and Ray with 1 and 2 workers -> results/executors-<device>/
bench-executors: install
	$(BIN)/python benchmarks/executors.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
