"""Trials as Ray tasks: all the GPUs of a machine, or of a Ray cluster.

    lrsearch run experiments/benchmark-gpu.toml --executor ray                 # a local Ray, every GPU
    lrsearch run experiments/benchmark-gpu.toml --executor ray --address auto  # the cluster `ray start` made

Each trial is one Ray task asking for `num_gpus` (1 where the cluster has GPUs; a fraction
packs several small trials on one GPU) and `num_cpus`; its worker process trains with the
run's TrainingObjective and returns the Evaluation. The driver (this process) keeps the
search libraries and is the only writer of the store.

Without an address, a private Ray starts on 127.0.0.1: no dashboard, its scratch files in a
temporary folder, shut down at the end, on errors and on Ctrl-C too. Ray 2.51 - 2.53 bind
every server of such a node to its node IP, 127.0.0.1; later releases listen on all
interfaces again, hence the pin in pyproject.toml (tests/test_ray.py checks every listener).
With an address, the cluster is only connected to, and left running at the end. A cluster
kept on loopback like that one is reached as `--address [::ffff:127.0.0.1]:PORT`: Ray dials
`127.0.0.1:PORT` at this machine's network address instead (resolve_ip_for_localhost in
ray._private.services), where such a cluster does not listen.

A pruner's report hook runs in the driver, where the study is: the worker sends each
(step, accuracy) through a small relay actor and waits for the answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
import time
import uuid
import warnings
from concurrent.futures import Future

from lrsearch.experiment.executors.base import Cancelled, SlotExecutor
from lrsearch.search.strategies import Evaluation, ReportHook
from lrsearch.training.errors import InputError

try:
    import ray
except ImportError as err:  # an optional extra
    raise ImportError("the Ray executor needs Ray: pip install 'lrsearch[ray]'") from err


def _evaluate(objective, params: dict, relay, key: str, threads: int) -> Evaluation:
    """The body of a trial's Ray task, in a worker process."""
    import torch

    torch.set_num_threads(threads)
    report = None
    if relay is not None:
        def report(step: int, value: float) -> bool:
            return ray.get(relay.report.remote(key, step, value))
    return objective(params, report)


