"""A suite report's "Scores" section: the tables of `lrsearch.reporting.scores` as CSV under `<suite>/scores/`,
their figures (seaborn / matplotlib, from those tables only) beside them, and the Markdown that explains them."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure

from lrsearch.reporting.figures import _save, line_style  # noqa: E402
from lrsearch.reporting.report import _fmt  # noqa: E402
from lrsearch.reporting.scores import (  # noqa: E402
    ALPHA,
    DEFAULT_ANCHOR,
    N_BOOT,
    R_MAX,
    RankTest,
    anchor_name,
    compare_scores,
    compute_scores,
    problem_anchors,
    suite_frame,
)
from lrsearch.reporting.tables import MIN_BOOTSTRAP_N  # noqa: E402

# ---------------------------------------------------------------- figures


def _styles(strategies: list[str]) -> dict[str, dict]:
    """One colour per strategy (tab10's strong colours up to 10 strategies, tab20 beyond), one line style per
    library family, the same in every figure (`figures.line_style`)."""
    palette = sns.color_palette("tab10" if len(strategies) <= 10 else "tab20", len(strategies))
    return {s: {"color": palette[i], "ls": line_style(s)} for i, s in enumerate(strategies)}


def profile_figure(profile: pd.DataFrame, score: pd.DataFrame, metric: str, path: Path, strategies: list[str],
                   r_max: float = R_MAX) -> Path:
    """rho(tau) per strategy as the step function it is, each legend entry with its B; the lines nudged apart
    vertically (a few thousandths) so that strategies with the same profile stay visible."""
    data = profile[profile["metric"] == metric]
    column = f"score_B_{metric}"
    order = score.sort_values(column, ascending=False)["strategy"].tolist()
    styles = _styles(strategies)
    n_problems = int(score[f"problems_{metric}"].max())
    fig = Figure(figsize=(9, 5.2))
    ax = fig.subplots()
    for i, strategy in enumerate(order):
        g = data[data["strategy"] == strategy].sort_values("tau")
        nudge = (i - (len(order) - 1) / 2) * 0.004
        b = score.loc[score["strategy"] == strategy, column].iloc[0]
        ax.step(g["tau"], g["rho"] + nudge, where="post", lw=1.6, label=f"{strategy} (B = {b:.2f})",
                **styles[strategy])
    what = ("search time-to-target (training seconds)" if metric == "time" else "trials-to-target")
    ax.set(xlim=(1, r_max), ylim=(-0.03, 1.03), xlabel=f"tau: ratio of {what} to the fastest strategy's",
           ylabel=f"rho(tau): share of the {n_problems} problems",
           title=f"Performance profile by {'time' if metric == 'time' else 'trials'} (AlgoPerf)\nratio > {r_max:g} "
                 "or the target missed by the median seed = not solved\n(lines nudged vertically by up to "
                 f"{0.002 * (len(order) - 1):.2f} so that equal profiles stay visible)")
    ax.title.set_fontsize(10)
    ax.legend(title="strategy (score B)", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1),
              frameon=False)
    return _save(fig, path)


def ranks_figure(ranks: pd.DataFrame, path: Path, strategies: list[str]) -> Path:
    """Mean rank per strategy against the budget (1 = best, drawn at the top)."""
    styles = _styles(strategies)
    blocks = int(ranks["blocks"].max())
    budgets = sorted(ranks["budget"].unique())
    final = ranks[ranks["budget"] == budgets[-1]].set_index("strategy")["mean_rank"]
    fig = Figure(figsize=(9, 5.2))
    ax = fig.subplots()
    for strategy in final.sort_values().index:
        g = ranks[ranks["strategy"] == strategy].sort_values("budget")
        ax.plot(g["budget"], g["mean_rank"], marker="o", ms=3, lw=1.5, label=f"{strategy} ({final[strategy]:.2f})",
                **styles[strategy])
    if budgets[-1] / budgets[0] > 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.invert_yaxis()
    notes = ["ties share their average rank", "coinciding lines (e.g. a shared random start-up) hide each other"]
    if any(s.startswith("lr-range") for s in final.index):
        notes.insert(1, "a range test's trial 1 is the test (no candidate), trial 2 its run, kept at larger budgets")
    ax.set(xlabel="budget (trials)", ylabel="mean rank (1 = best)",
           title=f"Mean rank by best validation value so far, over {blocks} (problem, seed) blocks per budget\n"
                 + "\n".join(notes))
    ax.title.set_fontsize(9)
    ax.legend(title=f"strategy (rank at {budgets[-1]})", fontsize=8, title_fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1), frameon=False)
    return _save(fig, path)


def critical_difference_figure(test: RankTest, path: Path) -> Path:
    """Demsar's critical-difference diagram (autorank's `plot_stats`): mean ranks on the axis, a bar joining the
    strategies that the Nemenyi test does not tell apart."""
    from autorank import plot_stats

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ax = plot_stats(test.result, allow_insignificant=True, width=9)
    fig = ax.figure
    verdict = (f"Friedman p = {test.pvalue:.2g} < {test.alpha:g}: Nemenyi CD = {test.cd:.2f}" if test.significant
               else f"Friedman p = {test.pvalue:.2g} >= {test.alpha:g}: no difference (bars drawn for reference)")
    fig.suptitle(f"Critical difference, {test.n_blocks} {test.blocks} blocks: {verdict}", fontsize=10, y=1.1)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def regret_figure(regret_iqm: pd.DataFrame, path: Path, strategies: list[str], n_boot: int = N_BOOT,
                  anchor: str = DEFAULT_ANCHOR) -> Path:
    """IQM of the normalised regret per strategy with its stratified bootstrap 95% interval (0 = the best any
    trial reached, 1 = no better than the median trial of the `anchor` strategy)."""
    styles = _styles(strategies)
    data = regret_iqm.sort_values("iqm_regret")
    fig = Figure(figsize=(8, 0.42 * len(data) + 1.6))
    ax = fig.subplots()
    y = np.arange(len(data))
    for yi, row in zip(y, data.itertuples(index=False)):
        colour = styles[row.strategy]["color"]
        ax.plot([row.ci_low, row.ci_high], [yi, yi], color=colour, lw=6, alpha=0.6, solid_capstyle="butt")
        ax.plot([row.iqm_regret], [yi], "|", color="k", ms=14, mew=2)
    ax.set_yticks(y, data["strategy"])
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(data["ci_high"].max()) + 0.02) if len(data) else 1)
    n_runs, n_problems = int(data["runs"].max()), int(data["problems"].max())
    ax.set(xlabel=f"normalised regret (0: the best any trial reached; 1: the median {anchor_name(anchor)} trial "
                  "or worse)",
           title=f"IQM of normalised regret over {n_problems} problems x seeds ({n_runs} runs per strategy)\n"
                 + (f"bar: stratified bootstrap 95% interval ({n_boot:,} repetitions); lower is better"
                    if data["ci_low"].notna().any() else
                    f"no intervals: under {MIN_BOOTSTRAP_N} seeds a problem; lower is better"))
    ax.title.set_fontsize(10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def write_scores(scores: dict, out: Path, strategies: list[str], prefix: str = "",
                 anchor: str = DEFAULT_ANCHOR) -> list[Path]:
    """Every table of `compute_scores` as CSV, and the figures, under `out`; returns the figures. `anchor`: the
    strategy whose median trial anchored the regret (`scores.problem_anchors`)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("score", "times", "profile", "regret", "regret_iqm", "ranks", "friedman"):
        scores[name].to_csv(out / f"{prefix}{name}.csv", index=False)
    figures = [profile_figure(scores["profile"], scores["score"], metric, out / f"{prefix}profile_{metric}.png",
                              strategies) for metric in ("time", "trials")]
    figures.append(ranks_figure(scores["ranks"], out / f"{prefix}ranks.png", strategies))
    test = scores["rank_test"]
    if test is not None and test.result is not None and test.posthoc == "nemenyi":
        figures.append(critical_difference_figure(scores["rank_test"], out / f"{prefix}critical_difference.png"))
    figures.append(regret_figure(scores["regret_iqm"], out / f"{prefix}regret_iqm.png", strategies, anchor=anchor))
    return figures


