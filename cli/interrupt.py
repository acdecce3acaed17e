"""Ctrl-C, remembered: an interrupt must end a command even where a library turns it into another error.

Python raises KeyboardInterrupt wherever the main thread happens to be when the signal lands.
Deep in a library it can come out as something else: numpy comparing arrays reported it as a
``TypeError``, and a file closed while unwinding it as ``OSError: Bad file descriptor``. A folder
run that counts each image's error as that image's failure then carried on past the user's
Ctrl-C, as if one image had been bad. The handler here notes the interrupt before raising it, so
code that catches an image's failure can ask whether the user asked to stop.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

_requested = threading.Event()


def _note_and_raise(signum: int, frame: FrameType | None) -> None:
    _requested.set()
    signal.default_int_handler(signum, frame)


def install() -> None:
    """Note every Ctrl-C from now on (main thread only, where Python runs signal handlers)."""
    _requested.clear()
    signal.signal(signal.SIGINT, _note_and_raise)


def requested() -> bool:
    """Whether Ctrl-C was pressed since :func:`install`."""
    return _requested.is_set()
