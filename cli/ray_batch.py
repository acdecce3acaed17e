"""``main.py explain PATH ... --out DIR --ray [ADDRESS]``: the batch command on a Ray cluster.

The driver (this process) does what needs one view of the whole run: it plans the jobs, holds
and claims the output folder (:func:`cli.batch.run_batch`), keeps the one progress bar and writes
the summary. Each worker slot (a GPU, or a share of the CPU cores) is one Ray actor that loads
the model once and explains one image per call: it reads the file where it runs, and writes the
results into the shared folder itself with the batch command's own atomic writers, the record
last. Results never travel through the driver, so its load per image is a job out and a summary
row back, whatever the size of the maps.

An image's name depends on the names other images of the run took (:func:`cli.batch.settle`)
only when they share a UID; so a worker settles the names of the others itself, and the driver
settles those few in plan order, exactly as a run on one machine does.

A worker that dies while explaining an image (killed, out of memory) has that image tried again
on another worker; an image whose worker died :data:`ATTEMPTS` times is failed with that reason.
Ray is imported here alone, and only when ``--ray`` is given: it is the ``cluster`` extra.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cli.batch import (
    Job,
    Tally,
    file_sha256,
    finish,
    image_row,
    is_result_file,
    one_line,
    plan_run,
    progress_bar,
    read_small_json,
    run_batch,
    settle,
)
from cli.explain_outputs import WriteError, remove_temporaries
from cli.image_explanation import CommandError, prepare
from explain.heap import keep_freed_memory
from explain.session import ExplanationSettings

#: How many times an image is given to a worker that then dies, before it counts as failed.
ATTEMPTS = 3
#: How many times Ray brings a worker back after it died, before its slot is given up.
RESTARTS = 3
#: Cores per worker where the cluster has no GPU: torch uses several threads per explanation.
CPUS_PER_WORKER = 4
#: Seconds between asking a worker that is coming back whether it is ready.
PROBE_INTERVAL = 0.5
#: Seconds to wait for a cluster's head node to answer at all.
REACH_TIMEOUT = 10
INSTALL_LINE = "--ray needs Ray, the cluster extra: pip install -e '.[cluster]'"


def run_ray_batch(args: argparse.Namespace) -> int:
    """Explain every image under ``args.paths`` into ``args.out`` on a Ray cluster; the exit status.

    CommandError (one line) without Ray, when the cluster cannot be joined, or when no worker
    can load the model.
    """
    ray = import_ray()
    settings = prepare(argparse.Namespace(**{**vars(args), "device": "cpu"}))  # the folder's settings only
    connect(ray, args.ray)
    try:
        return run_batch(args, settings, into=functools.partial(explain_on_cluster, ray))
    finally:
        ray.shutdown()


def import_ray() -> ModuleType:
    """Ray, or CommandError with the line that says how to install it."""
    try:
        import ray
    except ImportError:
        raise CommandError(INSTALL_LINE) from None
    return ray


def connect(ray: ModuleType, address: str) -> None:
    """Start a local Ray instance (``local``) on 127.0.0.1, or join the cluster at ``address``.

    Ray's own notices are kept off stdout, which carries JSON lines with ``--json``, and its
    usage statistics are not sent: nothing goes to the network but the cluster itself.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    quiet_worker_deaths(ray)
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    if address == "local":
        options |= {"num_cpus": os.cpu_count() or 1, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
    else:
        check_reachable(address)
    try:
        ray.init(address=address, **options)
    except Exception as error:  # Ray raises ConnectionError, RuntimeError, ValueError...
        raise CommandError(f"cannot {'start Ray' if address == 'local' else f'join the Ray cluster at {address}'}: "
                           f"{first_line(error)}") from None


def check_reachable(address: str) -> None:
    """CommandError now when nothing answers at a ``HOST:PORT``, where Ray would retry for minutes.

    Other addresses (``auto``, ``ray://...``) are left to Ray.
    """
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT).close()
    except OSError as error:
        raise CommandError(f"cannot join the Ray cluster at {address}: {error.strerror or error}") from None


