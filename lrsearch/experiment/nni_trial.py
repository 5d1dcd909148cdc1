"""One trial of a real NNI experiment (`lrsearch nni-experiment`): NNI's manager starts this
module as the trial command. It takes its params from NNI, trains through the same objective
as every other strategy, reports each evaluation to NNI as an intermediate result and the
value as the final one (a trial without one ends with exit status 1: FAILED in NNI, no number for its tuner),
and commits the trial into the experiment's store."""

from __future__ import annotations

import argparse
import json
import time

started = time.time()  # before the heavy imports: spawn and import time count as NNI overhead


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--run-id", type=int, required=True)
    parser.add_argument("--task-file", required=True, help="the task as JSON (lrsearch.training.tasks.Task fields)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import nni

    from lrsearch.experiment.runner import representative_lr
    from lrsearch.experiment.store import Store, TrialRecord
    from lrsearch.search.objective import TrainingObjective
    from lrsearch.search.strategies.nni_ import from_nni
    from lrsearch.training.tasks import Task

    # a conditional space comes as NNI's nested choice ({"_name": ..., sub-parameters}): flat params, as any strategy's
    params = {k: (v.item() if hasattr(v, "item") else v) for k, v in from_nni(nni.get_next_parameter()).items()}
    with open(args.task_file) as f:
        task = Task(**json.load(f))
    objective = TrainingObjective(task, seed=args.seed)

    def report(step: int, value: float) -> bool:
        nni.report_intermediate_result(value)
        return False

    evaluation = objective(params, report)
    store = Store(f"{args.results}/results.sqlite", create=True)
    try:
        previous = store.last_finished_at(args.run_id)
        record = evaluation.record.to_dict()
        curve = record.pop("curve")
        store.add_trial(TrialRecord(
            run_id=args.run_id, trial_index=nni.get_sequence_id(), kind="train", params=params,
            lr=representative_lr(params), status=evaluation.status,
            value=evaluation.value if evaluation.has_value else None, train_s=evaluation.train_s,
            overhead_s=max(0.0, started - previous), extra={"nni_trial_id": nni.get_trial_id()}, curve=curve,
            result=record))
    finally:
        store.close()
    if not evaluation.has_value:
        # no final result: the process's exit status fails the trial in NNI's manager, whose tuner then never
        # sees a number for it (the in-process NNI strategies' trial_end does the same, strategies/nni_.py)
        return 1
    nni.report_final_result(evaluation.value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
