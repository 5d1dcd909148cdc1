"""Range test, then train: Smith's LR range test picks the learning rate(s), one run follows.

The strategy asks the objective for a range test with params {"range_test": {...}}; the
objective answers with an Evaluation whose `extra` holds the curve (lrs, losses, the
evaluations' lrs and accuracies), each parameter group's LR as a multiple of `lrs`
(`lr_mults`) and the task's steps per epoch and total steps. The range test counts as one
trial and its training seconds count like any trial's. The suggestion rules
(lrsearch.search.lr_finder) are pure numpy functions.

Parameter groups: the test sweeps every group at the ratio the trial trains it at (the
finetune task's backbone at `backbone_lr_mult` times the head's LR, which is `lr`), so a
suggestion read on `lrs` is the trial's `lr`, and the run that follows trains each group at
the same ratio. The suggestion note gives each group's LRs too (`group_lrs`).

Options (all optional): metric "acc"|"loss" (Smith's rule on accuracy or loss), rule
(single-LR rule for lr-range-fixed, default "valley"), range_fraction (range-test length
as a fraction of the task's training steps, default 0.25), range_epochs, range_mode
"linear"|"exp" (default: exp on a log-scale lr space), min_lr / max_lr (default: the lr
space's bounds), and for CLR: clr_mode (default triangular2), window, step_size_epochs
(default 4; adjusted so that training ends at the end of a cycle).
"""

from __future__ import annotations

from lrsearch.search.lr_finder import RULES, suggest_lr, suggest_range
from lrsearch.search.strategies.base import Evaluation, Option, Strategy, register

_RANGE_OPTIONS = (
    Option("range_fraction", float, 0.25, "range-test length as a fraction of the task's training steps"),
    Option("range_epochs", float, None, "range-test length in epochs, instead of range_fraction"),
    Option("range_mode", str, None, "how the LR rises: exp or linear (default: exp on a log-scale lr space)",
           ("exp", "linear")),
    Option("min_lr", float, None, "the range test's first LR (default: the lr space's low bound)"),
    Option("max_lr", float, None, "the range test's last LR (default: the lr space's high bound)"),
)
_METRIC = Option("metric", str, "acc", "Smith's rule on validation accuracy or on the training loss", ("acc", "loss"))


class _RangeThenTrain(Strategy):
    options_spec = (_METRIC, *_RANGE_OPTIONS)

    def _range_request(self) -> dict:
        lr_dim = next((d for d in self.space if d.name == "lr"), None)
        if lr_dim is None or lr_dim.categorical:
            raise ValueError(f"{self.name}: the search space needs a numeric `lr` dimension for the range test's bounds")
        o = self.options
        request = {"min_lr": o.get("min_lr", lr_dim.low), "max_lr": o.get("max_lr", lr_dim.high),
                   "mode": o.get("range_mode", "exp" if lr_dim.log else "linear")}
        if "range_epochs" in o:
            request["epochs"] = o["range_epochs"]
        else:
            request["fraction"] = o.get("range_fraction", 0.25)
        return request

    def _search(self, objective, n_trials):
        test = objective({"range_test": self._range_request()}, None)
        if test.status == "failed":
            return
        params, note = self.final_params(test)
        test.extra["suggestion"] = note
        if params is not None:
            objective(params, None)

    def _bounds(self, test: Evaluation) -> tuple[float, float] | None:
        """Smith's (base_lr, max_lr), on the chosen metric, falling back to the other one."""
        x = test.extra
        metrics = [self.option("metric")]
        metrics.append("loss" if metrics[0] == "acc" else "acc")
        for metric in metrics:
            lrs, values = (x["eval_lrs"], x["eval_accs"]) if metric == "acc" else (x["lrs"], x["losses"])
            try:
                return suggest_range(lrs, values, metric)
            except ValueError as err:
                x.setdefault("suggestion_errors", []).append(f"{metric}: {err}")
        return None

    def final_params(self, test: Evaluation) -> tuple[dict | None, dict]:
        raise NotImplementedError

    @staticmethod
    def _group_lrs(test: Evaluation, **lrs: float) -> dict[str, list[float]]:
        """Each suggested LR as every parameter group trains at it (a test recorded before `lr_mults`: one group)."""
        mults = test.extra.get("lr_mults", [1.0])
        return {name: [lr * mult for mult in mults] for name, lr in lrs.items()}

    def space_notes(self) -> list[str]:
        others = [d.name for d in self.space.flattened() if d.name != "lr"]
        if not others:
            return []
        return [f"{self.name}: searches lr only (a range test, then one run with its own LR schedule); "
                f"{', '.join(others)} not searched, at the workload's defaults"]

    @property
    def flattens_space(self) -> bool:
        return any(d.name != "lr" for d in self.space)