def quiet_worker_deaths(ray: ModuleType) -> None:
    """Keep Ray from printing its notice of each dead worker on stdout: the driver reports them itself."""
    worker = sys.modules.get("ray._private.worker")
    if worker is not None and hasattr(worker, "listen_error_messages"):
        worker.listen_error_messages = lambda *_args, **_kwargs: None


def first_line(error: BaseException) -> str:
    """The first non-empty line of an error, for the one-line messages."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class ImageWorker:
    """One worker slot's process: the model loaded once, then one image per call.

    A worker that cannot load the model says why from :meth:`ready` rather than dying, so that
    the driver can report it in one line.
    """

    def __init__(self, args: argparse.Namespace, cwd: str) -> None:
        keep_freed_memory()
        with_cwd(cwd)
        self.args, self.folder = args, Path(args.out)
        self.digest_of = functools.cache(file_sha256)  # one worker reads a multi-frame file once
        try:
            self.settings: ExplanationSettings | None = prepare(args)
            self.error = ""
        except Exception as error:  # told to the driver in one line, not a traceback in Ray's logs
            self.settings, self.error = None, one_line(error)

    def ready(self) -> str:
        """Empty when the model is loaded, else why not."""
        return self.error

    def explain(self, job: Job, settled: bool) -> dict:
        """The image's summary row, its results written; ``settled`` when the driver chose its name.

        A folder that refuses a file comes back as a row of status ``refused``: the driver ends
        the run with it, as the batch command does.
        """
        assert self.settings is not None, "an image was given to a worker that could not load the model"
        claim = (lambda: (job, own_record(job, self.folder))) if settled else (
            lambda: settle(dataclasses.replace(job, digest=self.digest_of(job.frame.path)), self.folder, set()))
        try:
            return image_row(job, claim, self.folder, self.args, self.settings)
        except WriteError as error:
            return {**job.source(), "status": "refused", "error": str(error)}


def with_cwd(cwd: str) -> None:
    """Work in the driver's folder where this node has it, so that relative paths mean the same."""
    try:
        os.chdir(cwd)
    except OSError:
        pass  # a node without it reads absolute paths only; relative ones fail as missing files


def own_record(job: Job, folder: Path) -> dict | None:
    """The record under the job's name if it was made from this very image (see :meth:`Job.made`)."""
    record = read_small_json(job.record_path(folder))
    return record if job.made(record) and isinstance(record, dict) else None


@dataclass
class Task:
    """A job on its way through the cluster: where it is in the plan and the workers it killed."""

    index: int
    job: Job
    settled: bool = False
    deaths: list[str] = field(default_factory=list)
    avoid: set[int] = field(default_factory=set)


def explain_on_cluster(ray: ModuleType, folder: Path, args: argparse.Namespace,
                       settings: ExplanationSettings) -> int:
    """Explain every image into a folder that is ready, on the cluster's workers; the exit status.

    The rows come back in the order the workers finish; the summary lists them in plan order,
    as a run on one machine does.
    """
    errors, jobs = plan_run(args)
    tally = Tally(args.json)
    tally.add_errors(errors)
    tasks, early = settle_shared_names(jobs, folder)
    rows: dict[int, dict] = {}
    with progress_bar(settings, len(jobs)) as bar:
        for index, row in early.items():
            rows[index] = row
            tally.add(row)
            tally.show(bar)
        warn = functools.partial(bar.write, file=sys.stderr)  # tqdm writes to stdout by default
        pool = WorkerPool(ray, start_workers(ray, args, warn) if tasks else [])
        for task, row in pool.results(tasks, warn):
            rows[task.index] = row
            tally.add(row)
            tally.show(bar)
    remove_temporaries(folder, is_result_file)  # what a worker killed mid-write left
    tally.rows[len(errors):] = [rows[index] for index in sorted(rows)]
    return finish(folder, tally)


