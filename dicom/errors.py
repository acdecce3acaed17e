"""The one error the DICOM layer raises for a file it cannot use, and how its reason is written.

Every reason is one line a reader understands: no traceback, no newline, no terminal control
characters, whatever a hostile file or file name puts into it.
"""

from __future__ import annotations

import re

#: Characters that would break a one-line message or drive a terminal: C0 and C1 controls.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class DicomReadError(Exception):
    """A file is not a DICOM image we can show; the message is one plain line."""


def printable(text: str) -> str:
    """``text`` safe to print on one line: controls escaped, undecodable bytes escaped.

    File names may hold newlines, escape sequences or bytes that are no UTF-8 (Python keeps
    those as surrogates, which ``print`` refuses); each becomes a visible escape instead.
    """
    text = _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def one_line(error: BaseException) -> str:
    """Squash an exception into a single printable line of at most 200 characters."""
    text = printable(" ".join(str(error).split())) or type(error).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def size_text(count: int) -> str:
    """A byte count for a reader: ``512 MiB``, ``8.0 GiB``, ``300 bytes``."""
    for unit, power in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if count >= 2**power:
            value = count / 2**power
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{count} bytes"
