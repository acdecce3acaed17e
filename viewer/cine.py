"""Cine: playing a multi-frame image or a series as a loop, as Horos and Weasis do.

A QTimer on the GUI thread asks for the next frame; the owner (the main window) knows the
series and wraps round at its end, so the loop never leaves the series. The rate is the
reader's choice, or the one the file recommends, else :data:`DEFAULT_FPS`.
"""

from __future__ import annotations

import math

from PySide6.QtCore import QObject, QTimer, Signal

from dicom.series import Frame

#: Frames per second when the file recommends none.
DEFAULT_FPS = 10.0
#: The rates offered in the View > Cine menu and stepped through by the slower/faster keys.
RATES: tuple[float, ...] = (2.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 60.0)


def file_frame_rate(frame: Frame) -> float | None:
    """The rate the file recommends: RecommendedDisplayFrameRate, CineRate, else 1000 / FrameTime (ms)."""
    header = frame.header
    for keyword in ("RecommendedDisplayFrameRate", "CineRate"):
        rate = positive(header.get(keyword))
        if rate is not None:
            return rate
    frame_time = positive(header.get("FrameTime"))
    return 1000.0 / frame_time if frame_time is not None else None


def positive(value: object) -> float | None:
    """A finite number above zero, None for anything else (missing, malformed, zero)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def next_rate(fps: float, faster: bool) -> float:
    """The next rate of :data:`RATES` above (or below) ``fps``; the ends stay where they are."""
    if faster:
        return next((rate for rate in RATES if rate > fps + 1e-9), RATES[-1])
    return next((rate for rate in reversed(RATES) if rate < fps - 1e-9), RATES[0])


class Cine(QObject):
    """A play/pause timer at a chosen rate.

    ``fps`` None means the file's own rate (see :func:`file_frame_rate`), looked up on play.

    Signals
    -------
    tick()
        Time for the next frame.
    changed()
        Started, stopped, or the rate changed: for menus and the status bar.
    """

    tick = Signal()
    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.fps: float | None = None
        self.rate = DEFAULT_FPS

    @property
    def playing(self) -> bool:
        return self.timer.isActive()

    def play(self, frame: Frame) -> None:
        """Start looping at the chosen rate, or ``frame``'s file rate when none is chosen."""
        self.rate = self.fps or file_frame_rate(frame) or DEFAULT_FPS
        self.timer.start(round(1000.0 / self.rate))
        self.changed.emit()

    def stop(self) -> None:
        if self.playing:
            self.timer.stop()
            self.changed.emit()

    def set_fps(self, fps: float | None) -> None:
        """Choose a rate (None: the file's); a playing loop takes it at once."""
        self.fps = fps
        if fps is not None:
            self.rate = fps
        if self.playing and fps is not None:
            self.timer.setInterval(round(1000.0 / fps))
        self.changed.emit()

    def step_rate(self, faster: bool) -> None:
        """One step of :data:`RATES` faster or slower than the rate now used."""
        self.set_fps(next_rate(self.rate, faster))
