"""How responsive the viewer stays while a reader scrolls through a CT series with a model loaded.

The label probabilities of the image on show are scored on a worker thread, so a model as big as
DenseNet-121 should cost the reader no more lag than the small demo model. For each model, a
fresh main window opens a 120-slice CT series (512 x 512), then steps through every slice at a
steady pace, and waits at the last slice until its probabilities are in the target list. A 10 ms
timer on the GUI thread measures how late each tick fires throughout (the event-loop latency a
reader feels as lag). Two paces by default: a slice every 40 ms, as a held arrow key or a turning
wheel, where the viewer scores only the slice the reader stops at (it waits 150 ms after the last
change), and a slice every 200 ms, slow enough that the viewer starts scoring each slice as the reader
moves on, so the model runs all through the scroll. Beside the lateness: the GUI thread's time
in each step, how many scores reached the panel, the longest Python garbage collection during the
run (a full one holds the GIL for hundreds of milliseconds in a process with torch loaded, so it
stalls the GUI thread whichever thread runs it) and how long after the last step the last slice's
probabilities appeared.

    .venv/bin/python benchmarks/scroll_latency.py [--slices 120] [--size 512] [--pace-ms 40 200] [--densenet DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from explain.heap import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as main.py does, before Qt and torch start threads

from benchmarks.ui_latency import TICK_MS, tick_lateness  # noqa: E402

#: A probability beside a label, as the target list shows it: ``effusion  (0.42)``.
SCORED = re.compile(r"\(\d+\.\d+\)")
#: Give up waiting for the last slice's probabilities after this long.
SETTLE_TIMEOUT_S = 60.0


@dataclass
class Run:
    """What one model's scroll cost the GUI thread."""

    model: str
    pace_ms: int
    lateness: list[float]  # ms, every tick from the first step until the probabilities are in
    steps: list[float]  # ms the GUI thread spent in each window.step(1)
    scores: int  # scoring results that reached the panel during the scroll and the wait
    collections: list[float]  # ms of each Python garbage collection meanwhile (any thread; all hold the GIL)
    to_probabilities: float | None  # s from the last step until the last slice's probabilities show


def scored(ui) -> bool:
    """Every label in the target list shows a probability, none says it is pending."""
    target = ui.panel.target
    texts = [target.itemText(i) for i in range(target.count())]
    return bool(texts) and all(SCORED.search(text) and "scoring…" not in text for text in texts)


def settled(ui) -> bool:
    """The image on show is scored and nothing more is waiting or running."""
    return scored(ui) and not ui.scoring.busy and not ui._probabilities_timer.isActive()


