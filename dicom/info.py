"""A check of files and folders without Qt or torch: what each image is, or why it fails.

Used by ``python main.py info``; a quick way for a PACS administrator or a script to learn
what a folder holds and whether Lightbox can show it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from dicom.files import DicomReadError, ReadError, read_headers
from dicom.image import file_windows, load_frame
from dicom.series import Frame, frame_count


def describe_file(frame: Frame) -> dict[str, Any]:
    """One image record: size, kind, the file's window and the first frame's value range.

    The range is taken after the modality LUT, so for CT it is in HU; an end that is not a
    finite number (a hostile rescale, NaN pixels) is None, which JSON writes as ``null``
    (strict parsers refuse ``NaN``). Raises ``DicomReadError`` when the pixels cannot be decoded.
    """
    header = frame.header
    image = load_frame(frame)
    try:
        low, high = value_range(image.modality_values())
    except MemoryError:
        raise DicomReadError("cannot read the value range: not enough memory") from None
    windows = file_windows(frame)
    return {
        "path": str(frame.path),
        "rows": frame.rows,
        "columns": frame.columns,
        "frames": frame_count(header),
        "modality": str(header.get("Modality", "") or ""),
        "photometric": image.photometric,
        "window": [windows[0].center, windows[0].width] if windows else None,
        "min": low,
        "max": high,
    }


def value_range(values: np.ndarray) -> tuple[Any, Any]:
    """The smallest and largest value, each None when it is not a finite number.

    A single NaN makes both ends NaN, and so both None: the range is then unknown.
    """
    return finite_or_none(values.min().item()), finite_or_none(values.max().item())


def finite_or_none(value: Any) -> Any:
    """``value`` itself, or None when it is a float that is NaN or infinite."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def inspect_paths(paths: Iterable[Path | str]) -> tuple[list[dict[str, Any]], list[ReadError]]:
    """Image records for every readable file under ``paths``, and an error for every other."""
    headers, errors = read_headers(paths)
    images = []
    for header in headers:
        try:
            images.append(describe_file(Frame(header.path, 0, header.dataset)))
        except DicomReadError as error:
            errors.append(ReadError(header.path, str(error)))
    return images, errors
