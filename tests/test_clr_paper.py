"""The CLR paper reproduction: config, quick-mode scaling, the tables' arithmetic, and tiny end-to-end runs."""

import math
import re

import pandas as pd
import pytest
from test_runner import REPO

from lrsearch.experiment.config import ConfigError
from lrsearch.paper.clr import (
    at_iterations,
    headline,
    iterations_to,
    load_clr_paper,
    per_seed,
    scale_schedule,
    selected,
    table1,
)
from lrsearch.training.schedules import make_schedule

CONFIG = REPO / "experiments" / "clr_paper.toml"


def test_config_has_the_papers_settings():
    config = load_clr_paper(CONFIG)
    policies = {p.name: p for p in config.policy}
    assert len(config.seeds) >= 3
    assert {"fixed", "clr-table2", "triangular2", "decay", "exp", "exp_range", "exp_range-amplitude"} == {
        p.name for p in selected(config, "main", None)}
    assert (policies["fixed"].iterations, policies["fixed"].paper) == (70000, [(70000, 0.814)])
    fixed = make_schedule(policies["fixed"].schedule, 70000)
    assert [fixed(0), fixed(60000), fixed(69999)] == pytest.approx([1e-3, 1e-4, 1e-5])
    # Table 2: three triangular stages, each range a tenth of the one before, stepsizes 2,000 / 1,000 / 500
    table2 = make_schedule(policies["clr-table2"].schedule, 25000)
    assert [table2(0), table2(2000), table2(4000)] == pytest.approx([0.001, 0.005, 0.001])
    assert [table2(16000), table2(17000), table2(22000), table2(22500), table2(24999)] == pytest.approx(
        [0.0001, 0.0005, 0.00001, 0.00005, 0.00001 + 0.00004 / 500], rel=1e-6)
    # decay: 0.007 down to 0.001 over 4,000 iterations, then constant
    decay = make_schedule(policies["decay"].schedule, 25000)
    assert [decay(0), decay(2000), decay(4000), decay(20000)] == pytest.approx([0.007, 0.004, 0.001, 0.001])
    # exp_range: both boundaries decline (the paper's text); the amplitude form kept beside it
    paper, torch_form = (make_schedule(policies[n].schedule, 42000) for n in ("exp_range", "exp_range-amplitude"))
    assert paper(40000) == pytest.approx(0.001 * 0.99994**40000) and torch_form(40000) == pytest.approx(0.001)
    assert {p.name for p in config.policy if p.figure1} == {"fixed", "clr-table2", "exp"}
    extra = selected(config, "extra", None)
    assert {p.optimizer for p in extra if p.group == "table3"} == {"sgd", "adam", "rmsprop", "adagrad", "adadelta"}
    assert {p.task for p in extra if p.group == "sigmoid-bn"} == {"clr-paper-sigmoid-bn"}
    assert all(p.source for p in config.policy)
    assert (config.range_test.min_lr, config.range_test.max_lr, config.range_test.epochs) == (0.0, 0.02, 8)


def test_bad_config_names_every_field_and_the_policy(tmp_path):
    bad = tmp_path / "c.toml"
    text = CONFIG.read_text().replace("eval_every = 1000", "eval_every = -5")
    bad.write_text(text.replace('name = "decay"\ngroup = "table1"', 'name = "decay"\ngroup = "table9"'))
    with pytest.raises(ConfigError, match=r"'eval_every'.*'policy\[decay\]'.*group 'table9'") as err:
        load_clr_paper(bad)
    assert "table9" in str(err.value) and "table1, table3, sigmoid-bn" in str(err.value)
    with pytest.raises(ConfigError, match="--only nope: no such policy"):
        selected(load_clr_paper(CONFIG), "main", ["nope"])


