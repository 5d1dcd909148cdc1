"""Seaborn figures, drawn from the analysis tables only."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from lrsearch.reporting.tables import MIN_BOOTSTRAP_N
from lrsearch.search.strategies import FAMILIES, strategy_family


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


# The strategy comparisons draw the median over seeds with a percentile-bootstrap 95% interval of it
# (seaborn's errorbar="ci"), seeded so that a rebuilt figure is the same figure.
_CI = {"estimator": "median", "errorbar": ("ci", 95), "n_boot": 1000, "seed": 0}


def anytime_figure(anytime: pd.DataFrame, path: Path, target: float | None = None) -> Path:
    """Best-so-far validation accuracy against training seconds spent, median over seeds with its bootstrap
    95% interval, for each strategy at the largest budget."""
    budget = anytime["budget"].max()
    data = anytime[anytime["budget"] == budget]
    grid = np.linspace(0, data["cum_train_s"].max(), 200)
    rows = []
    for (strategy, seed), g in data.groupby(["strategy", "seed"]):
        # step function: the best so far holds until the next trial ends
        idx = np.searchsorted(g["cum_train_s"].to_numpy(), grid, side="right") - 1
        best = np.where(idx >= 0, g["best_val_acc"].to_numpy()[np.clip(idx, 0, None)], np.nan)
        rows.append(pd.DataFrame({"strategy": strategy, "seed": seed, "point": np.arange(len(grid)), "train_s": grid,
                                  "best_val_acc": best}))
    curves = pd.concat(rows, ignore_index=True)
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    palette = _palette(curves["strategy"])
    rng = np.random.default_rng(_CI["seed"])
    for strategy, g in curves.groupby("strategy", sort=False):
        # seeds x grid points; the median over seeds and its percentile bootstrap band, every point at once
        # (seaborn's lineplot bootstraps point by point: a minute for a few strategies)
        values = g.pivot(index="seed", columns="point", values="best_val_acc").to_numpy()  # (grid may repeat: 0 s)
        resampled = values[rng.integers(0, len(values), (_CI["n_boot"], len(values)))]
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before a strategy's first trial
            low, high = np.nanquantile(np.nanmedian(resampled, axis=1), [0.025, 0.975], axis=0)
            middle = np.nanmedian(values, axis=0)
        ax.plot(grid, middle, color=palette[strategy], label=strategy)
        if len(values) >= MIN_BOOTSTRAP_N:  # no band over fewer seeds (reporting/tables.py)
            ax.fill_between(grid, low, high, color=palette[strategy], alpha=0.2, lw=0)
    ax.legend()
    if target is not None:
        ax.axhline(target, color="0.3", ls=":", lw=1, label=f"target {target:.0%}")
    n_seeds = data["seed"].nunique()
    scored = curves["best_val_acc"].dropna()
    if len(scored):  # zoom on the accuracies the trials reached
        ax.set_ylim(max(0.0, scored.quantile(0.02) - 0.05), min(1.0, scored.max() + 0.02))
    ax.set(xlabel="training seconds spent by the search", ylabel="best validation accuracy so far",
           title=f"Anytime performance, budget {budget} trials\n(median over {n_seeds} seeds, "
                 + ("band: bootstrap 95% interval;\n" if n_seeds >= MIN_BOOTSTRAP_N else
                    f"no band: under {MIN_BOOTSTRAP_N} seeds;\n")
                 + "no line before a run's first value: range tests, diverged and failed trials have none)")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


def time_to_target_figure(runs: pd.DataFrame, path: Path) -> Path:
    """Search time-to-target per strategy (each dot a seed); the success rate in the labels."""
    data = runs.copy()
    rate = data.groupby("strategy")["reached_target"].mean()
    order = (data.groupby("strategy")["search_time_to_target_s"].median().sort_values(na_position="last").index)
    data["label"] = data["strategy"].map(lambda s: f"{s} ({rate[s]:.0%})")
    labels = [f"{s} ({rate[s]:.0%})" for s in order]
    fig = Figure(figsize=(8, 0.45 * len(order) + 1.5))
    ax = fig.subplots()
    reached = data[data["reached_target"]]
    sns.boxplot(reached, x="search_time_to_target_s", y="label", order=labels, color="0.9", fliersize=0, ax=ax)
    sns.stripplot(reached, x="search_time_to_target_s", y="label", order=labels, hue="budget", size=5, ax=ax)
    ax.set(xlabel="search time to target (training s); in brackets: share of seeds that reached it", ylabel="",
           title="Time to the target accuracy")
    return _save(fig, path)


def accuracy_vs_budget_figure(runs: pd.DataFrame, path: Path) -> Path:
    """Best accuracy and success rate against the budget (only drawn with two budgets or more)."""
    fig = Figure(figsize=(11, 4.3))
    axes = fig.subplots(1, 2)
    sns.lineplot(runs, x="budget", y="best_val_acc", hue="strategy", palette=_palette(runs["strategy"]), marker="o",
                 ax=axes[0], **_CI)
    axes[0].set(xscale="log", xlabel="budget (trials)", ylabel="best validation accuracy",
                title="Accuracy against budget (median, bootstrap 95% band)")
    sns.lineplot(runs.assign(reached=runs["reached_target"].astype(float)), x="budget", y="reached", hue="strategy",
                 errorbar=None, marker="o", ax=axes[1], legend=False)
    axes[1].set(xscale="log", xlabel="budget (trials)", ylabel="share of seeds reaching the target", ylim=(-0.05, 1.05),
                title="Success rate against budget")
    axes[0].legend(fontsize=7, ncol=2)
    return _save(fig, path)


def trials_figure(trials: pd.DataFrame, path: Path) -> Path:
    """Every training trial's LR against its validation accuracy: what each strategy tried. Trials without a
    value (diverged, failed) are marked along the bottom edge, at their LR: they have no accuracy to plot."""
    data = trials[(trials["kind"] == "train") & trials["lr"].notna()]
    strategies = list(dict.fromkeys(data["strategy"]))
    cols = min(4, len(strategies))
    rows = -(-len(strategies) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
    axes = fig.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    for ax, strategy in zip(axes.flat, strategies):
        d = data[data["strategy"] == strategy]
        sns.scatterplot(d[d["value"].notna()], x="lr", y="value", style="status", hue="status", ax=ax, s=22,
                        hue_order=["ok", "pruned"], style_order=["ok", "pruned"], legend=ax is axes.flat[0])
        for status, colour in (("diverged", "C3"), ("failed", "0.3")):
            lost = d[(d["status"] == status) & d["value"].isna()]
            if len(lost):  # x in data, y in axes coordinates: the bottom edge, whatever the accuracies
                ax.plot(lost["lr"], np.full(len(lost), 0.02), "x", color=colour, ms=5, mew=1.2, clip_on=False,
                        transform=ax.get_xaxis_transform(), label=f"{status} (no value)")
        if ax is axes.flat[0]:
            ax.legend(fontsize=7)
        ax.set(xscale="log", title=strategy, xlabel="learning rate (peak)", ylabel="validation accuracy")
    for ax in list(axes.flat)[len(strategies):]:
        ax.set_visible(False)
    return _save(fig, path)


def range_tests_figure(curves: pd.DataFrame, path: Path) -> Path | None:
    """Every distinct range test: loss and accuracy against the LR, fastai's valley (on the loss) and Smith's
    base_lr / max_lr (on the accuracy) marked. Strategies that ran the same test (same seed, same request)
    share one line, and one legend entry that names them all."""
    from lrsearch.search.lr_finder import suggest_lr, suggest_range

    data = curves[curves["kind"] == "range_test"]
    if data.empty:
        return None
    distinct: dict[tuple, list[str]] = {}
    tests: dict[tuple, pd.DataFrame] = {}
    for (strategy, seed), g in data.groupby(["strategy", "seed"], sort=False):
        key = (seed, tuple(np.round(g["lr"].to_numpy(float), 12)), tuple(np.round(g["train_loss"].to_numpy(float), 9)))
        distinct.setdefault(key, []).append(strategy)
        tests[key] = g
    fig = Figure(figsize=(12, 4.4))
    axes = fig.subplots(1, 2)
    for i, (key, strategies) in enumerate(distinct.items()):
        g, color = tests[key], f"C{i % 10}"
        label = f"seed {key[0]}: {', '.join(strategies)}"
        loss = g["train_loss"].rolling(9, center=True, min_periods=1).mean()
        axes[0].plot(g["lr"], loss, lw=1, color=color, label=label)
        try:
            lr = suggest_lr(g["lr"], g["train_loss"], "valley")
            axes[0].plot([lr], [np.interp(np.log(lr), np.log(g["lr"]), loss)], "v", color=color, ms=8, mec="k", mew=0.6)
        except ValueError:
            pass
        acc = g.dropna(subset=["val_acc"])
        axes[1].plot(acc["lr"], acc["val_acc"], "o-", ms=2, lw=1, color=color)
        try:
            for bound in suggest_range(acc["lr"], acc["val_acc"], "acc"):
                axes[1].axvline(bound, color=color, ls="--", lw=0.9)
        except ValueError:
            pass
    axes[0].plot([], [], "v", color="0.5", mec="k", mew=0.6, label="fastai's valley")
    axes[1].plot([], [], "--", color="0.5", label="Smith's base_lr and max_lr")
    axes[0].set(xscale="log", xlabel="learning rate", ylabel="training loss (moving average)", title="Range tests: loss")
    axes[1].set(xscale="log", xlabel="learning rate", ylabel="validation accuracy", title="Range tests: accuracy")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    return _save(fig, path)


def learning_curves_figure(trials: pd.DataFrame, curves: pd.DataFrame, path: Path) -> Path | None:
    """Each strategy's best training trial (largest budget, best validation accuracy): its validation accuracy
    against epochs and against training seconds."""
    train = trials[(trials["kind"] == "train") & trials["status"].isin(["ok", "pruned"])]
    if train.empty or curves.empty:
        return None
    train = train[train["budget"] == train["budget"].max()]
    best = train.loc[train.groupby("strategy", sort=False)["value"].idxmax()]
    acc = "val_acc" if curves["val_acc"].notna().any() else "test_acc"
    keys = best[["strategy", "budget", "seed", "trial_index"]]
    data = curves.merge(keys, on=["strategy", "budget", "seed", "trial_index"]).dropna(subset=[acc])
    if data.empty:
        return None
    fig = Figure(figsize=(12, 4.4))
    axes = fig.subplots(1, 2, sharey=True)
    palette = _palette(data["strategy"])
    sns.lineplot(data, x="epoch", y=acc, hue="strategy", palette=palette, ax=axes[0], legend=False)
    sns.lineplot(data, x="train_s", y=acc, hue="strategy", palette=palette, ax=axes[1])
    ylabel = "validation accuracy" if acc == "val_acc" else "test accuracy"
    axes[0].set(xlabel="epoch", ylabel=ylabel, title="Each strategy's best trial, against epochs")
    axes[1].set(xlabel="training seconds (that trial's)", title="... and against training seconds")
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    return _save(fig, path)


FIGURES = ("anytime", "time_to_target", "accuracy_vs_budget", "trials_lr", "learning_curves", "range_tests")


def build_figures(tables: dict[str, pd.DataFrame], out: Path, target: float | None = None) -> list[Path]:
    """Every figure the tables support; one left from an earlier build that no longer applies is removed."""
    out.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (out / f"{name}.png").unlink(missing_ok=True)
    made = []
    if len(tables["anytime"]):
        made.append(anytime_figure(tables["anytime"], out / "anytime.png", target))
    if len(tables["runs"]):
        if tables["runs"]["reached_target"].any():
            made.append(time_to_target_figure(tables["runs"], out / "time_to_target.png"))
        if tables["runs"]["budget"].nunique() > 1:  # with one budget every point would sit at one x
            made.append(accuracy_vs_budget_figure(tables["runs"], out / "accuracy_vs_budget.png"))
    if len(tables["trials"]):
        made.append(trials_figure(tables["trials"], out / "trials_lr.png"))
        learning = learning_curves_figure(tables["trials"], tables["curves"], out / "learning_curves.png")
        if learning is not None:
            made.append(learning)
    if len(tables["curves"]):
        range_fig = range_tests_figure(tables["curves"], out / "range_tests.png")
        if range_fig is not None:
            made.append(range_fig)
    return made


def _palette(strategies: pd.Series) -> dict[str, tuple]:
    """One colour per strategy from tab20 (distinct for up to 20 lines), in order of first appearance."""
    names = list(dict.fromkeys(strategies))
    colours = sns.color_palette("tab20", max(len(names), 1))
    return dict(zip(names, colours))


# Line styles told apart at a glance; the families (search.strategies.FAMILIES) take them in turn.
DASHES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1)), (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1)))


def line_style(strategy: str):
    """The line style of a strategy's family, the same in every figure (solid for a name of no family)."""
    family = strategy_family(strategy)
    return DASHES[FAMILIES.index(family) % len(DASHES)] if family else DASHES[0]