def _ci(row) -> str:
    if math.isnan(row.iqm_ci_low):
        return f"{row.iqm_regret:.3f} (no interval: under {MIN_BOOTSTRAP_N} seeds)"
    return f"{row.iqm_regret:.3f} [{row.iqm_ci_low:.3f}, {row.iqm_ci_high:.3f}]"


def scores_markdown(scores: dict, figures: list[Path], root: Path, anchors: pd.DataFrame, n_seeds: int,
                    heading: str = "## Scores", anchor: str = DEFAULT_ANCHOR) -> list[str]:
    """The section's Markdown: what each score is, with its anchor (the median trial of strategy `anchor`),
    the tables and the figures."""
    score = scores["score"].copy()
    score["iqm_regret_95ci"] = [_ci(r) for r in score.itertuples(index=False)]
    budget = scores["budget"]
    test = scores["rank_test"]
    lines = [heading, "",
             f"Cross-problem scores at budget {budget} trials over {score['problems_time'].max()} problems and "
             f"{n_seeds} seeds (`lrsearch/reporting/scores.py` defines each one; tables and figures in "
             f"`{Path(figures[0]).parent.relative_to(root) if figures else 'scores'}/`).", "",
             f"- **Score B** (AlgoPerf's performance-profile score): per problem and strategy, each seed's search "
             "time-to-target (training seconds until the first trial reaches the target, evaluations excluded), "
             "the median over seeds with a missed target as +inf (AlgoPerf's `np.median` over studies: finite only "
             "when more than half of the seeds reach it); r = that time / the fastest strategy's on the problem, "
             f"r > r_max = {R_MAX:g} counts as not solved; rho(tau) = share of problems with r <= tau; B = "
             f"1/(r_max - 1) x the integral of rho over [1, {R_MAX:g}] (exact: rho is a step function). B = 1: "
             "fastest everywhere; 0: never within 4x of the fastest. `score_B_trials`: the same on trials-to-target.",
             f"- **IQM of normalised regret** (CARP-S normalises each run per task): per run, (best_any - best) / "
             "(best_any - anchor) with best_any the best value any trial reached on the problem and the anchor the "
             f"median value of one {anchor_name(anchor)} trial there (`{anchor}` at budget 1), clipped to [0, 1] "
             "(`clipped_runs`: runs no better than the anchor); the interquartile mean over every (problem, seed) "
             f"run with a percentile 95% interval from {N_BOOT:,} stratified bootstrap repetitions (seeds "
             "resampled within each problem; rliable's method, own code: rliable 1.2.0 does not import beside "
             f"pandas 3), over {n_seeds} seeds a problem; none under {MIN_BOOTSTRAP_N} seeds, where a percentile "
             "interval does not hold its level. Lower is better.",
             "- **Mean rank** (CARP-S): per (problem, seed) block, strategies ranked by best validation value at "
             "the budget (1 = best, ties averaged); range tests train 2 trials (their test and one run) and keep "
             "that best at every larger budget. A self-tuning contender runs in each workload's first space "
             "only (it searches nothing): its runs there stand for the workload's other spaces too in B, regret "
             "and mean rank; the Friedman and Nemenyi tests leave those copies out (independent blocks only).", ""]
    lines += [_fmt(score, ["strategy", "score_B_time", "problems_within_r_max_time", "score_B_trials",
                           "iqm_regret_95ci", "clipped_runs", "mean_rank"]), ""]
    friedman = scores["friedman"]
    if len(friedman):
        lines += [f"**Friedman test, then Nemenyi** (alpha = {ALPHA:g}, via autorank; Demsar 2006, as CARP-S's "
                  f"critical-difference analysis) on the best value at budget {budget}:"]
        for row in friedman.itertuples(index=False):
            if row.rejects and row.omnibus != "friedman":  # two strategies: autorank's Wilcoxon signed-rank test
                verdict = f"{row.omnibus} rejects equal values (p = {row.pvalue:.2g}): {row.differing_pairs}"
            elif row.rejects:
                verdict = (f"rejects equal ranks (p = {row.pvalue:.2g}); Nemenyi CD = {row.critical_difference:.2f}: "
                           + (f"differ: {row.differing_pairs}" if row.differing_pairs else "yet no pair is CD apart")
                           + f"; groups not told apart: {row.groups}")
            else:
                verdict = f"does not reject (p = {row.pvalue:.2g}): no pair of strategies is told apart"
            lines += [f"- blocks {row.blocks} (n = {row.n_blocks}): {verdict}."]
        lines += [""]
    elif test is None:
        lines += ["No Friedman test: fewer than 5 complete (problem, seed) blocks.", ""]
    anchor_note = "; ".join(f"{r.problem} {r.anchor:.3g} (best {r.best_any:.3g})" for r in anchors.itertuples())
    lines += [f"Anchors (median {anchor_name(anchor)} trial) and best values per problem, in the search's maximised "
              f"sign (a minimised metric negated): {anchor_note}.", ""]
    for fig in figures:
        lines += [f"![{fig.stem}]({Path(fig).relative_to(root).as_posix()})", ""]
    return lines


