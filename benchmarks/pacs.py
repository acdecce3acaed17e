"""Retrieve from a PACS: the first image against the whole series, and our C-GET against dcmtk's ``getscu``.

A private Orthanc (``tests/pacs/orthanc.py``) is loaded with a CT series of 512 x 512 16-bit slices
written by the test factory, then, in one run:

(a) Our client's streaming retrieve, the viewer's path without its window: C-GET into the cache,
    each instance handed to ``on_instance`` as it is written; the first call opens its folder and
    decodes and renders that slice (what the viewer shows first). Against it: the whole retrieve,
    and the whole retrieve followed by opening the series, the way a client without streaming works.
(b) Throughput of our C-GET (into the cache: temporary name, then rename) against ``getscu`` (into
    a folder), on the same study from the same Orthanc, alternated, the median of ``--repeats``.

Both ends disable Nagle's algorithm (ours in pacs/dimse.py, Orthanc and getscu through DCMTK's
``TCP_NODELAY``); both accept PDUs of about 16 KiB, their defaults.

    .venv/bin/python benchmarks/pacs.py [--slices 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # not benchmarks/, whose pacs.py (this file) would hide the pacs package

from benchmarks.first_image import lightbox_first_image  # noqa: E402
from pacs.cache import Cache  # noqa: E402
from pacs.dimse import DimseClient  # noqa: E402
from pacs.nodes import Node  # noqa: E402
from tests.dicom_factory import write_ct_series  # noqa: E402
from tests.pacs.orthanc import DICOM_AET, Orthanc, start_orthanc  # noqa: E402

STUDY = "1.2.826.0.1.3680043.8.498.5005"


@dataclass
class Streamed:
    """One streaming retrieve: seconds from its start to the first image shown, its end, and the series opened."""

    first_image: float
    retrieved: float
    opened: float


def node_of(orthanc: Orthanc) -> Node:
    return Node(name="bench", ae_title=DICOM_AET, host="127.0.0.1", port=orthanc.dicom_port, timeout=60.0)


def load(orthanc: Orthanc, folder: Path, slices: int) -> int:
    """Store the CT series into Orthanc over one association; its size in bytes."""
    paths = write_ct_series(folder, slices, rows=512, cols=512, study_uid=STUDY)
    results = DimseClient(node_of(orthanc)).send(paths)
    if not all(result.ok for result in results):
        raise SystemExit(f"Orthanc did not take the series: {results[0].message}")
    return sum(path.stat().st_size for path in paths)


def streamed(orthanc: Orthanc, cache_root: Path) -> Streamed:
    """Our retrieve as the viewer runs it: the first slice shown from the callback, the series opened at the end."""
    shown: list[float] = []

    def on_instance(path: Path) -> None:
        if not shown:
            lightbox_first_image(path.parent)
            shown.append(time.perf_counter())

    cache = Cache(cache_root, 1 << 40)
    started = time.perf_counter()
    result = DimseClient(node_of(orthanc)).retrieve(cache, STUDY, on_instance=on_instance)
    retrieved = time.perf_counter()
    lightbox_first_image(cache.instances(STUDY)[0].parent)
    opened = time.perf_counter()
    if result.failed or not shown:
        raise SystemExit(f"the retrieve failed: {result}")
    return Streamed(shown[0] - started, retrieved - started, opened - started)


def ours(orthanc: Orthanc, cache_root: Path) -> float:
    """Seconds of our C-GET of the study into an empty cache."""
    started = time.perf_counter()
    DimseClient(node_of(orthanc)).retrieve(Cache(cache_root, 1 << 40), STUDY)
    return time.perf_counter() - started


def getscu(orthanc: Orthanc, folder: Path) -> float:
    """Seconds of dcmtk's getscu C-GET of the study into an empty folder."""
    folder.mkdir()
    command = ["getscu", "-S", "-aet", "LIGHTBOX", "-aec", DICOM_AET, "127.0.0.1", str(orthanc.dicom_port),
               "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={STUDY}", "-od", str(folder)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "TCP_NODELAY": "1"})
    return time.perf_counter() - started


def fresh(scratch: Path, name: str) -> Path:
    """An empty path under ``scratch``: what an earlier run left there is removed."""
    path = scratch / name
    shutil.rmtree(path, ignore_errors=True)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("getscu") is None:
        raise SystemExit("getscu is not installed (Debian: dcmtk; scripts/setup installs it as root)")
    with tempfile.TemporaryDirectory() as name:
        scratch = Path(name)
        orthanc = start_orthanc(scratch / "orthanc")
        try:
            size = load(orthanc, scratch / "series", args.slices)
            streams, our_times, their_times = [], [], []
            for _ in range(args.repeats):
                streams.append(streamed(orthanc, fresh(scratch, "streamed")))
                our_times.append(ours(orthanc, fresh(scratch, "ours")))
                their_times.append(getscu(orthanc, fresh(scratch, "getscu")))
        finally:
            orthanc.stop()
    report(args, size, streams, our_times, their_times)


def report(args: argparse.Namespace, size: int, streams: list[Streamed], ours_s: list[float],
           theirs_s: list[float]) -> None:
    first, whole, opened = (statistics.median(getattr(run, field) for run in streams)
                            for field in ("first_image", "retrieved", "opened"))
    print(f"{args.slices} CT slices of 512 x 512, 16-bit ({size / 1e6:.0f} MB), from Orthanc over C-GET, "
          f"median of {args.repeats} alternating runs")
    print(f"  (a) first image shown while streaming: {first:6.3f} s")
    print(f"      whole retrieve:                    {whole:6.3f} s   first / whole       {first / whole:6.3f}")
    print(f"      whole retrieve, then opened:       {opened:6.3f} s   first / then-opened {first / opened:6.3f}")
    ours, theirs = statistics.median(ours_s), statistics.median(theirs_s)
    for label, seconds in (("Lightbox C-GET", ours), ("dcmtk getscu ", theirs)):
        print(f"  (b) {label}: {seconds:6.3f} s, {args.slices / seconds:6.1f} images/s, {size / seconds / 1e6:6.1f} MB/s")
    print(f"      ratio Lightbox / getscu in time:   {ours / theirs:6.3f}")


if __name__ == "__main__":
    main()