def _family_styles(strategies: list[str]) -> dict[str, dict]:
    """One colour per strategy, one line style per library family, so 13 lines stay readable."""
    palette = sns.color_palette("tab20", len(strategies))
    return {s: {"color": palette[i], "ls": line_style(s)} for i, s in enumerate(strategies)}


def budget_figures(summary: pd.DataFrame, out: Path, target: float | None = None) -> list[Path]:
    """From the replay's summary table: median best accuracy, and the probability of reaching the
    target, against the budget, each with its 95% interval as a band."""
    out.mkdir(parents=True, exist_ok=True)
    strategies = list(dict.fromkeys(summary["strategy"]))
    styles = _family_styles(strategies)
    n_seeds = int(summary["n_seeds"].min())
    made = []
    for name, (y, low, high), ylabel, title in [
        ("budgets_accuracy.png", ("median_best_val_acc", "acc_ci_low", "acc_ci_high"), "best validation accuracy",
         f"Median best accuracy against budget ({n_seeds} seeds; band: bootstrap 95% interval)"),
        ("budgets_target.png", ("p_target", "p_ci_low", "p_ci_high"), "P(best trial reaches the target)",
         f"Probability of reaching the target against budget ({n_seeds} seeds; band: Wilson 95% interval)"),
    ]:
        fig = Figure(figsize=(9, 5.2))
        ax = fig.subplots()
        for strategy in strategies:
            g = summary[summary["strategy"] == strategy].sort_values("budget")
            ax.plot(g["budget"], g[y], marker="o", ms=3, lw=1.4, label=strategy, **styles[strategy])
            ax.fill_between(g["budget"], g[low], g[high], color=styles[strategy]["color"], alpha=0.12, lw=0)
        if y == "p_target":
            ax.axhline(0.9, color="0.3", ls=":", lw=1)
            ax.set_ylim(-0.02, 1.02)
        elif target is not None:
            ax.axhline(target, color="0.3", ls=":", lw=1, label=f"target {target:.0%}")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="budget (trials)", ylabel=ylabel, title=title)
        ax.legend(fontsize=7, ncol=2, loc="lower right")
        made.append(_save(fig, out / name))
    return made