def _targets(folders: list[Path]) -> dict[str, float | None]:
    """Each problem folder's target, as its experiment.json stored it."""
    import json

    targets = {}
    for folder in folders:
        meta = folder / "experiment.json"
        targets[folder.name] = json.loads(meta.read_text()).get("task", {}).get("target_acc") if meta.exists() else None
    return targets


def order_agreement(table: pd.DataFrame) -> str:
    """Kendall's tau of the two sides' orders by B, its p-value, and what it says, in one sentence."""
    from scipy.stats import kendalltau

    tau, p = kendalltau(table["score_B_time_real"], table["score_B_time_replay"])
    if not math.isfinite(tau):
        return "Kendall's tau of the two orders by B is undefined (a side gives every strategy the same B)."
    verdict = ("they agree beyond chance" if tau > 0 and p <= 0.05 else
               "the real order does not follow the tables'" if tau <= 0 else "an agreement within chance")
    return f"Kendall's tau of the two orders by B: {tau:.2f} (p = {p:.2f}, {len(table)} strategies): {verdict}."


def comparison_markdown(real: dict, replay: dict, problems: list[str], strategies: list[str], out: Path,
                        other: str, real_folders: list[Path] | None = None,
                        replay_folders: list[Path] | None = None) -> list[str]:
    """Real against replayed scores on the problems and strategies both have, at one budget; `other` names the
    other suite's folder. Says how far the two orders agree, and where the two sides' problems differ in target
    (trained under other definitions, they do not measure the same problems)."""
    table = compare_scores(real, replay)
    table.to_csv(out / "real_vs_replay.csv", index=False)
    caveats = [order_agreement(table)]
    if real_folders and replay_folders:
        real_t, replay_t = _targets(real_folders), _targets(replay_folders)
        differ = [f"{p} {real_t.get(p)} against {replay_t.get(p)}" for p in problems
                  if real_t.get(p) is not None and replay_t.get(p) is not None and real_t.get(p) != replay_t.get(p)]
        if differ:
            caveats.append(f"The real runs were trained under other workload definitions than the tables (targets, "
                           f"real against tables: {'; '.join(differ)}): the two sides do not measure the same "
                           "problems, so this is no check of the tables; results/tables-check-cpu is (10 real seeds, "
                           "the tables' own definitions, a rule fixed before the runs).")
    if real["n_seeds"] < MIN_BOOTSTRAP_N:
        caveats.append(f"Over {real['n_seeds']} real seeds a real order is mostly noise.")
    return ["### Real runs against the tables' scores", "", " ".join(caveats), "",
            f"Both recomputed on what the two have in common: {len(problems)} problems ({', '.join(problems)}), "
            f"{len(strategies)} strategies, budget {real['budget']} (B depends on which strategies share a problem, "
            "so the real scores here differ from the full table above). Each side's regret is normalised by its own "
            f"best value and anchor; gap = tables - real. `scores/real_vs_replay.csv`; {other}. A problem's time is a "
            f"median over seeds: over {real['n_seeds']} real seeds it is one seed's time, over {replay['n_seeds']} "
            "seeds on the tables a stable middle, so the real ratios can spread wider and every real B be lower: "
            "compare their orders, not their levels. Each side's times are on its own clock: the real runs' as "
            "the Clock section says, the tables' their simulated clock; B compares "
            "times within a side only.", "",
            _fmt(table, list(table.columns)), ""]


