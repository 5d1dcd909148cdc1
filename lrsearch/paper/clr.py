"""Reproduce the CLR paper's CIFAR-10 experiments (Smith 2017: Fig. 1, Tables 1-3, Fig. 3).

`lrsearch clr-paper experiments/clr_paper.toml [--stage main|extra|all] [--quick]` trains the
Caffe CIFAR-10 nets under each policy of the config, over every seed of the config, and runs
the Figure 3 range test. Each (policy, seed) is a run in the results store, committed when it
finishes, so the reproduction resumes across calls (a GPU call of limited length, say).
Tables, figures and REPORT.md come from the store (`build_clr_report`).

Speed (the whole main stage has to fit one GPU call): a policy's seeds train together in one
process, their models stacked (`training.ensemble.train_seeds`), and several policies train
side by side in worker processes (`workers`). The parent process alone writes the store.
Running side by side, `train_s` measures a shared machine: it is not comparable across policies.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time
from pathlib import Path
from typing import Annotated

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from lrsearch.experiment.claims import RunClaims
from lrsearch.experiment.config import ConfigError
from lrsearch.experiment.provenance import changed_note, environment
from lrsearch.experiment.store import Store, TrialRecord
from lrsearch.reporting.tables import bootstrap_ci
from lrsearch.search.lr_finder import RangeTest, ema, plot_range_test
from lrsearch.search.strategies import USABLE
from lrsearch.training.tasks import TASKS, Task, get_task
from lrsearch.training.workloads import TaskWorkload

PAPER = "Smith, Cyclical Learning Rates for Training Neural Networks, WACV 2017 (arXiv:1506.01186)"
PAPER_SPEEDUP = 70_000 / 25_000  # the headline: the fixed policy's 81.4% at 70,000 iterations, CLR's at 25,000
STAGES = ("main", "extra")
GROUPS = ("table1", "table3", "sigmoid-bn")
RANGE_TEST = "range-test"
# schedule parameters counted in iterations: divided by `scale` in quick mode
_ITERATION_KEYS = ("step_size", "n_iters", "total_iters", "total_steps", "warmup_iters", "until")


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    group: str = "table1"
    stage: str = "main"
    iterations: int = Field(gt=0)
    schedule: dict
    task: str | None = None  # default: the config's task
    optimizer: str | None = None  # default: the task's (sgd)
    nesterov: bool | None = None
    figure1: bool = False  # drawn in the Figure 1 analogue (the paper shows fixed, exp and CLR)
    # (iterations, test accuracy) the paper reports for this policy; TOML writes each pair as a list
    paper: list[Annotated[tuple[int, float], Strict(False)]] = []
    source: str = ""

    @model_validator(mode="after")
    def _known(self) -> Policy:
        for field, value, allowed in (("group", self.group, GROUPS), ("stage", self.stage, STAGES),
                                      ("task", self.task, [None, *TASKS])):
            if value not in allowed:
                raise ValueError(f"{field} {value!r}: expected one of {', '.join(str(a) for a in allowed if a)}")
        return self


class RangeTestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_lr: float = Field(ge=0)
    max_lr: float = Field(gt=0)
    epochs: float = Field(gt=0)
    mode: str = "linear"
    n_evals: int = 40


class Quick(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    scale: int = Field(ge=1)
    train_subset: int
    test_subset: int
    eval_every: int | None = Field(default=None, gt=0)  # iterations of the quick run; default: eval_every / scale


class ClrPaper(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str
    results: str
    seeds: list[int] = Field(default=[0], min_length=1)
    eval_every: int = Field(gt=0)
    reference_acc: float = Field(gt=0, le=1)
    policy: list[Policy] = Field(min_length=1)
    range_test: RangeTestSpec
    quick: Quick

    @model_validator(mode="after")
    def _consistent(self) -> ClrPaper:
        names = [p.name for p in self.policy]
        if len(set(names)) != len(names) or RANGE_TEST in names:
            raise ValueError(f"policy names must be distinct and not {RANGE_TEST!r}: {names}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds}: expected distinct seeds")
        return self


def load_clr_paper(path: str | Path) -> ClrPaper:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file; the reproduction's config is experiments/clr_paper.toml")
    try:
        raw = tomllib.loads(path.read_text())
        return ClrPaper(**raw)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    except ValidationError as err:
        policies = raw.get("policy") if isinstance(raw.get("policy"), list) else []

        def where(loc: tuple) -> str:  # policy.3.iterations -> policy[exp].iterations
            if len(loc) > 1 and loc[0] == "policy" and isinstance(loc[1], int) and loc[1] < len(policies):
                name = policies[loc[1]].get("name", loc[1]) if isinstance(policies[loc[1]], dict) else loc[1]
                loc = (f"policy[{name}]", *loc[2:])
            return ".".join(map(str, loc))

        problems = [f"field {where(e['loc'])!r}: {e['msg']}" for e in err.errors()]
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None


def scale_schedule(spec: dict, scale: int) -> dict:
    """The same schedule over 1/scale of the iterations: iteration counts divided, and per-iteration
    decay factors (gamma of exponential and exp_range) raised to `scale`, so the total decay is kept."""
    out = {}
    for key, value in spec.items():
        if key in _ITERATION_KEYS:
            out[key] = max(1, round(value / scale))
        elif key == "milestones":
            out[key] = [max(1, round(m / scale)) for m in value]
        elif key == "stages":
            out[key] = [scale_schedule(stage, scale) for stage in value]
        elif key == "gamma" and (spec.get("name") == "exponential" or spec.get("mode") == "exp_range"):
            out[key] = value**scale
        else:
            out[key] = value
    return out


# ---------------------------------------------------------------- planning and running


def policy_task(config: ClrPaper, policy: Policy, quick: bool, channels_last: bool | None = None) -> Task:
    """The task one policy trains: its net, optimizer, length and evaluation interval (quick: scaled), and the
    memory layout asked for (channels_last: None keeps the task's)."""
    task = get_task(policy.task or config.task)
    overrides = {k: v for k, v in (("optimizer", policy.optimizer), ("nesterov", policy.nesterov),
                                   ("channels_last", channels_last)) if v is not None}
    if quick:
        q = config.quick
        overrides |= {"train_subset": q.train_subset, "test_subset": q.test_subset}
        iterations, eval_every = max(1, policy.iterations // q.scale), q.eval_every or max(1, config.eval_every // q.scale)
    else:
        iterations, eval_every = policy.iterations, config.eval_every
    return task.with_overrides(epochs=None, steps=iterations, eval_every=eval_every, target_acc=config.reference_acc,
                               **overrides)


def experiment_name(quick: bool) -> str:
    return "clr-paper-quick" if quick else "clr-paper"


def selected(config: ClrPaper, stage: str, only: list[str] | None) -> list[Policy]:
    """The policies of a stage ("main", "extra" or "all"), or those named in `only`."""
    if only:
        unknown = sorted(set(only) - {p.name for p in config.policy} - {RANGE_TEST})
        if unknown:
            raise ConfigError(f"--only {' '.join(unknown)}: no such policy; the config has "
                              f"{', '.join(p.name for p in config.policy)} and {RANGE_TEST}")
        return [p for p in config.policy if p.name in only]
    return [p for p in config.policy if stage == "all" or p.stage == stage]


def _train_job(job: dict) -> list[dict]:
    """One policy's missing seeds, in this process (a worker's entry point): one record per seed."""
    import torch

    from lrsearch.training.ensemble import train_seeds
    from lrsearch.training.trainer import train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    task, params, seeds = job["task"], {"schedule": job["schedule"]}, job["seeds"]
    if job["stack_seeds"]:
        results = train_seeds(task, params, seeds, device=job["device"], data_source=job["data_source"])
    else:
        results = [train(task, params, seed=s, device=job["device"], data_source=job["data_source"],
                         checkpoint=checkpointing(job, s)) for s in seeds]
    return [r.to_dict() for r in results]


def checkpoint_path(out: Path, policy: str, seed: int) -> Path:
    """Where an unfinished (policy, seed) run keeps its checkpoint: beside the store, so that the results folder
    carries it to another machine; the trainer removes it when the run ends."""
    return Path(out) / "checkpoints" / f"{policy}-seed{seed}.pt"


def checkpointing(job: dict, seed: int):
    from lrsearch.training.checkpoint import Checkpointing

    if not job.get("checkpoint_every"):
        return None
    every_steps, every_s = job["checkpoint_every"]
    return Checkpointing(checkpoint_path(job["out"], job["name"], seed), every_steps=every_steps, every_s=every_s)


def _range_test_job(job: dict) -> list[dict]:
    import torch

    from lrsearch.search.lr_finder import range_test

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    spec = job["spec"]
    test = range_test(job["task"], spec["min_lr"], spec["max_lr"], epochs=spec["epochs"], mode=spec["mode"],
                      seed=job["seeds"][0], n_evals=spec["n_evals"], device=job["device"], data_source=job["data_source"])
    return [{"status": "failed" if test.status == "failed" else "ok", "train_s": test.train_s, "wall_s": test.wall_s,
             "stop_reason": test.stop_reason, "mode": test.mode, "table": test.table.to_dict("records")}]


def run_clr_paper(config: ClrPaper, quick: bool = False, results: str | Path | None = None, device: str | None = None,
                  data_source: str | None = None, only: list[str] | None = None, stage: str = "main",
                  workers: int | None = None, stack_seeds: bool | None = None, time_limit_s: float | None = None,
                  report_only: bool = False, reset: bool = False, checkpoint_every: str | None = None,
                  channels_last: bool | None = None, seeds: list[int] | None = None) -> Path:
    """Train every selected (policy, seed) not yet complete in the store, then write the report.

    workers: processes side by side (default: 8 on a GPU, 1 on a CPU, where 1 trains in this process);
    stack_seeds: a policy's seeds as one stacked model (default: on a GPU only; on a CPU the stacked
    convolutions are slower than one model after another); time_limit_s: after this many seconds no job
    starts and unfinished ones are stopped (what finished is kept; the next call trains the rest);
    report_only: rebuild the report from the store, training nothing; reset: drop stored runs whose policy
    changed since (else the call stops with DefinitionChanged, naming the changed fields); checkpoint_every:
    '1000' (steps) or '300s', '5m' (default: 5m where seeds are not stacked; stacked seeds have none): each
    unfinished run's checkpoint in <results>/checkpoints/, gone on from by the next call (a kill loses at most
    that much); channels_last: the nets' memory layout (None: the task's; on a CPU it is faster, see
    benchmarks/clr_cpu_speed.py); seeds: train only these (default: the config's)."""
    out = Path(results or (config.results + ("-quick" if quick else "")))
    if report_only:
        build_clr_report(out, config, quick)
        return out
    import torch

    on_gpu = (device or "auto") in ("auto", "cuda") and torch.cuda.is_available() or str(device).startswith("cuda")
    workers = workers or (8 if on_gpu else 1)
    stack_seeds = on_gpu if stack_seeds is None else stack_seeds
    if checkpoint_every and stack_seeds:
        raise ConfigError("--checkpoint-every: checkpoints are written by one model's trainer, not by stacked seeds; "
                          "add --no-stack-seeds, or leave --checkpoint-every out")
    from lrsearch.training.checkpoint import parse_every

    try:
        every = None if stack_seeds else parse_every(checkpoint_every or "5m")
    except ValueError as err:
        raise ConfigError(f"--checkpoint-every: {err}") from None
    policies = selected(config, stage, only)
    name = experiment_name(quick)
    deadline = time.monotonic() + time_limit_s if time_limit_s else math.inf
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out / "results.sqlite", create=True)
    env = environment() | {"workers": workers, "stack_seeds": stack_seeds}
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else 0
    common = {"device": device, "data_source": data_source, "threads": threads, "stack_seeds": stack_seeds,
              "out": str(out), "checkpoint_every": every}
    planned = []  # (job without seeds, the seeds it plans)
    for policy in policies:
        planned.append((common | {"name": policy.name, "task": policy_task(config, policy, quick, channels_last),
                                  "schedule": scale_schedule(policy.schedule, config.quick.scale) if quick else policy.schedule},
                        list(seeds or config.seeds)))
    if (not only or RANGE_TEST in only) and stage in ("main", "all"):
        task = policy_task(config, Policy(name=RANGE_TEST, iterations=1, schedule={}), quick, channels_last)
        planned.append((common | {"name": RANGE_TEST, "task": task, "spec": config.range_test.model_dump()},
                        [(seeds or config.seeds)[0]]))
    # The runner's change check and claims (claims.py, one code path with `lrsearch run`): a policy edited since
    # its runs were stored stops here, naming its fields; a run another live process holds is left to it.
    definitions = {id(job): run_definition(job, data_source) for job, _ in planned}
    workload = TaskWorkload(planned[0][0]["task"], data_source) if planned else None
    claims = RunClaims(store, name, env)
    try:
        claims.check({(job["name"], 1, s): definitions[id(job)] for job, seeds in planned for s in seeds},
                     workload.definition_defaults() if workload else {},
                     workload.definition_ignored() if workload else set(), reset)
        data = data_facts(Path(workload.source())) if planned else {}
        (out / "config.json").write_text(json.dumps(config.model_dump() | {"quick_run": quick, "data": data}, indent=2))
        jobs = []
        for job, seeds in planned:
            claimed, complete, busy = {}, 0, 0
            for seed in seeds:
                state, run_id = claims.claim(task=job["task"].name, strategy=job["name"], budget=1, seed=seed,
                                             definition=definitions[id(job)])
                if state == "claimed":
                    claimed[seed] = run_id
                complete += state == "complete"
                busy += state == "busy"
            if complete:
                print(f"{job['name']}: {complete} seed(s) already complete, skipped")
            if busy:
                print(f"{job['name']}: {busy} seed(s) being trained by another process, left to it")
            if claimed:
                jobs.append(job | {"seeds": list(claimed), "run_ids": list(claimed.values())})
        jobs.sort(key=lambda j: -(j["task"].steps or 0) * len(j["seeds"]))  # the longest first: the shortest makespan

        def commit(job: dict, records: list[dict]) -> None:
            _commit(store, job, records)
            for run_id in job["run_ids"]:
                claims.complete(run_id)

        if workers == 1:
            for job in jobs:
                if time.monotonic() > deadline:
                    print(f"time limit: {job['name']} and the jobs after it not started; run again to go on")
                    break
                commit(job, _range_test_job(job) if "spec" in job else _train_job(job))
        else:
            _side_by_side(jobs, workers, deadline, commit)
    finally:
        claims.close()  # runs not finished: free for the next call at once
        store.close()
    build_clr_report(out, config, quick)
    return out


def data_facts(source: Path) -> dict:
    """What the report says about the data, read where it was measured: the source's name and, for a JPEG
    copy, the PSNR against the originals that the README beside it states (None where none says so)."""
    facts = {"name": source.name, "jpeg": any(k in source.name.lower() for k in ("jpeg", "jpg")),
             "psnr_db": None, "psnr_from": None}
    readme = (source.parent if source.is_file() else source) / "README.md"
    if facts["jpeg"] and readme.is_file():
        import re
        found = re.search(r"PSNR is ([0-9.]+) dB on average", readme.read_text())
        if found:
            facts |= {"psnr_db": float(found.group(1)), "psnr_from": str(readme)}
    return facts


def _data_note(out: Path) -> str:
    """The report's deviation line about the data, from config.json's `data` (written by the run)."""
    try:
        data = json.loads((out / "config.json").read_text()).get("data") or {}
    except (OSError, ValueError):
        data = {}
    if not data:
        return "- Data: not recorded by the runs (written before lrsearch recorded it); see their definitions."
    if not data.get("jpeg"):
        return f"- Data: `{data['name']}`, read as CIFAR-10's original pixels."
    psnr = (f"; PSNR {data['psnr_db']:g} dB against the lossless originals, as `{data['psnr_from']}` states"
            if data.get("psnr_db") is not None else "")
    return (f"- Data: `{data['name']}`, a JPEG re-encoding of CIFAR-10{psnr}, so accuracies run somewhat below the "
            "paper's: about 0.8 points on the fixed policy by the estimate of the issue that asked for these runs "
            "(lrsearch issue 33), not measured here, since no lossless copy of all 60,000 images is at hand.")


def run_definition(job: dict, data_source: str | None) -> dict:
    """What one (policy, seed) run trains, as the store keeps it: the task (its net, iterations, evaluation
    interval, subsets) and data, as the runner's definitions hold them, and the policy's schedule (or the
    range test's settings)."""
    definition = TaskWorkload(job["task"], data_source).definition()
    if "spec" in job:
        return definition | {"range_test": job["spec"]}
    return definition | {"schedule": job["schedule"]}


def _side_by_side(jobs: list[dict], workers: int, deadline: float, commit) -> None:
    """The jobs in `workers` spawned processes; each job's records committed here as it finishes. At the
    deadline (or on Ctrl-C) the workers are terminated: their unfinished jobs leave nothing in the store."""
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(workers)
    try:
        pending = {pool.apply_async(_range_test_job if "spec" in job else _train_job, (job,)): job for job in jobs}
        while pending:
            for result in [r for r in pending if r.ready()]:
                commit(pending.pop(result), result.get())
            if pending and time.monotonic() > deadline:
                print(f"time limit: {', '.join(j['name'] for j in pending.values())} stopped unfinished; run again to go on")
                break
            time.sleep(0.2)
    finally:
        pool.terminate()
        pool.join()


def _commit(store: Store, job: dict, records: list[dict]) -> None:
    """Each seed's record into the run claimed for it (what an earlier, interrupted process left in it is
    replaced); the caller marks the runs complete."""
    for seed, run_id, record in zip(job["seeds"], job["run_ids"], records):
        store.drop_trials_from(run_id, 0)
        if "spec" in job:
            store.add_trial(TrialRecord(
                run_id=run_id, trial_index=0, kind="range_test", params={"range_test": job["spec"]}, lr=None,
                status=record["status"], value=None, train_s=record["train_s"], overhead_s=0.0,
                extra={"stop_reason": record["stop_reason"], "mode": record["mode"]}, curve=record["table"],
                result={"wall_s": record["wall_s"], "steps": len(record["table"])}))
            print(f"range test: {record['stop_reason']}, {record['train_s']:.1f} s")
        else:
            curve = record.pop("curve")
            store.add_trial(TrialRecord(
                run_id=run_id, trial_index=0, kind="train", params={"schedule": job["schedule"]}, lr=None,
                status=record["status"], value=record["value"] if record["status"] in USABLE else None,
                train_s=record["train_s"], overhead_s=0.0,
                extra={"policy": job["name"], "optimizer": job["task"].optimizer,
                       "resumed_from": record.get("resumed_from", [])}, curve=curve, result=record))
            print(f"{job['name']} seed {seed}: {record['status']}, final test accuracy {record['final_test_acc']}, "
                  f"{record['train_s']:.1f} s training ({record['device']})")


# ---------------------------------------------------------------- tables


def iterations_to(curve: pd.DataFrame, acc: float) -> float:
    """The first evaluated iteration whose test accuracy reaches `acc` (NaN if none does)."""
    hit = curve[curve["test_acc"] >= acc]
    return float(hit["step"].iloc[0]) if len(hit) else math.nan


def accuracy_at(curve: pd.DataFrame, iteration: int) -> float:
    """Test accuracy at the last evaluation at or before `iteration` (NaN if the run had none)."""
    upto = curve[curve["step"] <= iteration].dropna(subset=["test_acc"])
    return float(upto["test_acc"].iloc[-1]) if len(upto) else math.nan


def _train_curves(curves: pd.DataFrame, scale: int) -> pd.DataFrame:
    train = curves[curves["kind"] == "train"].dropna(subset=["test_acc"])
    return train.assign(iteration=train["step"] * scale)


def _spread(values: pd.Series) -> dict:
    v = values.dropna()
    return {"mean": v.mean() if len(v) else math.nan, "sd": v.std(ddof=1) if len(v) > 1 else math.nan,
            "min": v.min() if len(v) else math.nan, "max": v.max() if len(v) else math.nan}


def per_seed(curves: pd.DataFrame, config: ClrPaper, scale: int = 1, statuses: dict | None = None) -> pd.DataFrame:
    """One row per (policy, seed): its status (`statuses[(policy, seed)]`, default ok), final and best test
    accuracy, iterations run, iterations to 81.4% and to the same seed's fixed policy's final accuracy (in
    the paper's iterations when quick). A run that diverged before its first evaluation has no row."""
    statuses = statuses or {}
    train = _train_curves(curves, scale)
    fixed_curves = {seed: c.sort_values("iteration").assign(step=lambda d: d["iteration"])
                    for seed, c in train[train["strategy"] == "fixed"].groupby("seed")}
    fixed_final = {seed: float(c["test_acc"].iloc[-1]) for seed, c in fixed_curves.items()}
    rows = []
    for (policy, seed), c in train.groupby(["strategy", "seed"], sort=False):
        c = c.sort_values("iteration").assign(step=lambda d: d["iteration"])
        rows.append({"policy": policy, "seed": int(seed), "status": statuses.get((policy, int(seed)), "ok"),
                     "iterations": int(c["iteration"].max()),
                     "test_acc": float(c["test_acc"].iloc[-1]), "best_test_acc": float(c["test_acc"].max()),
                     "iterations_to_reference": iterations_to(c, config.reference_acc),
                     "iterations_to_fixed_final": iterations_to(c, fixed_final[seed]) if seed in fixed_final else math.nan,
                     # the reverse reading: where each run first reaches its own final accuracy, and where the same
                     # seed's fixed policy first does
                     "iterations_to_own_final": iterations_to(c, float(c["test_acc"].iloc[-1])),
                     "fixed_iterations_to_own_final": (iterations_to(fixed_curves[seed], float(c["test_acc"].iloc[-1]))
                                                       if seed in fixed_curves else math.nan),
                     "train_s": float(c["train_s"].max())})
    return pd.DataFrame(rows)


def table1(seeds: pd.DataFrame, config: ClrPaper, group: str = "table1") -> pd.DataFrame:
    """Our Table 1 (or another group's): per policy, the final test accuracy over seeds (mean, sd, min, max)
    beside the paper's, and the mean iterations to the paper's fixed result and to our fixed policy's."""
    rows = []
    for policy in config.policy:
        if policy.group != group:
            continue
        s = seeds[seeds["policy"] == policy.name] if len(seeds) else seeds
        if s.empty:
            continue
        acc = _spread(s["test_acc"])
        paper_it, paper_acc = policy.paper[-1] if policy.paper else (None, None)
        rows.append({"policy": policy.name, "seeds": len(s), "diverged": int((s["status"] == "diverged").sum()),
                     "iterations": int(s["iterations"].max()),
                     "test_acc_mean": acc["mean"], "test_acc_sd": acc["sd"], "test_acc_min": acc["min"],
                     "test_acc_max": acc["max"], "paper_iterations": paper_it, "paper_acc": paper_acc,
                     "minus_paper_points": (acc["mean"] - paper_acc) * 100 if paper_acc is not None else math.nan,
                     f"iterations_to_{config.reference_acc:.1%}": s["iterations_to_reference"].mean(),
                     "reached_reference": int(s["iterations_to_reference"].notna().sum()),
                     "iterations_to_fixed_final": s["iterations_to_fixed_final"].mean(),
                     "train_s_mean": s["train_s"].mean()})
    return _integers(pd.DataFrame(rows))


def fixed_at_same_iterations(table: pd.DataFrame, curves: pd.DataFrame, scale: int = 1) -> pd.DataFrame:
    """Table 1 with the fixed policy's test accuracy at each policy's iteration count (mean over its seeds): the
    two policies compared at equal cost."""
    if not len(table):
        return table
    train = _train_curves(curves, scale)
    fixed = [c.assign(step=c["iteration"]) for _, c in train[train["strategy"] == "fixed"].groupby("seed")]
    at = [np.mean([accuracy_at(c, int(n)) for c in fixed]) if fixed else math.nan for n in table["iterations"]]
    return table.assign(fixed_acc_at_same_iterations=at)


def _integers(table: pd.DataFrame) -> pd.DataFrame:
    """Iteration counts as integers (missing ones stay missing), so tables print 70000, not 7e+04."""
    for column in table.columns:
        if column.startswith(("iterations", "paper_iterations", "fixed_iterations", "policy_iterations")):
            table[column] = table[column].round().astype("Int64")
    return table


def at_iterations(curves: pd.DataFrame, config: ClrPaper, group: str, scale: int = 1,
                  statuses: dict | None = None) -> pd.DataFrame:
    """Table 3 style: each policy's test accuracy (mean and sd over the seeds still training there) at every
    iteration count the paper reports for it, beside the paper's number; `diverged` counts the seeds whose
    run diverged (`statuses[(policy, seed)]`), which have no accuracy from then on."""
    statuses = statuses or {}
    train = _train_curves(curves, scale)
    rows = []
    for policy in config.policy:
        ran = sorted(seed for (name, seed) in statuses if name == policy.name)
        if policy.group != group or not ran:
            continue
        curves_by_seed = [s.assign(step=s["iteration"]) for _, s in train[train["strategy"] == policy.name].groupby("seed")]
        diverged = sum(statuses[(policy.name, seed)] == "diverged" for seed in ran)
        for iteration, paper_acc in policy.paper or [(policy.iterations, None)]:
            # only the seeds still training at `iteration` (a diverged run stopped earlier)
            spread = _spread(pd.Series([accuracy_at(s, iteration) for s in curves_by_seed if s["step"].max() >= iteration],
                                       dtype=float))
            rows.append({"policy": policy.name, "optimizer": policy.optimizer or "sgd", "iterations": iteration,
                         "seeds": len(ran), "diverged": diverged, "test_acc_mean": spread["mean"],
                         "test_acc_sd": spread["sd"], "paper_acc": paper_acc})
    return _integers(pd.DataFrame(rows))


def headline(seeds: pd.DataFrame, config: ClrPaper, policies: tuple[str, ...] = ("clr-table2", "triangular2"),
             n_boot: int = 2000) -> pd.DataFrame:
    """The paper's headline as a number: iterations the fixed policy needs to reach a threshold divided by
    the iterations a CLR policy needs (same seed), for the fixed policy's own final accuracy, for 81.4%, and for
    the CLR run's own final accuracy (the claim read the other way: how long the fixed policy takes to get where
    CLR ends);
    mean and a percentile-bootstrap 95% interval of the mean over seeds, beside the paper's 70,000 / 25,000.
    A seed whose CLR run never reaches the threshold has no ratio; `seeds_reached` counts those that do."""
    rows = []
    fixed = seeds[seeds["policy"] == "fixed"].set_index("seed") if len(seeds) else pd.DataFrame()
    for name in policies:
        clr = seeds[seeds["policy"] == name].set_index("seed") if len(seeds) else pd.DataFrame()
        common = sorted(set(fixed.index) & set(clr.index)) if len(fixed) and len(clr) else []
        if not common:
            continue
        for threshold, column, fixed_column in (
                ("the fixed policy's own final accuracy", "iterations_to_fixed_final", "iterations_to_fixed_final"),
                (f"{config.reference_acc:.1%}", "iterations_to_reference", "iterations_to_reference"),
                ("the CLR run's own final accuracy", "iterations_to_own_final", None)):
            fixed_its = fixed.loc[common, fixed_column] if fixed_column else clr.loc[common, "fixed_iterations_to_own_final"]
            pairs = pd.DataFrame({"fixed": fixed_its, "clr": clr.loc[common, column]}).dropna()
            ratios = (pairs["fixed"] / pairs["clr"]).to_numpy()
            low, high = bootstrap_ci(ratios, statistic=np.mean, n_boot=n_boot) if len(ratios) else (math.nan, math.nan)
            rows.append({"policy": name, "threshold": threshold, "seeds": len(common), "seeds_reached": len(ratios),
                         "fixed_iterations_mean": pairs["fixed"].mean(), "policy_iterations_mean": pairs["clr"].mean(),
                         "speedup_mean": ratios.mean() if len(ratios) else math.nan, "speedup_ci_low": low,
                         "speedup_ci_high": high, "paper_speedup": PAPER_SPEEDUP})
    return _integers(pd.DataFrame(rows))


def _stored_range_test(curves: pd.DataFrame, mode: str) -> RangeTest | None:
    rt = curves[curves["kind"] == "range_test"]
    if rt.empty:
        return None
    table = rt[["step", "lr", "train_loss", "val_acc"]].reset_index(drop=True)
    table.insert(3, "smoothed_loss", ema(table["train_loss"].to_numpy()))
    return RangeTest(table, "stored", "ok", float("nan"), float("nan"), mode, 0)


# ---------------------------------------------------------------- figures and report


def _curve_figure(train: pd.DataFrame, names: list[str], path: Path, title: str, reference: float, scale: int,
                  bands: bool = True) -> None:
    import seaborn as sns
    from matplotlib.figure import Figure

    sns.set_theme(style="whitegrid")
    data = train[train["strategy"].isin(names)]
    fig = Figure(figsize=(10, 4.8))
    ax = fig.subplots()
    ax.axhline(reference, color="0.3", ls=":", lw=1, label=f"{reference:.1%} (the paper's fixed result)")
    if len(data):
        n_seeds = data["seed"].nunique()
        sns.lineplot(data, x="iteration", y="test_acc", hue="strategy", hue_order=[n for n in names if n in set(data["strategy"])],
                     estimator="mean", errorbar=("pi", 100) if bands else None, ax=ax)
        what = f"mean of {n_seeds} seed(s)" + ("; band: min to max" if bands else "")
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title=f"policy ({what})", frameon=False)
        ax.set_ylim(max(0.0, data["test_acc"].quantile(0.02) - 0.02), min(1.0, max(data["test_acc"].max(), reference) + 0.02))
    ax.set(xlabel="iteration" + (f" (quick run's x{scale}, the paper's scale)" if scale > 1 else ""),
           ylabel="test accuracy (all 10,000 test images)" if scale == 1 else "test accuracy", title=title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _provenance_lines(runs: pd.DataFrame) -> list[str]:
    lines = []
    for raw in runs["environment"].drop_duplicates() if len(runs) else []:
        env = json.loads(raw)
        side = (f"; {env['workers']} worker process(es), seeds stacked: {env['stack_seeds']}" if "workers" in env else "")
        lines += [f"- command: `{env['command']}`; date: {env['date']}; device: {env['device']}; "
                  f"git commit: `{env['git_commit']}`{changed_note(env)}{side}",
                  "  - versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items())]
    return lines


def build_clr_report(out: Path, config: ClrPaper, quick: bool) -> Path:
    store = Store(out / "results.sqlite", create=False)
    try:
        curves = store.curves_frame()
        runs = store.runs_frame()
        trials = store.trials_frame()
    finally:
        store.close()
    statuses = {}
    if len(trials):
        done = trials[trials["kind"] == "train"]
        statuses = {(r.strategy, int(r.seed)): r.status for r in done.itertuples()}
    scale = config.quick.scale if quick else 1
    (out / "tables").mkdir(exist_ok=True)
    (out / "figures").mkdir(exist_ok=True)
    curves.to_csv(out / "tables" / "curves.csv", index=False)
    seeds = per_seed(curves, config, scale, statuses)
    tables = {"per_seed": seeds, "table1": fixed_at_same_iterations(table1(seeds, config), curves, scale),
              "headline": headline(seeds, config),
              "table3": at_iterations(curves, config, "table3", scale, statuses),
              "sigmoid_bn": at_iterations(curves, config, "sigmoid-bn", scale, statuses),
              "unfinished": unfinished_runs(out, config, quick)}
    for key, table in tables.items():
        table.to_csv(out / "tables" / f"{key}.csv", index=False)

    train = _train_curves(curves, scale)
    figure1 = [p.name for p in config.policy if p.figure1]
    _curve_figure(train, figure1, out / "figures" / "figure1.png", "Figure 1 analogue: CIFAR-10, Caffe 'full' net",
                  config.reference_acc, scale)
    table1_names = [p.name for p in config.policy if p.group == "table1"]
    _curve_figure(train, table1_names, out / "figures" / "table1_policies.png",
                  "Every Table 1 policy: test accuracy against iteration", config.reference_acc, scale, bands=False)
    suggestion = ""
    test = _stored_range_test(curves, config.range_test.mode)
    if test is not None:
        try:
            base_lr, max_lr = test.suggest_range("acc")
            suggestion = f"suggested base_lr {base_lr:.4g}, max_lr {max_lr:.4g} (paper: 0.001 and 0.006)"
        except ValueError as err:
            base_lr = max_lr = None
            suggestion = f"no range suggested: {err}"
        plot_range_test(test, out / "figures" / "figure3.png", base_lr, max_lr,
                        title="Figure 3 analogue: LR range test, accuracy against LR")
    path = out / "REPORT.md"
    path.write_text("\n".join(_report_lines(config, quick, scale, runs, tables, suggestion, test is not None,
                                            _data_note(out), (out / "speed" / "README.md").exists())))
    return path


def unfinished_runs(out: Path, config: ClrPaper, quick: bool) -> pd.DataFrame:
    """The runs a checkpoint in <out>/checkpoints/ stands for (trained part-way, not yet in the store): where
    each stands and its last test accuracy. The next `lrsearch clr-paper` call with the same folder goes on."""
    import torch

    lengths = {p.name: max(1, p.iterations // config.quick.scale) if quick else p.iterations for p in config.policy}
    rows = []
    for path in sorted((out / "checkpoints").glob("*.pt")):
        name, _, seed = path.stem.rpartition("-seed")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            curve = state["result"]["curve"]
            step = int(state["step"])
        except Exception as err:  # named, not fatal: the run itself says the same and starts over
            rows.append({"policy": name, "seed": seed, "checkpoint": path.name, "iterations_done": None,
                         "iterations": lengths.get(name), "last_test_acc": None,
                         "note": f"unreadable ({type(err).__name__})"})
            continue
        rows.append({"policy": name, "seed": seed, "checkpoint": path.name, "iterations_done": step,
                     "iterations": lengths.get(name), "last_test_acc": curve[-1]["test_acc"] if curve else None,
                     "note": f"train_s so far {state['result']['train_s']:.0f}"})
    return pd.DataFrame(rows)


def _seeds_note(seeds: pd.DataFrame, config: ClrPaper) -> str:
    """How many seeds back each policy's numbers here: the seeds the runs trained (the config's, or --seeds)."""
    ran = sorted(int(s) for s in seeds["seed"].unique()) if len(seeds) else []
    planned = f"the config plans {len(config.seeds)} ({', '.join(map(str, config.seeds))})"
    if not ran:
        return f"No finished run yet; {planned}"
    return f"Seed(s) {', '.join(map(str, ran))} per policy ({planned}, and `--seeds` chooses)"


def _markdown(table: pd.DataFrame) -> list[str]:
    """A table for REPORT.md; a missing value (a threshold never reached) prints as "-"."""
    if not len(table):
        return ["(no runs yet)", ""]
    shown = table.astype(object).where(table.notna(), None)
    return [shown.to_markdown(index=False, floatfmt=".4g", missingval="-"), ""]


def _clock_note(runs: pd.DataFrame) -> str:
    """What `train_s` means here: a shared machine's clock when runs trained side by side or stacked."""
    envs = [json.loads(raw) for raw in runs["environment"].drop_duplicates()] if len(runs) else []
    if any(env.get("workers", 1) > 1 or env.get("stack_seeds") for env in envs):
        return ("- `train_s` is each run's clock while several runs shared the machine (seeds stacked in one process, "
                "policies side by side): it is not comparable across policies, and not a single run's time.")
    if _overlapping(runs):
        return ("- `train_s` is each run's clock while runs of other processes trained beside it on the same machine "
                "(`make clr-cpu` trains two lanes at once, one thread each), summed over the processes of a run that "
                "went on from a checkpoint: compare iterations across policies, not seconds.")
    return ("- `train_s`: each policy's seeds trained one after another in one process; on a machine that other work "
            "shared, so the seconds are indicative only.")


def _findings(tables: dict, config: ClrPaper) -> list[str]:
    """The headline in words, from the tables (means over the seeds that ran)."""
    t1, head = tables["table1"], tables["headline"]
    if not len(t1) or "fixed" not in set(t1["policy"]) or not len(head):
        return ["Not yet: the fixed policy and a CLR run must both have finished."]
    fixed = t1.set_index("policy").loc["fixed"]
    out = [f"- The fixed policy ends at {fixed['test_acc_mean']:.2%} after {int(fixed['iterations']):,} iterations "
           f"(the paper: {fixed['paper_acc']:.1%}), over {int(fixed['seeds'])} seed(s)."]
    by = head.set_index(["policy", "threshold"])
    for name in dict.fromkeys(head["policy"]):
        row = t1.set_index("policy").loc[name]
        own = by.loc[(name, "the fixed policy's own final accuracy")]
        back = by.loc[(name, "the CLR run's own final accuracy")]
        reached = (f"reaches the fixed policy's final accuracy at {int(own['policy_iterations_mean']):,} iterations, "
                   f"{own['speedup_mean']:.2f}x sooner" if own["seeds_reached"] else
                   "never reaches the fixed policy's final accuracy")
        reverse = (f"the fixed policy first gets to `{name}`'s final accuracy at "
                   f"{int(back['fixed_iterations_mean']):,} iterations, {back['speedup_mean']:.2f}x the "
                   f"{int(back['policy_iterations_mean']):,} `{name}` needed" if back["seeds_reached"] else
                   f"the fixed policy never gets to `{name}`'s final accuracy")
        out.append(f"- `{name}` ends at {row['test_acc_mean']:.2%} after {int(row['iterations']):,} iterations (the "
                   f"paper: {row['paper_acc']:.1%}; the fixed policy at {int(row['iterations']):,}: "
                   f"{row['fixed_acc_at_same_iterations']:.2%}). It {reached}; {reverse}. The paper's claim: "
                   f"{PAPER_SPEEDUP:.1f}x, both policies at {config.reference_acc:.1%}.")
    return out


def _overlapping(runs: pd.DataFrame) -> bool:
    """Whether two finished runs of different processes trained at the same time."""
    if not len(runs) or "worker" not in runs:
        return False
    done = runs.dropna(subset=["finished_at"]).sort_values("started_at")
    spans = list(zip(done["started_at"], done["finished_at"], done["worker"]))
    return any(b[0] < a[1] and a[2] != b[2] for i, a in enumerate(spans) for b in spans[i + 1:])


def _report_lines(config: ClrPaper, quick: bool, scale: int, runs: pd.DataFrame, tables: dict, suggestion: str,
                  has_range_test: bool, data_note: str, speed_table: bool = False) -> list[str]:
    lines = [f"# CLR paper reproduction{' (QUICK: scaled down, not comparable with the paper)' if quick else ''}", "",
             f"Reproduces the CIFAR-10 experiments of {PAPER}: Figure 1, Tables 1 to 3 and the range test of Figure 3.",
             "", "## Where these numbers come from", "", *_provenance_lines(runs),
             f"- report built {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC} from results.sqlite",
             *(["- the net's training speed on the machine that ran them, and the options chosen: "
                "[speed/README.md](speed/README.md)"] if speed_table else []),
             _clock_note(runs), ""]
    lines += ["## Findings", "", *_findings(tables, config), ""]
    lines += ["## The headline", "",
              "Iterations the fixed policy needs to reach a threshold, divided by the iterations the CLR run needs "
              f"(same seed; mean over seeds and a bootstrap 95% interval). The paper: 70,000 / 25,000 = {PAPER_SPEEDUP:.1f}.",
              "", *_markdown(tables["headline"])]
    lines += ["## Table 1 analogue (and the Table 2 run, `clr-table2`)", "",
              "Final test accuracy over seeds beside the paper's; iterations to the paper's fixed result and to our "
              "fixed policy's final accuracy are means over the seeds that reach it.", "",
              *_markdown(tables["table1"]), "![Figure 1](figures/figure1.png)", "",
              "![Table 1 policies](figures/table1_policies.png)", ""]
    if len(tables["unfinished"]):
        lines += ["## Runs not finished yet", "",
                  "Trained part-way; each one's checkpoint is in `checkpoints/`, and the same command goes on from it "
                  "(here or on a clone elsewhere). They are in no table above until they finish.", "",
                  *_markdown(tables["unfinished"])]
    if has_range_test:
        lines += ["## Figure 3 analogue", "", suggestion, "", "![Figure 3](figures/figure3.png)", ""]
    lines += ["## Table 3 analogue (stage extra)", "", *_markdown(tables["table3"]),
              "## Sigmoid units with batch normalisation (Sec. 4.1.2, stage extra)", "", *_markdown(tables["sigmoid_bn"])]
    lines += ["## Settings and where each comes from", "", "| policy | stage | source |", "| --- | --- | --- |",
              *[f"| {p.name} | {p.stage} | {p.source} |" for p in config.policy], ""]
    lines += ["## Deviations from the paper", "",
              data_note,
              "- Framework: PyTorch, not Caffe. torch's SGD applies momentum to the gradient and then scales by the "
              "learning rate; Caffe folds the learning rate into the momentum buffer. The two agree while the LR "
              "is constant and differ slightly while it changes.",
              "- Caffe's pooling (ceil mode), within-channel LRN, Gaussian initialisation, per-parameter lr/decay "
              "multipliers and the mean image (computed on our training images) are matched "
              "(lrsearch/training/models.py).",
              "- Settings the paper does not give are marked \"our choice\" in the table above, with the reason.",
              "- `exp_range` follows the paper's text (both boundaries decline by gamma^it); "
              "`exp_range-amplitude` is the form of bckenstler/CLR and torch's CyclicLR (only the height declines).",
              f"- {_seeds_note(tables['per_seed'], config)}; the paper does not say how many runs back its numbers.", ""]
    if quick:
        lines += [f"- QUICK run: iteration counts, step sizes and milestones divided by {scale}, decay factors raised "
                  f"to the power {scale}, {config.quick.train_subset} training and {config.quick.test_subset} test "
                  "images. It checks the pipeline; its numbers are not comparable with the paper's.", ""]
    return lines