def scroll(app, folder: Path, model_path: Path, name: str, pace_ms: int) -> Run:
    """Open the series with the model, step through every slice every ``pace_ms``, wait for the scores."""
    from PySide6.QtCore import QSettings, QTimer

    from viewer.explanation_ui import ExplanationUi
    from viewer.main_window import MainWindow

    with tempfile.TemporaryDirectory() as scratch:
        window = MainWindow(settings=QSettings(str(Path(scratch) / "s.ini"), QSettings.Format.IniFormat))
        ui = ExplanationUi(window, model_path)
        window.resize(1200, 800)
        window.show()
        window.open_paths([folder])
        window.browser.wait_for_thumbnails()
        slices = len(window.current_series.frames)
        # the first slice scored (and the model warmed up) before the reader starts scrolling, and
        # the garbage of loading it (and of any run before) collected, so that it is not this run's
        tick_lateness(app, SETTLE_TIMEOUT_S, lambda: not settled(ui))
        gc.collect()
        collections, collecting = [], [0.0]

        def timed_collection(phase: str, _info: dict) -> None:
            if phase == "start":
                collecting[0] = time.perf_counter()
            else:
                collections.append((time.perf_counter() - collecting[0]) * 1000)

        gc.callbacks.append(timed_collection)

        scores, steps, arrivals = [0], [], []
        last_step = [0.0]
        ui.scoring.finished.connect(lambda *_: scores.__setitem__(0, scores[0] + 1))
        # every change of the target list's text; the last change into "scored" is when they appeared
        ui.panel.target.model().dataChanged.connect(lambda *_: scored(ui) and arrivals.append(time.perf_counter()))

        pace = QTimer()
        pace.setInterval(pace_ms)

        def step() -> None:
            started = time.perf_counter()
            window.step(1)
            last_step[0] = time.perf_counter()
            steps.append((last_step[0] - started) * 1000)
            if window.frame_index == slices - 1:
                pace.stop()

        pace.timeout.connect(step)
        pace.start()
        lateness = tick_lateness(app, slices * pace_ms / 1000 + SETTLE_TIMEOUT_S,
                                 lambda: pace.isActive() or not settled(ui))
        pace.stop()
        gc.callbacks.remove(timed_collection)
        after = [t - last_step[0] for t in arrivals if t >= last_step[0]]
        to_probabilities = after[-1] if after and settled(ui) else None

        ui.shutdown()
        window.browser.shutdown()
        window.close()
        window.deleteLater()
        app.processEvents()
    return Run(name, pace_ms, lateness, steps, scores[0], collections, to_probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=120)
    parser.add_argument("--size", type=int, default=512, help="rows and columns of each slice")
    parser.add_argument("--pace-ms", type=int, nargs="+", default=[40, 200], help="one slice this often; each pace a run")
    parser.add_argument("--densenet", type=Path, help="a folder to keep the DenseNet-121 export in (default: a temp one)")
    args = parser.parse_args()

    from benchmarks.densenet import export_densenet
    from dicom.bundled import DEMO_MODEL
    from tests.dicom_factory import write_ct_series
    from viewer.app import application
    from viewer.explain_worker import engine_threads

    app = application()
    runs = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "ct"
        write_ct_series(folder, args.slices, rows=args.size, cols=args.size)
        cache = args.densenet or Path(scratch) / "densenet"
        densenet = cache / "densenet121.pt2"
        if not densenet.exists() or not densenet.with_suffix(".json").exists():
            started = time.perf_counter()
            densenet = export_densenet(cache)
            print(f"exported DenseNet-121 in {time.perf_counter() - started:.1f} s")
        for pace in args.pace_ms:
            for name, path in (("demo (effusion_demo)", DEMO_MODEL), ("DenseNet-121", densenet)):
                runs.append(scroll(app, folder, path, name, pace))

    print(f"scrolling {args.slices} CT slices of {args.size} x {args.size}, then waiting for the last slice's"
          f" probabilities; {TICK_MS} ms ticks; torch threads {engine_threads()} of {os.cpu_count()} cores")
    print(f"  {'model':<22} {'pace':>6}   {'lateness p50':>12} {'p95':>8} {'max':>8}   {'step p50':>8} {'max':>8}"
          f"   {'scores':>6}   {'longest GC':>10}   {'probabilities after last step':>29}")
    for run in runs:
        arrival = f"{run.to_probabilities * 1000:.0f} ms" if run.to_probabilities is not None else "never"
        print(f"  {run.model:<22} {run.pace_ms:3d} ms   {statistics.median(run.lateness):9.1f} ms"
              f" {np.percentile(run.lateness, 95):5.1f} ms {max(run.lateness):5.1f} ms"
              f"   {statistics.median(run.steps):5.1f} ms {max(run.steps):5.1f} ms"
              f"   {run.scores:>6}   {max(run.collections, default=0):7.1f} ms   {arrival:>29}")
    for pace in args.pace_ms:
        demo, dense = (np.percentile(run.lateness, 95) for run in runs if run.pace_ms == pace)
        print(f"  ratio DenseNet-121 / demo at {pace} ms: lateness p95 {dense:.1f} / {demo:.1f} ms ="
              f" {dense / max(demo, 1):.2f} (target: p95 under 50 ms and no worse than with the demo model;"
              f" lateness is in whole ms)")


if __name__ == "__main__":
    main()