def settle_shared_names(jobs: list[Job], folder: Path) -> tuple[list[Task], dict[int, dict]]:
    """The tasks for the workers, and the rows of images that failed already.

    Images that share a UID (copies, a UID reused) are named here, in plan order, exactly as
    :func:`cli.batch.run_job` names them; the driver reads those few files to do so. Every other
    image's name is its worker's to settle, as nothing else in the run can take it.
    """
    counts = collections.Counter(job.name for job in jobs)
    claimed: set[str] = set()
    digest_of = functools.cache(file_sha256)
    tasks: list[Task] = []
    failed: dict[int, dict] = {}
    for index, job in enumerate(jobs):
        if counts[job.name] == 1:
            tasks.append(Task(index, job))
            continue
        try:
            named, _record = settle(dataclasses.replace(job, digest=digest_of(job.frame.path)), folder, claimed)
        except Exception as error:  # as in run_job: the image's own failure
            failed[index] = {**job.source(), "status": "failed", "error": one_line(error)}
            continue
        tasks.append(Task(index, named, settled=True))
    return tasks, failed


def start_workers(ray: ModuleType, args: argparse.Namespace, warn: Callable[[str], None]) -> list[Any]:
    """One actor per worker slot, each with the model loaded; CommandError when none could load it."""
    count, options = worker_slots(ray, args)
    remote = ray.remote(ImageWorker).options(max_restarts=RESTARTS, max_task_retries=0, **options)
    actors = [remote.remote(for_workers(args), os.getcwd()) for _ in range(count)]
    reasons = [worker_error(ray, actor) for actor in actors]
    ready = [actor for actor, reason in zip(actors, reasons) if not reason]
    if not ready:
        raise CommandError(f"no Ray worker could start: {reasons[0]}")
    for reason in dict.fromkeys(reason for reason in reasons if reason):
        warn(f"warning: a Ray worker could not start, the run goes on without it: {reason}")
    return ready


def worker_error(ray: ModuleType, actor: Any) -> str:
    """Why a worker cannot explain images: empty when it can."""
    try:
        return ray.get(actor.ready.remote())
    except ray.exceptions.RayError as error:
        return first_line(error)


