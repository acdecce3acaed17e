"""Running explanation sessions in a background thread and handing their steps to the GUI.

The adapter is thin on purpose: the engine knows nothing of Qt, the worker only turns each
:class:`~explain.session.Step` into a signal, and the controller on the GUI side keeps order. Every job is a frozen snapshot
tagged with a generation number; an update from an older generation (the user moved to another
image, series or model meanwhile) is dropped, so a stale map never lands on the wrong image.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot

from explain.engine import CancelToken
from explain.heap import give_back_freed_memory
from explain.session import Step

#: How often the overlay may be redrawn while updates stream in; later updates replace earlier.
REDRAW_INTERVAL_MS = 50


@dataclass(frozen=True, eq=False)
class Job:
    """Work for the background thread, built on the GUI thread from a snapshot of its choices.

    ``work(cancel)`` returns the session's steps; everything it needs is captured when the job
    is made, so the worker never reads a widget. ``kind`` names the work in a failure message
    until its first step says which stage is running.
    """

    generation: int
    kind: str
    work: Callable[[CancelToken], Iterator[Step]]


def engine_threads() -> int:
    """Threads for torch: all cores but one, so the GUI thread is never starved."""
    return max(1, (os.cpu_count() or 2) - 1)


class ExplainWorker(QObject):
    """Lives in the worker thread; runs one job at a time to its end or its cancellation."""

    updated = Signal(int, str, object)  # generation, stage, update
    failed = Signal(int, str)  # generation, one-line message
    stopped = Signal(int)  # generation; after the final update, a cancellation or a failure

    @Slot(object, object)
    def run(self, job: Job, cancel: CancelToken) -> None:
        """Run a job, unless it was superseded while it waited in the queue (latest request wins)."""
        if cancel.cancelled:
            self.stopped.emit(job.generation)
            return
        torch.set_num_threads(engine_threads())
        stage = job.kind
        try:
            for step in job.work(cancel):
                stage = step.stage
                self.updated.emit(job.generation, step.stage, step.update)
        except Exception as error:  # noqa: BLE001 - a user's model may fail in any way; say so in one line
            text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            self.failed.emit(job.generation, f"The {stage} failed: {text[:200]}")
        finally:
            give_back_freed_memory()
            self.stopped.emit(job.generation)


class ExplainController(QObject):
    """The GUI side: starts and cancels jobs, drops stale updates and throttles redraws.

    Signals carry only current-generation results: ``progressed`` for each partial update
    (at most one per redraw interval, the latest), ``finished`` once with the final update,
    each with its stage.
    """

    progressed = Signal(str, object)  # stage, update
    finished = Signal(str, object)  # stage, update
    failed = Signal(str)
    idle = Signal()
    _start = Signal(object, object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.generation = 0
        self._cancel = CancelToken()
        self._running: set[int] = set()
        self._pending: tuple[str, Any] | None = None
        self._thread = QThread()
        self._thread.setObjectName("explanation")
        self._worker = ExplainWorker()
        self._worker.moveToThread(self._thread)
        self._start.connect(self._worker.run)
        self._worker.updated.connect(self._on_update)
        self._worker.failed.connect(self._on_failed)
        self._worker.stopped.connect(self._on_stopped)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REDRAW_INTERVAL_MS)
        self._timer.timeout.connect(self._flush)
        self._thread.start()

    def next_generation(self) -> int:
        """Invalidate whatever runs now; the returned number tags the next job."""
        self.cancel()
        self.generation += 1
        return self.generation

    def start(self, job: Job) -> None:
        """Run a job made with :meth:`next_generation`; any older job is already cancelled."""
        if job.generation != self.generation:
            return
        self._cancel = CancelToken()
        self._running.add(job.generation)
        self._start.emit(job, self._cancel)

    def cancel(self) -> None:
        """Stop the running job within one batch; its remaining updates will be ignored."""
        self._cancel.cancel()
        self._pending = None
        self._timer.stop()

    @property
    def busy(self) -> bool:
        return bool(self._running)

    def shutdown(self) -> None:
        """Cancel and wait for the thread, so the application exits cleanly; safe to repeat."""
        self.cancel()
        self.generation += 1
        if self._thread.isRunning():
            self._thread.quit()
            self._thread.wait()

    def _on_update(self, generation: int, stage: str, update: Any) -> None:
        if generation != self.generation:
            return
        if update.final:
            self._timer.stop()
            self._pending = None
            self.finished.emit(stage, update)
            return
        self._pending = (stage, update)
        if not self._timer.isActive():
            self._timer.start()

    def _flush(self) -> None:
        if self._pending is not None:
            (stage, update), self._pending = self._pending, None
            self.progressed.emit(stage, update)

    def _on_failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self.failed.emit(message)

    def _on_stopped(self, generation: int) -> None:
        self._running.discard(generation)
        if not self._running:
            self.idle.emit()