def replay_check_figure(check_runs: pd.DataFrame, path: Path) -> Path:
    """Replayed against real runs: the distribution (ECDF) of the best validation accuracy, one panel per
    (budget, strategy)."""
    budgets, strategies = sorted(check_runs["budget"].unique()), list(dict.fromkeys(check_runs["strategy"]))
    fig = Figure(figsize=(3.6 * len(strategies), 2.8 * len(budgets)))
    axes = fig.subplots(len(budgets), len(strategies), sharex=True, sharey=True, squeeze=False)
    sources = list(dict.fromkeys(check_runs["source"]))
    for i, budget in enumerate(budgets):
        for j, strategy in enumerate(strategies):
            ax = axes[i][j]
            cell = check_runs[(check_runs["budget"] == budget) & (check_runs["strategy"] == strategy)]
            if len(cell):
                sns.ecdfplot(cell, x="best_val_acc", hue="source", hue_order=sources, ax=ax, legend=(i, j) == (0, 0))
            ax.set_title(f"{strategy}, budget {budget}", fontsize=9)
            ax.set(xlabel="best validation accuracy" if i == len(budgets) - 1 else "",
                   ylabel="share of seeds" if j == 0 else "")
    fig.suptitle("Replay check: real runs against the replay")
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def parallel_speedup_figure(summary: pd.DataFrame, path: Path) -> Path:
    """From the parallel replay's summary: the median wall-clock time-to-target against the number of
    workers K (bars: bootstrap 95% interval), and its speed-up over one worker beside the ideal, y = K.
    A strategy that ran one trial at a time whatever K is drawn dotted and marked "(sequential)"."""
    from matplotlib.ticker import NullLocator, ScalarFormatter

    strategies = list(dict.fromkeys(summary["strategy"]))
    colours = dict(zip(strategies, sns.color_palette("tab10", len(strategies))))  # a few lines: distinct hues
    workers = sorted(summary["workers"].unique())
    n_seeds = int(summary["n_seeds"].min())
    fig = Figure(figsize=(12, 5.4))
    (left, right) = fig.subplots(1, 2)
    # points nudged apart in K (a factor <= 1.07): bars, and strategies with the same numbers, stay visible
    nudge = dict(zip(strategies, np.geomspace(0.93, 1.07, len(strategies)) if len(strategies) > 1 else [1.0]))
    finite = summary[["median_wall_to_target_s", "wtt_ci_high_s"]].to_numpy(dtype=float)
    top = 1.3 * np.nanmax(np.where(np.isfinite(finite), finite, np.nan))  # an interval open above ends here
    for strategy in strategies:
        g = summary[summary["strategy"] == strategy].sort_values("workers")
        sequential = bool(g["ran_sequentially"].all())
        style = {"color": colours[strategy], "ls": ":" if sequential else "-", "marker": "o", "ms": 5, "lw": 1.6,
                 "mfc": "white" if sequential else colours[strategy]}
        label = strategy + (" (sequential)" if sequential else "")
        y = g["median_wall_to_target_s"].to_numpy(dtype=float)
        shown = np.isfinite(y)
        low, high = g["wtt_ci_low_s"].to_numpy(dtype=float), np.minimum(g["wtt_ci_high_s"].to_numpy(dtype=float), top)
        x = g["workers"].to_numpy(dtype=float) * nudge[strategy]
        left.errorbar(x[shown], y[shown], yerr=[(y - low)[shown], (high - y)[shown]], capsize=2, elinewidth=0.8,
                      label=label, **style)
        right.plot(x, g["speedup"], label=label, **style)
    right.plot(workers, workers, color="0.3", ls="--", lw=1, label="ideal (y = K)")
    for ax in (left, right):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log", base=2)
        ax.set_xticks(workers, [str(k) for k in workers])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("workers K (trials at once)")
    left.yaxis.set_major_formatter(ScalarFormatter())
    left.set(ylabel="simulated wall-clock seconds to the target",
             title=f"Median time-to-target, budget fixed\n({n_seeds} seeds; bars: bootstrap 95% interval)")
    right.set_yticks(workers, [str(k) for k in workers])
    right.yaxis.set_minor_locator(NullLocator())
    right.set(ylabel="speed-up over K = 1 (median at 1 / median at K)",
              title="Speed-up of the time-to-target\n(dashed: ideal, K times faster)")
    handles, labels = right.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * -(-len(labels) // 4), 1, 1))  # room for the legend's rows below
    fig.savefig(path, dpi=120)
    return path
