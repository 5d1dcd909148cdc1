"""The user's surface: declared strategy options, config validation, the CLI's help and exit codes, the Python
API, lr_find on a model lrsearch did not build, the download path, and the search space's bounds."""

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import JPEG, MINI
from test_runner import GOOD, REPO, _write

import lrsearch
from lrsearch.cli import main
from lrsearch.experiment.config import ConfigError, load_experiment
from lrsearch.experiment.store import StoreError
from lrsearch.search.lr_finder import model_range_test, range_test, suggest_lr, suggest_range, valley
from lrsearch.search.strategies import REGISTRY, search, strategy_names
from lrsearch.search.strategies.base import OptionError
from lrsearch.training.data import DataError, download, ensure_source, load_cifar10

# ------------------------------------------------------------ strategy options


@pytest.mark.parametrize("name", strategy_names())
def test_every_strategy_declares_options_whose_defaults_are_valid(name):
    declared = REGISTRY[name].declared_options()
    for option in declared.values():
        assert option.meaning and option.type in (int, float, str, bool, dict)
        if option.default is not None:
            assert option.problem(option.default) is None, option
    assert REGISTRY[name].option_problems({"no_such_option": 1})


def test_typos_and_options_a_strategy_does_not_take_stop_the_config(tmp_path):
    text = GOOD.replace('strategies = ["random"]', 'strategies = ["random", "optuna-tpe", "lr-range-clr"]')
    bad = _write(tmp_path, text + "\n[options.optuna-tpe]\nn_startup_trial = 3\n[options.random]\nn_startup_trials = 3\n"
                 "[options.lr-range-clr]\nmetric = \"los\"\nstep_size_epochs = \"4\"\n")
    with pytest.raises(ConfigError) as info:
        load_experiment(bad)
    message = str(info.value)
    assert str(bad) in message
    assert "[options.optuna-tpe] unknown option 'n_startup_trial' (did you mean n_startup_trials?)" in message
    assert "[options.random] unknown option 'n_startup_trials'; it takes no options" in message
    assert "metric = 'los': expected one of 'acc', 'loss'" in message and "step_size_epochs = '4': expected float" in message
    with pytest.raises(OptionError, match="n_startup_trial"):  # the library path too, not only configs
        lrsearch.get_strategy("optuna-tpe", n_startup_trial=3)
    # a valid option is used: 2 start-up trials instead of 10
    assert lrsearch.get_strategy("optuna-tpe", n_startup_trials=2).startup_trials == 2


def test_all_config_errors_at_once_and_experiment_objects_say_them_in_lines(tmp_path):
    bad = _write(tmp_path, GOOD.replace("budgets = [2]", "budgets = [0]").replace("seeds = [0]", "seeds = []"))
    with pytest.raises(ConfigError) as info:
        load_experiment(bad)
    lines = str(info.value).splitlines()
    assert "2 problems" in lines[0] and any("'budgets'" in line for line in lines) and any("'seeds'" in line for line in lines)
    with pytest.raises(ConfigError, match="Experiment: field 'task': unknown task 'imagenet'"):
        lrsearch.Experiment(name="x", task="imagenet", strategies=["random"], budgets=[2], seeds=[0])


def test_strategies_options_lists_each_option(capsys):
    assert main(["strategies", "--options"]) == 0
    out = capsys.readouterr().out
    assert "    n_startup_trials (int, default 10):" in out and "    reduction_factor (int, default 3):" in out
    assert "    rule (str in valley|steep|minimum|slide|steepest_gradient, default 'valley'):" in out