def worker_slots(ray: ModuleType, args: argparse.Namespace) -> tuple[int, dict]:
    """How many workers, and the resources each holds: a GPU each, or a share of the CPU cores.

    More workers than GPUs (or cores) share them, so that every worker can be placed. Ray sets
    each CPU worker's thread count (``OMP_NUM_THREADS``) to its share of cores.
    """
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0)) if args.device in ("auto", "cuda") else 0
    if gpus:
        count = args.workers or gpus
        return count, {"num_gpus": share(gpus, count), "num_cpus": 1}
    cpus = max(1, int(resources.get("CPU", 1)))
    count = args.workers or max(1, cpus // CPUS_PER_WORKER)
    return count, {"num_cpus": share(cpus, count)}


def share(units: int, workers: int) -> float:
    """Each worker's share of ``units`` GPUs or cores: whole ones while there are enough."""
    return units // workers if workers <= units else units / workers


def for_workers(args: argparse.Namespace) -> argparse.Namespace:
    """The options as a worker needs them: the model and folder by absolute path, no cluster of its own."""
    return argparse.Namespace(**{**vars(args), "model": Path(args.model).resolve(), "out": Path(args.out).resolve(),
                                 "ray": None})


class WorkerPool:
    """The workers, each given one image at a time, and brought back into use after Ray restarts them.

    One image at a time per worker costs a round trip per image (milliseconds, against seconds
    of explanation) and means that when a worker dies, the image it died on is known.
    """

    def __init__(self, ray: ModuleType, actors: list[Any]) -> None:
        self.ray, self.actors = ray, actors
        self.free = collections.deque(range(len(actors)))
        self.deaths = [0] * len(actors)
        self.running: dict[Any, tuple[Task, int]] = {}
        self.probes: dict[Any, int] = {}
        self.waiting: dict[int, float] = {}  # slot -> when to ask again whether it is back

    def results(self, tasks: list[Task], warn: Callable[[str], None]) -> Iterator[tuple[Task, dict]]:
        """Each task with its row, as they finish; tasks whose workers died are given to another."""
        pending = collections.deque(tasks)
        while pending or self.running:
            self.dispatch(pending)
            if not self.running and not self.probes and not self.waiting:
                yield from ((task, lost_row(task)) for task in pending)  # every worker is gone
                return
            for ref in self.finished():
                if ref in self.probes:
                    self.probed(ref)
                    continue
                task, slot = self.running.pop(ref)
                row = self.outcome(ref, task, slot, warn)
                if row is None:
                    pending.appendleft(task)
                else:
                    yield task, row
            self.probe_due()

    def finished(self) -> list[Any]:
        """The calls that have come back, after at most :data:`PROBE_INTERVAL` seconds."""
        refs = [*self.running, *self.probes]
        if not refs:  # only workers Ray is bringing back
            time.sleep(PROBE_INTERVAL)
            return []
        return self.ray.wait(refs, num_returns=1, timeout=PROBE_INTERVAL)[0]

    def dispatch(self, pending: collections.deque[Task]) -> None:
        """Give each free worker the first pending image that has not killed it before.

        A worker keeps waiting rather than take an image that killed it, unless no other live
        worker could take that image.
        """
        for _ in range(len(self.free)):
            if not pending:
                return
            slot = self.free.popleft()
            task = next((task for task in pending if slot not in task.avoid), None)
            if task is None and not self.live_slots() <= pending[0].avoid:
                self.free.append(slot)
                continue
            task = task or pending[0]
            pending.remove(task)
            self.running[self.actors[slot].explain.remote(task.job, task.settled)] = (task, slot)

    def live_slots(self) -> set[int]:
        """The workers that are up, or that Ray is bringing back."""
        return {slot for slot, deaths in enumerate(self.deaths) if deaths <= RESTARTS}

    def outcome(self, ref: Any, task: Task, slot: int, warn: Callable[[str], None]) -> dict | None:
        """The task's row; None when its worker died and it is to be tried again."""
        try:
            row = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as error:  # the call itself raised: not worth another try
            self.free.append(slot)
            return {**task.job.source(), "status": "failed", "error": one_line(error.cause or error)}
        except self.ray.exceptions.RayError as error:
            self.lost(slot)
            task.deaths.append(type(error).__name__)
            task.avoid.add(slot)
            if len(task.deaths) >= ATTEMPTS:
                return lost_row(task)
            warn(f"warning: a Ray worker died explaining {task.job.frame.path} ({type(error).__name__}); "
                 f"trying again on another (attempt {len(task.deaths) + 1} of {ATTEMPTS})")
            return None
        self.free.append(slot)
        if row["status"] == "refused":
            raise WriteError(row["error"])
        if task.deaths and row["status"] == "skipped":
            row["status"] = "done"  # a worker that died after the record was written did finish it
        return row

    def lost(self, slot: int) -> None:
        """A worker died: ask whether Ray has brought it back, unless it has died too often."""
        self.deaths[slot] += 1
        if self.deaths[slot] <= RESTARTS:
            self.waiting[slot] = time.monotonic() + PROBE_INTERVAL

    def probe_due(self) -> None:
        now = time.monotonic()
        for slot, due in list(self.waiting.items()):
            if due <= now:
                del self.waiting[slot]
                self.probes[self.actors[slot].ready.remote()] = slot

    def probed(self, ref: Any) -> None:
        """A restarted worker answered: back to work, or asked again later while it is still coming back."""
        slot = self.probes.pop(ref)
        try:
            reason = self.ray.get(ref)
        except self.ray.exceptions.ActorUnavailableError:
            self.waiting[slot] = time.monotonic() + PROBE_INTERVAL
            return
        except self.ray.exceptions.RayError:
            self.deaths[slot] = RESTARTS + 1  # gone for good
            return
        if reason:
            self.deaths[slot] = RESTARTS + 1
        else:
            self.free.append(slot)


def lost_row(task: Task) -> dict:
    """The row of an image no worker could finish: every worker it was given died, or none is left."""
    why = (f"the Ray worker explaining it died {len(task.deaths)} times ({', '.join(dict.fromkeys(task.deaths))})"
           if task.deaths else "no Ray worker is left")
    return {**task.job.source(), "status": "failed", "error": why}
