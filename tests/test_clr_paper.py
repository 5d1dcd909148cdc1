"""The CLR paper reproduction: config, quick-mode scaling, Table 1 arithmetic, and a tiny end-to-end run."""

import math

import pandas as pd
import pytest
from test_runner import REPO

from lrsearch.experiment.config import ConfigError
from lrsearch.paper.clr import iterations_to, load_clr_paper, scale_schedule, table1
from lrsearch.training.schedules import make_schedule

CONFIG = REPO / "experiments" / "clr_paper.toml"


def test_config_has_the_papers_policies():
    config = load_clr_paper(CONFIG)
    policies = {p.name: p for p in config.policy}
    assert {"fixed", "triangular2", "triangular2-staged", "decay", "exp", "exp_range"} <= set(policies)
    assert (policies["fixed"].iterations, policies["fixed"].paper_acc) == (70000, 0.814)
    assert policies["triangular2"].schedule["max_lr"] == 0.006 and policies["exp_range"].iterations == 42000
    fixed = make_schedule(policies["fixed"].schedule, 70000)
    assert [fixed(0), fixed(60000), fixed(69999)] == pytest.approx([1e-3, 1e-4, 1e-5])
    assert (config.range_test.min_lr, config.range_test.max_lr, config.range_test.epochs) == (0.0, 0.02, 8)


def test_bad_config_names_the_field(tmp_path):
    bad = tmp_path / "c.toml"
    bad.write_text(CONFIG.read_text().replace("eval_every = 1000", "eval_every = -5"))
    with pytest.raises(ConfigError, match="eval_every"):
        load_clr_paper(bad)


@pytest.mark.parametrize("policy", ["fixed", "triangular2", "triangular2-staged", "decay", "exp", "exp_range"])
def test_quick_scaling_keeps_each_schedules_shape(policy):
    config = load_clr_paper(CONFIG)
    p = next(p for p in config.policy if p.name == policy)
    full = make_schedule(p.schedule, p.iterations)
    quick = make_schedule(scale_schedule(p.schedule, 40), p.iterations // 40)
    for it in range(0, p.iterations // 40, 7):  # the same LR at the same fraction of training
        assert quick(it) == pytest.approx(full(it * 40), rel=1e-6)


def test_iterations_to_and_table1_on_hand_made_curves():
    curve = pd.DataFrame({"step": [1000, 2000, 3000], "test_acc": [0.5, 0.82, 0.83]})
    assert iterations_to(curve, 0.814) == 2000 and math.isnan(iterations_to(curve, 0.9))
    rows = []
    for name, accs in (("fixed", [0.6, 0.7, 0.75]), ("triangular2", [0.65, 0.76, 0.78])):
        rows += [{"strategy": name, "kind": "train", "step": (i + 1) * 1000, "test_acc": a, "train_s": i + 1.0}
                 for i, a in enumerate(accs)]
    table = table1(pd.DataFrame(rows), load_clr_paper(CONFIG)).set_index("policy")
    assert table.loc["triangular2", "test_acc"] == 0.78 and table.loc["fixed", "paper_acc"] == 0.814
    assert table.loc["triangular2", "iterations_to_our_fixed_final"] == 2000  # first >= 0.75
    assert math.isnan(table.loc["fixed", "iterations_to_81.4%"])


@pytest.mark.usefixtures("jpeg_data")
def test_tiny_quick_reproduction_end_to_end(tmp_path, monkeypatch):
    from conftest import JPEG

    from lrsearch.cli import main

    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    tiny = tmp_path / "clr.toml"
    text = CONFIG.read_text().replace("scale = 100", "scale = 1000").replace("train_subset = 10000", "train_subset = 1000")
    tiny.write_text(text.replace("test_subset = 1000", "test_subset = 500").replace("epochs = 8", "epochs = 1"))
    out = tmp_path / "out"
    assert main(["clr-paper", str(tiny), "--quick", "--results", str(out), "--only", "fixed", "triangular2",
                 "range-test"]) == 0
    table = pd.read_csv(out / "tables" / "table1.csv")
    assert list(table["policy"]) == ["fixed", "triangular2"] and table["test_acc"].between(0, 1).all()
    assert (out / "figures" / "figure1.png").exists() and (out / "figures" / "figure3.png").exists()
    report = (out / "REPORT.md").read_text()
    assert "JPEG" in report and "QUICK" in report and "Table 1 analogue" in report
    # a second call resumes: nothing left to train
    assert main(["clr-paper", str(tiny), "--quick", "--results", str(out), "--only", "fixed"]) == 0