def real_and_replay(real_folders: list[Path], replay_folders: list[Path], budget: int,
                    anchor: str = DEFAULT_ANCHOR) -> tuple[dict, dict, list, list] | None:
    """Both suites' scores on their common problems and strategies at `budget`, the regret anchored on strategy
    `anchor` (None when they share fewer than 2 problems or strategies, or the replay lacks that budget)."""
    common = sorted({f.name for f in real_folders} & {f.name for f in replay_folders})
    real_folders = [f for f in real_folders if f.name in common]
    replay_folders = [f for f in replay_folders if f.name in common]
    if len(common) < 2:
        return None
    real, replay = suite_frame(real_folders), suite_frame(replay_folders)
    strategies = [s for s in real["strategy"].unique() if s in set(replay["strategy"])]
    if len(strategies) < 2 or budget not in set(replay["budget"]):
        return None
    real, replay = real[real["strategy"].isin(strategies)], replay[replay["strategy"].isin(strategies)]
    return (compute_scores(real, problem_anchors(real_folders, anchor), budget),
            compute_scores(replay, problem_anchors(replay_folders, anchor), budget), common, strategies)


def suite_scores_section(folders: list[Path], root: Path, replay_folders: list[Path] | None = None,
                         strategies: list[str] | None = None, heading: str = "## Scores",
                         anchor: str = DEFAULT_ANCHOR, findings: list[str] | None = None) -> list[str]:
    """A real suite's section: scores at its full budget into `root/scores/` (and, given a `findings` list, the
    Findings section appended to it: reporting/findings.py), and beside a replay of it
    (`replay_folders`), the two compared; `strategies` (the suite's) fixes each one's colour; `anchor`: the
    strategy whose median trial anchors the regret (`scores.problem_anchors`)."""
    frame = suite_frame(folders)
    if not len(frame):
        return []
    anchors = problem_anchors(folders, anchor)
    scores = compute_scores(frame, anchors)
    strategies = list(dict.fromkeys([*(strategies or []), *frame["strategy"]]))
    out = root / "scores"
    figures = write_scores(scores, out, strategies, anchor=anchor)
    lines = scores_markdown(scores, figures, root, anchors, frame["seed"].nunique(), heading, anchor)
    if findings is not None and frame["problem"].nunique() > 1:  # the findings, generated from these scores
        from lrsearch.reporting.findings import findings_section

        findings += findings_section(root, frame, scores["score"], int(frame["seed"].nunique()), scores["budget"])
    if replay_folders:
        both = real_and_replay(folders, replay_folders, scores["budget"], anchor)
        if both:
            lines += comparison_markdown(*both, out, f"the tables: `{replay_folders[0].parent}`", folders,
                                         replay_folders)
    return lines


def sibling(root: Path) -> Path:
    """The folder a suite's search on its tables goes to beside its real one (`<real>-tables`, as
    results/suite-cpu and results/suite-cpu-tables)."""
    root = Path(root)
    return root.with_name(root.name + "-tables")


def has_tables(folder: Path, names: tuple[str, ...]) -> bool:
    return all((folder / "tables" / f"{n}.parquet").exists() or (folder / "tables" / f"{n}.csv").exists()
               for n in names)


def scorable(folder: Path) -> bool:
    """A problem folder the scores can read: its `runs` table, and its `trials` table or the `anchors.csv`
    a replay leaves in place of its uncommitted per-trial table (`scores.write_anchors`)."""
    folder = Path(folder)
    return has_tables(folder, ("runs",)) and (has_tables(folder, ("trials",)) or (folder / "tables" / "anchors.csv").exists())