def test_validate_checks_config_and_data_without_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    assert main(["validate", str(REPO / "experiments" / "benchmark-cpu.toml"), "--results", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "config valid" in out and "78 runs" in out  # 26 strategies x 3 seeds and "0 runs already complete" in out
    assert not (tmp_path / "r").exists()  # nothing written
    assert main(["validate", str(REPO / "experiments" / "benchmark-cpu.toml"), "--data", str(tmp_path / "none")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["validate", str(_write(tmp_path, GOOD.replace("seeds = [0]", "seeds = []")))]) == 2


# ------------------------------------------------------------ the command line


def test_version_help_texts_and_a_help_that_imports_no_torch(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"lrsearch {lrsearch.__version__}"
    from lrsearch.cli._app import _commands, build_parser
    parser = build_parser()
    undocumented = [f"{command.prog} {action.option_strings or action.dest}"
                    for command in _commands(parser._subparsers._group_actions[0]) for action in command._actions
                    if action.dest != "help" and not action.help and not isinstance(action, type(parser._subparsers._group_actions[0]))]
    assert undocumented == []
    probe = ("import sys\nfrom lrsearch.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.strip().endswith("NO-TORCH") and "(default: auto)" in result.stdout
    assert "examples:" in subprocess.run([sys.executable, "-m", "lrsearch", "--help"], capture_output=True, text=True).stdout


@pytest.mark.usefixtures("jpeg_data")
def test_failed_trials_make_run_exit_1_unless_allowed_and_lines_appear_without_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    broken = _write(tmp_path, GOOD + '\n[task_overrides]\nbatch_size = 100000  # more than the training images: every trial fails\n')
    out = tmp_path / "out"
    assert main(["run", str(broken), "--results", str(out)]) == 1
    captured = capsys.readouterr()
    assert "2 of 2 trials failed" in captured.err and "--allow-failures" in captured.err
    assert "random b2 s0 trial 0: lr=" in captured.err and "failed" in captured.err  # stderr is no terminal here
    assert "n_failed" in (out / "REPORT.md").read_text()  # the runs table shows failed trials
    assert main(["run", str(broken), "--results", str(out), "--allow-failures", "--quiet"]) == 0
    assert "trial 0" not in capsys.readouterr().err  # quiet: warnings only, and a resumed run trains nothing


# ------------------------------------------------------------ the Python API


def test_load_results_gives_dataframes_and_never_an_empty_new_store(tmp_path):
    results = lrsearch.load_results(REPO / "results" / "benchmark-cpu")
    assert {"params_lr", "strategy", "status", "value"} <= set(results.trials.columns)
    assert results.trials["params_lr"].notna().any() and len(results.curves) and len(results.runs) == 42
    with pytest.raises(StoreError, match="no results store here"):
        lrsearch.load_results(tmp_path / "typo")
    with pytest.raises(StoreError, match="no results store here"):
        lrsearch.Store(tmp_path / "typo" / "results.sqlite")
    assert not (tmp_path / "typo").exists()
    for name in ("run_experiment", "load_experiment", "load_results", "train", "range_test", "search"):
        assert name in lrsearch.__all__ and callable(getattr(lrsearch, name))


def test_docs_notebook_example_runs(monkeypatch, tmp_path):
    """The notebook example of docs/python.md, as written there (the smoke task: seconds on a CPU)."""
    monkeypatch.setenv("LRSEARCH_DATA", str(JPEG))
    monkeypatch.chdir(tmp_path)
    text = (REPO / "docs" / "python.md").read_text()
    code = text.split("<!-- notebook example -->\n```python\n", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, "docs/python.md", "exec"), namespace)  # noqa: S102  (our own docs)
    assert namespace["results"].trials["status"].eq("ok").all()


# ------------------------------------------------------------ lr_find on your own model


def _toy_problem(seed=0):
    """Two overlapping Gaussian blobs (no LR drives the loss to 0), an MLP and torch's own DataLoader."""
    g = torch.Generator().manual_seed(seed)
    x = torch.cat([torch.randn(256, 8, generator=g) + 0.3, torch.randn(256, 8, generator=g) - 0.3])  # overlapping
    y = torch.cat([torch.zeros(256, dtype=torch.long), torch.ones(256, dtype=torch.long)])
    data = torch.utils.data.TensorDataset(x, y)
    train = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True, generator=g)
    val = torch.utils.data.DataLoader(data, batch_size=128)
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    return model, train, val


def test_range_test_on_a_model_and_loader_lrsearch_did_not_build():
    model, train, val = _toy_problem()
    optimizer = torch.optim.SGD([{"params": model[0].parameters(), "lr": 0.1},
                                 {"params": model[2].parameters(), "lr": 0.01}], momentum=0.9)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    test = range_test(model, optimizer, train, min_lr=1e-4, max_lr=1e4, steps=200, val_loader=val, n_evals=8)
    assert isinstance(test, lrsearch.search.lr_finder.RangeTest)
    # it diverges on the way to lr 1e4, stops there and says so; the LR rose exponentially until then
    assert test.status == "diverged" and test.stop_reason.startswith("diverged at step") and len(test.table) < 200
    ratios = test.table["lr"].to_numpy()[1:] / test.table["lr"].to_numpy()[:-1]
    assert np.allclose(ratios, (1e4 / 1e-4) ** (1 / 199))
    # the model and the optimizer are as they were (torch-lr-finder and fastai restore them)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01] and not optimizer.state_dict()["state"]
    ev = test.evaluations()
    assert len(ev) >= 3 and ev["val_acc"].between(0, 1).all() and ev["val_acc"].max() > 0.75  # best: ~0.8
    assert 1e-4 < test.suggest_lr("valley") < 1e4 and test.suggest_range("acc")[0] < test.suggest_range("acc")[1]


def test_readme_own_model_example_runs():
    """The README's "on your own model" lines, as written there, on a toy model with a real training function."""
    model, train, val = _toy_problem(2)

    def train_and_validate(lr: float) -> float:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        opt = torch.optim.SGD(net.parameters(), lr=lr)
        for x, y in train:
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        with torch.no_grad():
            return float(np.mean([(net(x).argmax(1) == y).float().mean() for x, y in val]))

    text = (REPO / "README.md").read_text()
    code = next(block for block in text.split("```python\n")[1:] if "lrsearch.range_test(model" in block)
    namespace = {"model": model, "train_loader": train, "val_loader": val, "train_and_validate": train_and_validate,
                 "optimizer": torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)}
    exec(compile(code.split("```", 1)[0], "README.md", "exec"), namespace)  # noqa: S102  (our own README)
    lr, trials = namespace["lr"], namespace["trials"]
    assert len(trials) == 16 and all(lr / 10 <= p["lr"] <= lr * 10 and 0 <= v <= 1 for p, v in trials)


def test_model_range_test_keeps_group_ratios_linear_mode_and_loss_fn():
    model, train, _ = _toy_problem(1)
    optimizer = torch.optim.Adam([{"params": model[0].parameters(), "lr": 1.0},
                                  {"params": model[2].parameters(), "lr": 0.1}])
    seen = []
    original_step = optimizer.step

    def spy(*args, **kwargs):
        seen.append([g["lr"] for g in optimizer.param_groups])
        return original_step(*args, **kwargs)

    optimizer.step = spy
    test = model_range_test(model, optimizer, train, min_lr=1e-3, max_lr=1e-2, steps=10, mode="linear",
                            loss_fn=lambda out, y: torch.nn.functional.cross_entropy(out, y, label_smoothing=0.1))
    assert test.status == "ok" and test.stop_reason == "completed" and len(test.table) == 10
    assert np.allclose(np.diff(test.table["lr"]), 1e-3)  # linear from 1e-3 to 1e-2
    assert all(b == pytest.approx(a / 10) for a, b in seen)  # the second group keeps a tenth of the first's LR


# ------------------------------------------------------------ rules and bounds


@pytest.mark.parametrize("low, high, log", [(1e-5, 1.0, True), (1e-3, 3.0, True), (0.1, 0.9, False), (3e-4, 7e-2, True)])
@pytest.mark.parametrize("budget", [1, 2, 5, 9])
def test_grid_proposals_lie_within_the_bounds_endpoints_exact(low, high, log, budget):
    lrs = [p["lr"] for p, _ in search("grid", lambda p: 0.0, {"lr": {"low": low, "high": high, "log": log}}, n_trials=budget)]
    assert all(low <= lr <= high for lr in lrs)
    if budget > 1:
        assert lrs[0] == low and lrs[-1] == high


def test_loss_based_max_lr_lies_just_before_the_rise_on_a_fastai_style_curve():
    # flat, then a short fall over one decade (1e-3 .. 1e-2), then the loss explodes
    lrs = np.geomspace(1e-5, 1, 100)
    x = np.log10(lrs)
    loss = np.where(x < -3, 2.3, np.where(x < -2, 2.3 - 1.5 * (x + 3), 0.8 + 50 * (x + 2) ** 2))
    base, top = suggest_range(lrs, loss, "loss")
    assert valley(lrs, loss) == suggest_lr(lrs, loss, "valley") < top  # fastai's LR inside Smith's range
    assert 1e-3 <= base < 1e-3 * 1.5 and 1e-2 / 1.5 < top <= 1e-2  # where the fall starts, just before the rise


# ------------------------------------------------------------ the download, against a local server


class _Archive(http.server.BaseHTTPRequestHandler):
    body = b""
    truncate = False

    def do_GET(self):  # noqa: N802  (http.server's name)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body[: len(self.body) // 2] if self.truncate else self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def archive_server():
    _Archive.body = MINI.read_bytes()  # the official layout, 6,000 images
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Archive)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz", hashlib.md5(_Archive.body).hexdigest()
    server.shutdown()
    _Archive.truncate = False


def test_fresh_machine_downloads_into_data_and_checks_the_archive(tmp_path, monkeypatch, archive_server):
    url, md5 = archive_server
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LRSEARCH_DATA", raising=False)
    monkeypatch.setenv("LRSEARCH_DATA_URL", url)
    # a wrong md5: an error that says so, and nothing left in ./data/
    monkeypatch.setenv("LRSEARCH_DATA_MD5", "0" * 32)
    with pytest.raises(DataError, match="md5 .* differs"):
        ensure_source(None)
    assert not any((tmp_path / "data").iterdir())
    # a connection that breaks off half-way: an error, nothing left
    monkeypatch.setenv("LRSEARCH_DATA_MD5", md5)
    _Archive.truncate = True
    with pytest.raises(DataError, match="broke off"):
        ensure_source(None)
    assert not any((tmp_path / "data").iterdir())
    _Archive.truncate = False
    # nothing named, nothing in ./data/: fetched, checked and read like the official download
    path = ensure_source(None)
    assert path == Path("data") / "cifar-10-python.tar.gz" and hashlib.md5(path.read_bytes()).hexdigest() == md5
    assert len(load_cifar10(path).train_labels) == 5000
    assert ensure_source(None) == Path("data") / "cifar-10-python.tar.gz"  # found now: no second download
    # a named source that is missing is an error, never a download
    with pytest.raises(DataError, match="no such file"):
        ensure_source(tmp_path / "typo.tar.gz")
    assert download(tmp_path / "again", url=url, md5=md5).exists()


def test_download_refuses_offline_without_leaving_files(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        download(tmp_path, url="http://127.0.0.1:9/cifar-10-python.tar.gz")
    assert not any(tmp_path.iterdir())
    assert os.environ.get("LRSEARCH_DATA_URL") is None


def test_a_fresh_runs_report_sits_beside_the_committed_reference(tmp_path):
    import pandas as pd

    from lrsearch.reporting.report import _beside_reference

    reference = REPO / "results" / "benchmark-cpu"
    theirs = pd.read_csv(reference / "tables" / "summary.csv")
    ours = theirs.assign(success_rate=1.0)  # a fresh run that reached the target in every seed
    lines = "\n".join(_beside_reference(tmp_path, str(reference), ours))
    assert "## Beside the committed reference" in lines and str(reference) in lines
    header = next(line for line in lines.splitlines() if line.startswith("| strategy"))
    assert "success_rate_reference" in header and "median_best_val_acc_reference" in header
    assert len([line for line in lines.splitlines() if line.startswith("| ")]) == len(theirs) + 1
    assert _beside_reference(reference, str(reference), ours) == []  # the reference itself: nothing to set beside
    assert _beside_reference(tmp_path, str(tmp_path / "none"), ours) == []
