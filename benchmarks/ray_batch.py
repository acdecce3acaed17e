"""Images per second of ``explain ... --out DIR --ray`` with 1 and 2 workers, against the plain batch command.

Each configuration explains the same phantoms (``scripts/make_phantoms.py``) with the bundled demo
model into a fresh folder, as a whole process, as a user runs it. Two rates come of each run:

- whole command: images over the wall time of the process, start-up included (Python, torch, the
  model, and for Ray the local instance and its workers);
- steady: images per second while results come in, from the times the records were written
  (the first to the last), which is what a long run on a cluster approaches.

Ratios are against the plain batch command. Every process runs torch on one thread
(``OMP_NUM_THREADS=1``, which Ray passes on to its workers) unless ``--threads`` says otherwise, so
that the figures compare workers and not how badly two threads fare on a machine others share:
the plain command and one worker use one core, two workers use both. Each command starts in a
session of its own, as Ray's workers do: where Linux groups the CPU by session (autogroup), a
process left in a busy shell's session would get a smaller share than Ray's workers.

Last, the driver's own cost per image, which decides how many workers one driver can keep busy:
the same dispatch loop (:class:`cli.ray_batch.WorkerPool`) hands the phantoms' jobs to workers that
do no work, and the driver process's CPU time (all its threads, Ray's included) is divided by the
images, with the bytes of a job and of a row that travel each way.

    .venv/bin/python benchmarks/ray_batch.py [--count 32] [--rows 512] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("--method", "occlusion", "--window", "32", "--stride", "8", "--no-trust", "--batch-size", "32")


@dataclass(frozen=True)
class Figures:
    """One run: its wall time and the two rates."""

    label: str
    images: int
    wall: float
    steady: float
    #: Mean seconds of one image's explanation itself (its record's ``elapsed``).
    explaining: float

    @property
    def whole(self) -> float:
        return self.images / self.wall


def make_phantoms(folder: Path, count: int, rows: int) -> Path:
    """``count`` phantoms of ``rows`` rows, the DICOM files alone in ``folder/in``."""
    made = folder / "made"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_phantoms.py"), "--out", str(made), "--count",
                    str(count), "--seed", "2026", "--rows", str(rows)], check=True, capture_output=True)
    inputs = folder / "in"
    inputs.mkdir()
    for phantom in made.glob("*.dcm"):
        phantom.rename(inputs / phantom.name)
    return inputs


def run(label: str, inputs: Path, out: Path, threads: str, *extra: str) -> Figures:
    """One batch command into a fresh folder, timed as a whole process."""
    started = time.perf_counter()
    environment = {**os.environ, "OMP_NUM_THREADS": threads} if threads else None
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", str(inputs), *SETTINGS, "--out",
                             str(out), *extra], capture_output=True, text=True, cwd=ROOT, env=environment,
                            start_new_session=True)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{label} failed ({result.returncode}): {result.stderr.strip().splitlines()[-1:]}")
    records = [path for path in out.glob("*.json") if path.name != "batch.json"]
    written = sorted(path.stat().st_mtime for path in records)
    explaining = statistics.mean(json.loads(path.read_text())["elapsed"] for path in records)
    return Figures(label, len(records), wall, (len(records) - 1) / (written[-1] - written[0]), explaining)


class NoWork:
    """A worker that explains nothing: what is left of a call is the driver's and Ray's own cost."""

    def ready(self) -> str:
        return ""

    def explain(self, job, settled: bool) -> dict:
        return {**job.source(), "status": "done", "target": "effusion", "score": 0.5, "elapsed": 0.0}


def driver_cost(inputs: Path, images: int, workers: int) -> tuple[float, float, int, int]:
    """Driver CPU seconds per image and images per second, with no work done; bytes of a job and of a row."""
    import ray

    sys.path.insert(0, str(ROOT))
    from cli.batch import plan_run
    from cli.ray_batch import Task, WorkerPool

    _errors, jobs = plan_run(argparse.Namespace(paths=[str(inputs)]))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        actors = [ray.remote(NoWork).options(num_cpus=1).remote() for _ in range(workers)]
        ray.get([actor.ready.remote() for actor in actors])
        tasks = [Task(index, jobs[index % len(jobs)]) for index in range(images)]
        cpu, wall = time.process_time(), time.perf_counter()
        rows = [row for _task, row in WorkerPool(ray, actors).results(tasks, print)]
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        ray.shutdown()
    return cpu / images, images / wall, len(pickle.dumps(jobs[0])), len(pickle.dumps(rows[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=32, help="phantoms to explain (default 32)")
    parser.add_argument("--rows", type=int, default=512, help="their height in pixels (default 512)")
    parser.add_argument("--threads", default="1",
                        help="OMP_NUM_THREADS of every process; empty for torch's and Ray's own choice (default 1)")
    parser.add_argument("--calls", type=int, default=2000, help="images handed out to idle workers (default 2000)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        inputs = make_phantoms(folder, args.count, args.rows)
        runs = [run("plain batch", inputs, folder / "plain", args.threads),
                run("--ray, 1 worker", inputs, folder / "ray1", args.threads, "--ray", "--workers", "1"),
                run("--ray, 2 workers", inputs, folder / "ray2", args.threads, "--ray", "--workers", "2")]
        read = sum(path.stat().st_size for path in inputs.iterdir()) / args.count
        written = sum(path.stat().st_size for path in (folder / "plain").iterdir()
                      if path.name not in ("batch.json", "summary.csv")) / args.count
        cpu, rate, job_bytes, row_bytes = driver_cost(inputs, args.calls, 2)
    print(f"{args.count} phantoms of {args.rows} rows, demo model, occlusion {' '.join(SETTINGS[2:])}; "
          f"{os.cpu_count()} cores, OMP_NUM_THREADS={args.threads or 'unset'}")
    print(f"{'':18} {'wall s':>7} {'images/s whole':>15} {'images/s steady':>16} {'ratio whole':>12} "
          f"{'ratio steady':>13} {'s explaining':>13}")
    plain = runs[0]
    for figures in runs:
        print(f"{figures.label:18} {figures.wall:7.1f} {figures.whole:15.2f} {figures.steady:16.2f} "
              f"{figures.whole / plain.whole:12.2f} {figures.steady / plain.steady:13.2f} {figures.explaining:13.3f}")
    print(f"driver, workers doing nothing: {cpu * 1e3:.2f} ms of driver CPU per image ({1 / cpu:.0f} images/s "
          f"for one driver core), {rate:.0f} images/s with 2 workers; {job_bytes} bytes out and "
          f"{row_bytes} bytes back per image")
    print(f"storage per image: {read / 1e3:.0f} kB read by a worker, {written / 1e3:.0f} kB written (npz and record)")


if __name__ == "__main__":
    main()