@register
class RangeTestCLR(_RangeThenTrain):
    name = "lr-range-clr"
    summary = "LR range test -> base_lr, max_lr (Smith's rule), then one run with a cyclical LR (triangular2)"
    options_spec = (_METRIC, *_RANGE_OPTIONS,
                    Option("clr_mode", str, "triangular2", "the cyclical policy", ("triangular", "triangular2", "exp_range")),
                    Option("window", str, "triangular", "the cycle's shape (the CLR paper's windows)",
                           ("triangular", "welch", "hann")),
                    Option("step_size_epochs", float, 4.0, "half a cycle, in epochs (adjusted so that training ends "
                           "at the end of a cycle)"),
                    Option("gamma", float, None, "exp_range's decay per iteration"))

    def final_params(self, test):
        bounds = self._bounds(test)
        if bounds is None:
            return None, {"error": "no range found"}
        base_lr, max_lr = bounds
        total, per_epoch = test.extra["total_steps"], test.extra["steps_per_epoch"]
        step_size = max(1, round(self.option("step_size_epochs") * per_epoch))
        cycles = max(1, round(total / (2 * step_size)))
        step_size = total // (2 * cycles)  # a whole number of cycles: training ends at the end of one
        schedule = {"name": "cyclic", "base_lr": base_lr, "max_lr": max_lr, "step_size": step_size,
                    "mode": self.option("clr_mode"), "window": self.option("window")}
        if "gamma" in self.options:
            schedule["gamma"] = self.options["gamma"]
        return ({"lr": max_lr, "schedule": schedule, "steps": 2 * step_size * cycles},
                {"base_lr": base_lr, "max_lr": max_lr, "step_size": step_size, "cycles": cycles,
                 "group_lrs": self._group_lrs(test, base_lr=base_lr, max_lr=max_lr)})


@register
class RangeTestOneCycle(_RangeThenTrain):
    name = "lr-range-1cycle"
    summary = "LR range test -> max_lr, then one run with one-cycle from base_lr up to max_lr and down"
    options_spec = (_METRIC, *_RANGE_OPTIONS,
                    Option("pct_start", float, 0.3, "fraction of training spent rising to max_lr"))

    def final_params(self, test):
        bounds = self._bounds(test)
        if bounds is None:
            return None, {"error": "no range found"}
        base_lr, max_lr = bounds
        schedule = {"name": "one_cycle", "max_lr": max_lr, "div_factor": max(max_lr / base_lr, 1.0),
                    "pct_start": self.option("pct_start")}
        note = {"base_lr": base_lr, "max_lr": max_lr, "group_lrs": self._group_lrs(test, base_lr=base_lr, max_lr=max_lr)}
        return {"lr": max_lr, "schedule": schedule}, note


@register
class RangeTestFixed(_RangeThenTrain):
    name = "lr-range-fixed"
    summary = "LR range test -> one LR (fastai's valley rule by default), then one run at that constant LR"
    options_spec = (*_RANGE_OPTIONS, Option("rule", str, "valley", "fastai's rule that picks the LR from the loss", RULES))

    def final_params(self, test):
        rule = self.option("rule")
        try:
            lr = suggest_lr(test.extra["lrs"], test.extra["losses"], rule)
        except ValueError as err:
            return None, {"error": f"{rule}: {err}"}
        return ({"lr": lr, "schedule": {"name": "constant", "lr": lr}},
                {"rule": rule, "lr": lr, "group_lrs": self._group_lrs(test, lr=lr)})