def _check_reachable(address: str) -> None:
    """A HOST:PORT where no cluster answers: one message now, instead of Ray retrying for minutes."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # an IPv6 address: [::1]:6379
    if not host or not port.isdigit():
        return  # "auto", or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise InputError(f"--address {address}: no Ray cluster answers there ({err.strerror or err}); start one with "
                         "`ray start --head --port PORT`, or leave --address out for a private Ray on this machine") from None


class ReportRelay:
    """Carries a trial's pruning reports from its worker to the driver and the answers back
    (a Ray async actor, no CPU reserved): `report` (worker) waits for `answer` (driver),
    `next_report` (driver) waits for a report, or for `done` (the trial ended: None)."""

    def __init__(self):
        self.reports: dict[str, asyncio.Queue] = {}
        self.answers: dict[str, asyncio.Queue] = {}

    def _queue(self, table: dict, key: str) -> asyncio.Queue:
        return table.setdefault(key, asyncio.Queue())

    async def report(self, key: str, step: int, value: float) -> bool:
        await self._queue(self.reports, key).put((step, value))
        return await self._queue(self.answers, key).get()

    async def next_report(self, key: str):
        return await self._queue(self.reports, key).get()

    async def answer(self, key: str, stop: bool) -> None:
        await self._queue(self.answers, key).put(stop)

    async def done(self, key: str) -> None:
        await self._queue(self.reports, key).put(None)
        self.reports.pop(key, None)
        self.answers.pop(key, None)


class RayExecutor(SlotExecutor):
    """workers: trials at once (default: GPUs // num_gpus where there are GPUs, else CPUs // num_cpus).
    num_gpus / num_cpus: per trial (default: 1 GPU where there are GPUs, else 0; CPUs // workers)."""

    remote = True

    def __init__(self, address: str | None = None, workers: int | None = None, num_gpus: float | None = None,
                 num_cpus: float | None = None):
        self.address = address
        self._scratch = None
        # Ray >= 2.52 warns, for every num_gpus=0 task, that it will stop hiding the GPUs from them; we want them hidden.
        warnings.filterwarnings("ignore", message="Tip: In future versions of Ray", category=FutureWarning)
        if address is None:
            # A private node: loopback only, no dashboard, no usage report, scratch files in a temporary folder.
            # (Without the dashboard's agent, Ray logs once that it cannot export metrics: harmless.)
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            self._scratch = tempfile.mkdtemp(prefix="lrsearch-ray-")
            ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                     _temp_dir=self._scratch, log_to_driver=False, configure_logging=False)
        else:
            _check_reachable(address)
            try:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            except ConnectionError as err:
                raise InputError(f"--address {address}: {err} (start one with `ray start --head`, or leave --address "
                                 "out for a private Ray on this machine)") from None
        resources = ray.cluster_resources()
        gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 1.0)
        self.num_gpus = (1.0 if gpus else 0.0) if num_gpus is None else float(num_gpus)
        if self.num_gpus > gpus:
            self.close()
            raise InputError(f"--gpus-per-trial (num_gpus) {self.num_gpus:g}: the Ray cluster has {gpus:g} GPUs; "
                             "give 0 to train on CPUs, or a fraction to share a GPU")
        if workers is None:
            workers = int(gpus // self.num_gpus) if self.num_gpus else int(cpus // (num_cpus or 1))
        self.num_cpus = float(num_cpus) if num_cpus is not None else max(1.0, float(cpus // max(workers, 1)))
        super().__init__(max(1, workers))
        self.cluster = {"CPU": cpus, "GPU": gpus}
        self._task = ray.remote(_evaluate).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0,
                                                   name="lrsearch-trial")
        self._relay = None
        self._relay_lock = threading.Lock()
        self._in_flight: set = set()

    def describe(self) -> str:
        where = self.address or "local Ray on 127.0.0.1"
        fit = self.cluster["CPU"] // self.num_cpus
        if self.num_gpus:
            fit = min(fit, self.cluster["GPU"] // self.num_gpus)
        crowded = f"; only {fit:g} fit at once, Ray queues the rest" if fit < self.slots else ""
        return (f"Ray ({where}): {self.slots} trials at once, {self.num_gpus:g} GPU and {self.num_cpus:g} CPU each "
                f"(cluster: {self.cluster['GPU']:g} GPU, {self.cluster['CPU']:g} CPU{crowded})")

    # ------------------------------------------------------------ trials

    def evaluate(self, objective, params: dict, report: ReportHook | None) -> Evaluation:
        """One trial, this thread waiting for it (and answering its pruning reports)."""
        self.reserve(block=True)
        key = uuid.uuid4().hex
        relay = self._report_relay() if report is not None else None
        ref = self._start(objective, params, relay, key)
        try:
            if relay is not None:
                self._serve_reports(ref, relay, key, report)
            return self._result(lambda: ray.get(ref), params)
        finally:
            if relay is not None:
                relay.done.remote(key)
            self._in_flight.discard(ref)
            self.release()

    def submit(self, objective, params: dict) -> Future:
        """One trial in a slot the caller reserved; the slot is freed when it ends."""
        ref = self._start(objective, params, None, "")
        future: Future = Future()

        def finished(ray_future: Future) -> None:  # in a Ray thread: no ray.get here
            self._in_flight.discard(ref)
            self.release()
            try:
                future.set_result(self._result(ray_future.result, params))
            except Cancelled as err:
                future.set_exception(err)

        ref.future().add_done_callback(finished)
        return future

    def _start(self, objective, params: dict, relay, key: str):
        if self.stopping:
            self.release()
            raise Cancelled
        ref = self._task.remote(objective, params, relay, key, max(1, int(self.num_cpus)))
        self._in_flight.add(ref)
        return ref

    def _result(self, get, params: dict) -> Evaluation:
        """The trial's Evaluation (`get()` returns it); a task that failed (its worker killed, an error
        outside the trainer's own handling) is a failed trial, unless we are stopping: then Cancelled."""
        try:
            return get()
        except ray.exceptions.RayError as err:
            if isinstance(getattr(err, "cause", None), KeyboardInterrupt):
                raise Cancelled from None  # Ctrl-C in a terminal reaches Ray's workers too
            if not self.stopping:
                time.sleep(0.5)  # and they may fail before this process's own SIGINT handler has run
            if self.stopping:
                raise Cancelled from None
            message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            return Evaluation(params, 0.0, "failed", extra={"error": f"{type(err).__name__}: {message}"})

    def _report_relay(self):
        with self._relay_lock:
            if self._relay is None:
                self._relay = ray.remote(ReportRelay).options(num_cpus=0, max_concurrency=1000).remote()
            return self._relay

    def _serve_reports(self, ref, relay, key: str, report: ReportHook) -> None:
        asked = relay.next_report.remote(key)
        while True:
            ready, _ = ray.wait([ref, asked], num_returns=1)
            if ready[0] != asked:
                return  # the trial ended
            got = ray.get(asked)
            if got is None:
                return
            relay.answer.remote(key, bool(report(*got)))
            asked = relay.next_report.remote(key)

    # ------------------------------------------------------------ stopping

    def cancel(self) -> None:
        super().cancel()
        for ref in list(self._in_flight):
            ray.cancel(ref, force=True)

    def close(self) -> None:
        if ray.is_initialized():
            ray.shutdown()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
