"""Range test, then train: Smith's LR range test picks the learning rate(s), one run follows.

The strategy asks the objective for a range test with params {"range_test": {...}}; the
objective answers with an Evaluation whose `extra` holds the curve (lrs, losses, the
evaluations' lrs and accuracies) and the task's steps per epoch and total steps. The
range test counts as one trial and its training seconds count like any trial's. The
suggestion rules (lrsearch.search.lr_finder) are pure numpy functions.

Options (all optional): metric "acc"|"loss" (Smith's rule on accuracy or loss), rule
(single-LR rule for lr-range-fixed, default "valley"), range_fraction (range-test length
as a fraction of the task's training steps, default 0.25), range_epochs, range_mode
"linear"|"exp" (default: exp on a log-scale lr space), min_lr / max_lr (default: the lr
space's bounds), and for CLR: clr_mode (default triangular2), window, step_size_epochs
(default 4; adjusted so that training ends at the end of a cycle).
"""

from __future__ import annotations

from lrsearch.search.lr_finder import suggest_lr, suggest_range
from lrsearch.search.strategies.base import Evaluation, Strategy, register


class _RangeThenTrain(Strategy):
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
        metrics = [self.options.get("metric", "acc")]
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


@register
class RangeTestCLR(_RangeThenTrain):
    name = "lr-range-clr"
    summary = "LR range test -> base_lr, max_lr (Smith's rule), then one run with a cyclical LR (triangular2)"

    def final_params(self, test):
        bounds = self._bounds(test)
        if bounds is None:
            return None, {"error": "no range found"}
        base_lr, max_lr = bounds
        total, per_epoch = test.extra["total_steps"], test.extra["steps_per_epoch"]
        step_size = max(1, round(self.options.get("step_size_epochs", 4) * per_epoch))
        cycles = max(1, round(total / (2 * step_size)))
        step_size = total // (2 * cycles)  # a whole number of cycles: training ends at the end of one
        schedule = {"name": "cyclic", "base_lr": base_lr, "max_lr": max_lr, "step_size": step_size,
                    "mode": self.options.get("clr_mode", "triangular2"), "window": self.options.get("window", "triangular")}
        if "gamma" in self.options:
            schedule["gamma"] = self.options["gamma"]
        return ({"lr": max_lr, "schedule": schedule, "steps": 2 * step_size * cycles},
                {"base_lr": base_lr, "max_lr": max_lr, "step_size": step_size, "cycles": cycles})


@register
class RangeTestOneCycle(_RangeThenTrain):
    name = "lr-range-1cycle"
    summary = "LR range test -> max_lr, then one run with one-cycle from base_lr up to max_lr and down"

    def final_params(self, test):
        bounds = self._bounds(test)
        if bounds is None:
            return None, {"error": "no range found"}
        base_lr, max_lr = bounds
        schedule = {"name": "one_cycle", "max_lr": max_lr, "div_factor": max(max_lr / base_lr, 1.0),
                    "pct_start": self.options.get("pct_start", 0.3)}
        return {"lr": max_lr, "schedule": schedule}, {"base_lr": base_lr, "max_lr": max_lr}


@register
class RangeTestFixed(_RangeThenTrain):
    name = "lr-range-fixed"
    summary = "LR range test -> one LR (fastai's valley rule by default), then one run at that constant LR"

    def final_params(self, test):
        rule = self.options.get("rule", "valley")
        try:
            lr = suggest_lr(test.extra["lrs"], test.extra["losses"], rule)
        except ValueError as err:
            return None, {"error": f"{rule}: {err}"}
        return {"lr": lr, "schedule": {"name": "constant", "lr": lr}}, {"rule": rule, "lr": lr}
