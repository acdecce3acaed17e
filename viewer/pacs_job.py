"""PACS work off the GUI thread: one blocking call in a QThread, its outcome as signals.

A PACS call blocks for as long as the network makes it (a host that is down, a slow retrieve), so
the GUI thread never makes one: it starts a :class:`PacsJob` and listens. Every failure arrives as
one line, so a window can show it in its status and carry on.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, QThread, Signal

from pacs.errors import PacsError


class PacsJob(QThread):
    """Runs ``work(job)`` once in its own thread; ``work`` reports through ``job.reported`` and polls ``job.cancelled``.

    Signals
    -------
    reported(object)
        Something the work says as it goes (an instance that arrived, a series done).
    succeeded(object)
        What the work returned.
    failed(str)
        Why it stopped, in one line.
    """

    reported = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str)

    def __init__(self, work: Callable[[PacsJob], object], parent: QObject) -> None:
        super().__init__(parent)
        self.work = work
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True

    def cancelled(self) -> bool:
        return self._cancelled

    def run(self) -> None:
        try:
            result = self.work(self)
        except PacsError as error:
            self.failed.emit(str(error))
        except Exception as error:  # an answer nobody foresaw: still one line, and the viewer carries on
            self.failed.emit(f"{type(error).__name__}: {error}".splitlines()[0])
        else:
            self.succeeded.emit(result)


class Jobs(QObject):
    """The jobs a window has running, so that it can cancel them and wait for them when it closes."""

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self.running: list[PacsJob] = []

    def start(self, work: Callable[[PacsJob], object], succeeded: Callable[[object], None],
              failed: Callable[[str], None], reported: Callable[[object], None] | None = None) -> PacsJob:
        job = PacsJob(work, self)
        job.succeeded.connect(succeeded)
        job.failed.connect(failed)
        if reported is not None:
            job.reported.connect(reported)
        job.finished.connect(self._forget)
        self.running.append(job)
        job.start()
        return job

    def _forget(self) -> None:
        """A job is over: it goes, only now, so that :meth:`stop` never meets a deleted one."""
        job = self.sender()
        if job in self.running:
            self.running.remove(job)
            job.deleteLater()

    def stop(self) -> None:
        """Cancel every job and wait for it: a PACS call ends within the node's time-out."""
        for job in list(self.running):
            job.cancel()
            job.wait()
