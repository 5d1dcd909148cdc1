"""One trial of a real NNI experiment (`lrsearch nni-experiment`): NNI's manager starts this
module as the trial command. It takes its params from NNI, trains through the same objective
as every other strategy, reports each evaluation to NNI as an intermediate result and the
value as the final one, and commits the trial into the experiment's store."""

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
    from lrsearch.experiment.store import Store
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
        previous = store.conn.execute(
            "SELECT COALESCE(MAX(finished_at), (SELECT started_at FROM runs WHERE run_id=?)) FROM trials WHERE run_id=?",
            (args.run_id, args.run_id)).fetchone()[0]
        record = evaluation.record.to_dict()
        curve = record.pop("curve")
        store.add_trial(args.run_id, nni.get_sequence_id(), "train", params, representative_lr(params), evaluation.status,
                        evaluation.value, evaluation.train_s, max(0.0, started - previous),
                        {"nni_trial_id": nni.get_trial_id()}, curve, record)
    finally:
        store.close()
    nni.report_final_result(evaluation.value)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
