"""How responsive the viewer stays while an explanation runs in the background.

A 10 ms timer on the GUI thread measures how late each tick fires (the event-loop latency a
reader feels as lag), and every tick also performs one window/level step with a repaint, as a
drag would. Both are measured with the viewer idle and while occlusion runs on the demo model
over the demo study, in one run; the ratio says what the explanation costs the reader.

    .venv/bin/python benchmarks/ui_latency.py [--seconds 6] [--model M.pt2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from explain.heap import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as main.py does, before Qt and torch start threads

TICK_MS = 10


def tick_lateness(app, seconds: float, keep_going, on_tick=None) -> list[float]:
    """How late, in ms, each tick of a 10 ms GUI-thread timer fires, for ``seconds`` or until done.

    ``on_tick``, when given, runs at every tick, as the work a reader's input would cause.
    """
    from PySide6.QtCore import QElapsedTimer, QTimer

    lateness = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]
    timer = QTimer()
    timer.setInterval(TICK_MS)

    def tick() -> None:
        now = clock.elapsed()
        lateness.append(max(now - last[0] - TICK_MS, 0))
        last[0] = now
        if on_tick is not None:
            on_tick()

    timer.timeout.connect(tick)
    timer.start()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline and keep_going():
        app.processEvents()
    timer.stop()
    return lateness


def measure(app, view, seconds: float, keep_going) -> tuple[list[float], list[float]]:
    """Tick lateness and window/level repaint time, in ms, for ``seconds`` or until done."""
    repaint = []

    def window_level() -> None:
        started = time.perf_counter()
        view.adjust_window(1 if len(repaint) % 20 < 10 else -1, 0)
        view.viewport().repaint()
        repaint.append((time.perf_counter() - started) * 1000)

    return tick_lateness(app, seconds, keep_going, window_level), repaint


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):5.1f} ms, p95 {np.percentile(values, 95):5.1f} ms, max {max(values):5.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--model", type=Path, help="a .pt2 with its card (default: the demo model)")
    args = parser.parse_args()

    from PySide6.QtCore import QSettings

    from dicom.bundled import DEMO_MODEL, DEMO_STUDY
    from viewer.app import application
    from viewer.explain_worker import engine_threads
    from viewer.explanation_ui import ExplanationUi
    from viewer.main_window import MainWindow

    app = application()
    with tempfile.TemporaryDirectory() as scratch:
        window = MainWindow(settings=QSettings(str(Path(scratch) / "s.ini"), QSettings.Format.IniFormat))
        ui = ExplanationUi(window, args.model or DEMO_MODEL)
        window.resize(1400, 900)
        window.show()
        window.open_paths([DEMO_STUDY])
        window.browser.wait_for_thumbnails()
        idle = measure(app, window.view, args.seconds, lambda: True)
        editors = ui.panel.forms.currentWidget().editors
        editors["window"].setValue(8)
        editors["stride"].setValue(2)  # about 12,000 windows: long enough to measure under load
        ui.explain()
        busy = measure(app, window.view, args.seconds, lambda: ui.controller.busy)
        ui.cancel()
        ui.shutdown()
        window.close()

    print(f"event-loop latency and window/level repaint, {TICK_MS} ms ticks; torch threads {engine_threads()}"
          f" of {os.cpu_count()} cores")
    print(f"  idle:      lateness {summary(idle[0])}; repaint {summary(idle[1])}")
    print(f"  explaining lateness {summary(busy[0])}; repaint {summary(busy[1])}")
    print(f"  ratio explaining / idle: lateness p95 {np.percentile(busy[0], 95) / max(np.percentile(idle[0], 95), 1):.2f},"
          f" repaint median {statistics.median(busy[1]) / statistics.median(idle[1]):.2f}")


if __name__ == "__main__":
    main()