@pytest.mark.parametrize("policy", [p.name for p in load_clr_paper(CONFIG).policy])
def test_quick_scaling_keeps_each_schedules_shape(policy):
    config = load_clr_paper(CONFIG)
    p = next(p for p in config.policy if p.name == policy)
    full = make_schedule(p.schedule, p.iterations)
    for scale in (20, config.quick.scale):  # scales that divide every iteration count of the config
        quick = make_schedule(scale_schedule(p.schedule, scale), p.iterations // scale)
        for it in range(0, p.iterations // scale, 7):  # the same LR at the same fraction of training
            assert quick(it) == pytest.approx(full(it * scale), rel=1e-6)


def _curves(runs: dict) -> pd.DataFrame:
    """Hand-made stored curves: {(policy, seed): [test accuracy every 1,000 iterations]}."""
    return pd.DataFrame([{"strategy": policy, "seed": seed, "kind": "train", "step": (i + 1) * 1000, "test_acc": a,
                          "train_s": i + 1.0} for (policy, seed), accs in runs.items() for i, a in enumerate(accs)])


def test_tables_and_headline_on_hand_made_curves():
    config = load_clr_paper(CONFIG)
    curve = pd.DataFrame({"step": [1000, 2000, 3000], "test_acc": [0.5, 0.82, 0.83]})
    assert iterations_to(curve, 0.814) == 2000 and math.isnan(iterations_to(curve, 0.9))
    # fixed reaches its final 0.80 at 7,000 iterations in both seeds; clr-table2 reaches 0.80 at 2,500 / 3,500
    fixed = [0.5, 0.6, 0.7, 0.75, 0.78, 0.79, 0.80, 0.80]
    runs = {("fixed", 0): fixed, ("fixed", 1): fixed, ("clr-table2", 0): [0.7, 0.79, 0.80], ("clr-table2", 1): [0.7, 0.78, 0.79, 0.815],
            ("triangular2", 0): [0.6, 0.7], ("triangular2", 1): [0.6, 0.7]}
    seeds = per_seed(_curves(runs), config, statuses={("triangular2", 1): "diverged"})
    assert seeds.set_index(["policy", "seed"]).loc[("clr-table2", 1), "iterations_to_fixed_final"] == 4000
    t1 = table1(seeds, config).set_index("policy")
    assert t1.loc["clr-table2", "test_acc_mean"] == pytest.approx((0.80 + 0.815) / 2)
    assert t1.loc["clr-table2", "reached_reference"] == 1 and t1.loc["clr-table2", "iterations_to_81.4%"] == 4000
    assert t1.loc["triangular2", "diverged"] == 1 and t1.loc["fixed", "paper_acc"] == 0.814
    head = headline(seeds, config).set_index(["policy", "threshold"])
    own = head.loc[("clr-table2", "the fixed policy's own final accuracy")]
    assert own["speedup_mean"] == pytest.approx((7000 / 3000 + 7000 / 4000) / 2) and own["seeds_reached"] == 2
    # 2 seeds: no bootstrap interval (under 10)
    assert pd.isna(own["speedup_ci_low"]) and pd.isna(own["speedup_ci_high"]) and own["paper_speedup"] == 2.8
    assert head.loc[("triangular2", "the fixed policy's own final accuracy"), "seeds_reached"] == 0
    # read the other way: clr-table2 ends at 0.80 (seed 0, first reached at 3,000) and 0.815 (seed 1, at 4,000);
    # fixed first reaches 0.80 at 7,000 and never 0.815
    back = head.loc[("clr-table2", "the CLR run's own final accuracy")]
    assert back["seeds_reached"] == 1 and back["speedup_mean"] == pytest.approx(7000 / 3000)
    # scaled (quick) curves are reported in the paper's iterations
    assert per_seed(_curves(runs), config, scale=10)["iterations"].max() == 80000


def test_table3_reads_each_policy_at_the_papers_iterations():
    config = load_clr_paper(CONFIG)
    accs = [0.1 * (i % 10) for i in range(70)]
    runs = {("adam-clr", 0): accs, ("adam-clr", 1): [a + 0.02 for a in accs], ("rmsprop-clr", 0): [0.1, 0.1]}
    statuses = {("adam-clr", 0): "ok", ("adam-clr", 1): "ok", ("rmsprop-clr", 0): "diverged"}
    t3 = at_iterations(_curves(runs), config, "table3", statuses=statuses).set_index(["policy", "iterations"])
    assert t3.loc[("adam-clr", 25000), "test_acc_mean"] == pytest.approx(0.41)  # 25th evaluation: 0.4 and 0.42
    assert t3.loc[("adam-clr", 70000), "paper_acc"] == 0.811
    assert t3.loc[("rmsprop-clr", 25000), "diverged"] == 1 and math.isnan(t3.loc[("rmsprop-clr", 25000), "test_acc_mean"])


def test_data_facts_read_the_psnr_beside_the_data(tmp_path):
    from lrsearch.paper.clr import data_facts

    (tmp_path / "cifar10-jpeg.tar.gz").write_bytes(b"")
    assert data_facts(tmp_path / "cifar10-jpeg.tar.gz")["psnr_db"] is None  # no README: no number
    (tmp_path / "README.md").write_text("against the originals, PSNR is 27.25 dB on average (worst 20 dB)")
    facts = data_facts(tmp_path / "cifar10-jpeg.tar.gz")
    assert facts["jpeg"] and facts["psnr_db"] == 27.25 and facts["psnr_from"] == str(tmp_path / "README.md")
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    assert data_facts(tmp_path / "cifar-10-python.tar.gz") == {"name": "cifar-10-python.tar.gz", "jpeg": False,
                                                                "psnr_db": None, "psnr_from": None}


def _tiny_config(tmp_path):
    text = CONFIG.read_text().replace("scale = 100", "scale = 1000").replace("train_subset = 10000", "train_subset = 1000")
    text = text.replace("test_subset = 1000", "test_subset = 300").replace("epochs = 8", "epochs = 1")
    tiny = tmp_path / "clr.toml"
    tiny.write_text(text.replace("seeds = [0, 1, 2]", "seeds = [0, 1]"))
    return tiny


@pytest.mark.usefixtures("jpeg_data")
def test_tiny_quick_reproduction_end_to_end(tmp_path, monkeypatch, capsys):
    from conftest import JPEG

    from lrsearch.cli import main

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    tiny, out = _tiny_config(tmp_path), tmp_path / "out"
    assert main(["clr-paper", str(tiny), "--quick", "--results", str(out), "--only", "fixed", "clr-table2",
                 "range-test"]) == 0
    table = pd.read_csv(out / "tables" / "table1.csv")
    assert list(table["policy"]) == ["fixed", "clr-table2"] and table["test_acc_mean"].between(0, 1).all()
    assert list(table["seeds"]) == [2, 2]
    assert len(pd.read_csv(out / "tables" / "headline.csv")) == 3  # three thresholds, one CLR policy
    for figure in ("figure1", "table1_policies", "figure3"):
        assert (out / "figures" / f"{figure}.png").exists()
    report = (out / "REPORT.md").read_text()
    assert "JPEG" in report and "QUICK" in report and "The headline" in report and "not comparable" in report
    from lrsearch.paper.clr import data_facts
    assert f"PSNR {data_facts(JPEG)['psnr_db']:g} dB" in report  # read from the data's README, not a literal
    # a second call resumes: nothing left to train (the store's trials keep their first finishing times)
    from lrsearch.experiment.store import Store

    def trials():
        store = Store(out / "results.sqlite")
        try:
            return store.trials_frame()[["run_id", "finished_at"]].sort_values("run_id").values.tolist()
        finally:
            store.close()

    before = trials()
    assert len(before) == 5  # 2 policies x 2 seeds, and the range test
    assert main(["clr-paper", str(tiny), "--quick", "--results", str(out), "--only", "fixed"]) == 0
    assert trials() == before
    # a policy edited since its runs were stored stops the call before training, naming what changed
    edited = tmp_path / "edited.toml"
    edited.write_text(tiny.read_text().replace("base_lr = 0.001, max_lr = 0.005", "base_lr = 0.002, max_lr = 0.005"))
    assert main(["clr-paper", str(edited), "--quick", "--results", str(out), "--only", "fixed", "clr-table2"]) == 2
    message = capsys.readouterr().err
    assert "clr-table2" in message and "schedule.stages.0.base_lr: 0.001 -> 0.002" in message and "--reset" in message
    assert re.search(r"experiment 'clr-paper-quick' \(([^)]*)\)", message).group(1) == "clr-table2"  # only its runs
    assert trials() == before
    # --reset drops the edited policy's runs and trains them again; the others are kept
    assert main(["clr-paper", str(edited), "--quick", "--results", str(out), "--only", "fixed", "clr-table2",
                 "--reset"]) == 0
    after = trials()
    assert len(after) == 5 and len(set(map(tuple, after)) & set(map(tuple, before))) == 3


@pytest.mark.usefixtures("jpeg_data")
def test_side_by_side_workers_with_stacked_seeds(tmp_path):
    """The GPU's way (worker processes, each policy's seeds stacked), on the CPU: every seed stored once. In a
    subprocess, as a user runs it: its worker pool (and multiprocessing's helper process) end with it."""
    import os
    import subprocess
    import sys

    from conftest import JPEG

    from lrsearch.experiment.store import Store

    tiny, out = _tiny_config(tmp_path), tmp_path / "out"
    args = [sys.executable, "-m", "lrsearch", "clr-paper", str(tiny), "--quick", "--results", str(out), "--only", "decay",
            "triangular2", "--workers", "2", "--stack-seeds"]
    env = dict(os.environ, LRSEARCH_DATA=str(JPEG))
    # cut off before any job finishes: nothing stored, the report still written, the next call trains everything
    cut = subprocess.run([*args, "--time-limit", "0.5"], capture_output=True, text=True, env=env, cwd=REPO)
    assert cut.returncode == 0 and "stopped unfinished" in cut.stdout and (out / "REPORT.md").exists(), cut.stderr
    whole = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO)
    assert whole.returncode == 0, whole.stderr
    store = Store(out / "results.sqlite", create=False)
    runs = store.runs_frame()
    store.close()
    assert sorted(zip(runs["strategy"], runs["seed"])) == [("decay", 0), ("decay", 1), ("triangular2", 0), ("triangular2", 1)]
    assert (runs["status"] == "complete").all() and '"workers": 2' in runs["environment"].iloc[0]


@pytest.mark.usefixtures("jpeg_data")
def test_a_run_stopped_part_way_goes_on_from_its_checkpoint(tmp_path, monkeypatch):
    """Ctrl-C after the checkpoint at iteration 30 of the fixed policy's 70: the report lists the run as unfinished,
    and the same command goes on from 30 to the curve of a run never stopped."""
    import json

    from conftest import JPEG

    from lrsearch.cli import main
    from lrsearch.experiment.store import Store
    from lrsearch.training.checkpoint import Checkpointing

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    tiny, out, whole = _tiny_config(tmp_path), tmp_path / "out", tmp_path / "whole"
    args = ["clr-paper", str(tiny), "--quick", "--only", "fixed", "--seeds", "0", "--checkpoint-every", "15"]
    save = Checkpointing.save

    def save_then_stop(self, state, step):
        save(self, state, step)
        if step == 30:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpointing, "save", save_then_stop)
    assert main([*args, "--results", str(out)]) == 130
    assert (out / "checkpoints" / "fixed-seed0.pt").exists()
    assert main(["clr-paper", str(tiny), "--quick", "--results", str(out), "--report-only"]) == 0
    report = (out / "REPORT.md").read_text()
    assert "## Runs not finished yet" in report and "fixed-seed0.pt" in report
    unfinished = pd.read_csv(out / "tables" / "unfinished.csv")
    assert unfinished[["policy", "seed", "iterations_done", "iterations"]].values.tolist() == [["fixed", 0, 30, 70]]
    monkeypatch.setattr(Checkpointing, "save", save)
    assert main([*args, "--results", str(out)]) == 0
    assert not (out / "checkpoints" / "fixed-seed0.pt").exists()
    assert "Runs not finished yet" not in (out / "REPORT.md").read_text()
    assert main([*args, "--results", str(whole)]) == 0

    def stored(folder):
        store = Store(folder / "results.sqlite", create=False)
        try:
            trials, curves = store.trials_frame(), store.curves_frame()
        finally:
            store.close()
        return json.loads(trials["extra"].iloc[0])["resumed_from"], curves[["step", "lr", "train_loss", "test_acc"]]

    (resumed_from, resumed), (never, uninterrupted) = stored(out), stored(whole)
    assert resumed_from == [30] and never == []
    assert resumed.equals(uninterrupted) and len(resumed) == 4  # iterations 20, 40, 60, 70: bit for bit


def test_checkpoints_are_refused_with_stacked_seeds(tmp_path):
    from lrsearch.paper.clr import run_clr_paper

    with pytest.raises(ConfigError, match="--no-stack-seeds"):
        run_clr_paper(load_clr_paper(CONFIG), quick=True, results=tmp_path, stack_seeds=True, checkpoint_every="100")
    with pytest.raises(ConfigError, match="checkpoint interval 'soon'"):
        run_clr_paper(load_clr_paper(CONFIG), quick=True, results=tmp_path, checkpoint_every="soon")
