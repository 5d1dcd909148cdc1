"""Figures are drawn on matplotlib Figure objects: importing lrsearch or drawing its figures never switches
matplotlib's backend (a notebook keeps its inline plots), and a figure still comes out as a file."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import math, sys
    from pathlib import Path
    import numpy as np, pandas as pd
    import matplotlib
    import lrsearch.reporting.figures as figures
    import lrsearch.reporting.score_report  # noqa: F401
    import lrsearch.paper.clr as clr
    from lrsearch.search.lr_finder import RangeTest, ema, plot_range_test

    out = Path(sys.argv[1])
    lr = np.linspace(0.0, 0.02, 60)
    loss = 2.3 - 40 * lr + 4000 * lr**2
    table = pd.DataFrame({"step": range(60), "lr": lr, "train_loss": loss, "smoothed_loss": ema(loss),
                          "val_acc": np.where(np.arange(60) % 6 == 0, 0.1 + 10 * lr, np.nan)})
    fig = plot_range_test(RangeTest(table, "made", "ok", math.nan, math.nan, "linear", 0), out / "range.png")
    summary = pd.DataFrame({"strategy": ["random"] * 2, "workers": [1, 2], "n_seeds": 5,
                            "median_wall_to_target_s": [40.0, 21.0], "wtt_ci_low_s": [30.0, 15.0],
                            "wtt_ci_high_s": [55.0, math.inf], "ran_sequentially": False, "speedup": [1.0, 1.9]})
    figures.parallel_speedup_figure(summary, out / "speedup.png")
    curves = pd.DataFrame({"strategy": ["fixed"] * 3, "seed": [0] * 3, "iteration": [1000, 2000, 3000],
                           "test_acc": [0.4, 0.5, 0.6]})
    clr._curve_figure(curves, ["fixed"], out / "fig1.png", "t", 0.814, 1)
    print(matplotlib.get_backend(), type(fig).__name__)
""")


def test_importing_and_drawing_leave_the_backend_alone(tmp_path):
    env = dict(os.environ, MPLBACKEND="svg")  # what a notebook or a user chose; "agg" would show a switch
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "Figure"]
    for name in ("range.png", "speedup.png", "fig1.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
