"""Where a slice lies along a stack, for scrolling two series of one study together.

Two series of one study (a CT in soft tissue and lung kernels, an MR before and after contrast)
are read side by side at the same level of the body. Their slices rarely line up one to one, so
the level is matched by position: each slice's ImagePositionPatient projected on the normal of
the reference slice's plane, and the nearest slice wins. Positions are only comparable within
one frame of reference and between (nearly) parallel planes; otherwise there is no match.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from dicom.series import Frame

#: Planes more than this far from parallel are not matched (an axial and a sagittal series).
MAX_ANGLE_DEGREES = 10.0


def slice_normal(orientation: Sequence[float]) -> np.ndarray | None:
    """The unit normal of a plane given by ImageOrientationPatient's row and column cosines."""
    cosines = np.asarray(orientation, dtype=np.float64)
    if cosines.shape != (6,) or not np.all(np.isfinite(cosines)):
        return None
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    return normal / length if length > 1e-6 else None


def geometry(frame: Frame) -> tuple[np.ndarray, np.ndarray] | None:
    """A frame's unit normal and ImagePositionPatient, None when either is missing or malformed."""
    orientation = frame.attribute("PlaneOrientationSequence", "ImageOrientationPatient")
    position = frame.attribute("PlanePositionSequence", "ImagePositionPatient")
    try:
        normal = slice_normal([float(v) for v in orientation])
        origin = np.asarray([float(v) for v in position], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if normal is None or origin.shape != (3,) or not np.all(np.isfinite(origin)):
        return None
    return normal, origin


def nearest_index(positions: Sequence[float | None], target: float) -> int | None:
    """The index of the position closest to ``target``, skipping unknown ones; ties go to the first."""
    known = [(abs(p - target), i) for i, p in enumerate(positions) if p is not None]
    return min(known)[1] if known else None


def same_frame_of_reference(a: Frame, b: Frame) -> bool:
    """Positions of two frames are comparable: one FrameOfReferenceUID, or at most one of them says."""
    first, second = a.header.get("FrameOfReferenceUID"), b.header.get("FrameOfReferenceUID")
    return not first or not second or str(first) == str(second)


def matching_slice(reference: Frame, candidates: Sequence[Frame]) -> int | None:
    """The candidate at the reference slice's level: positions projected on the reference's normal.

    None when the two cannot be compared: a position missing on the reference, another frame of
    reference, or planes further than :data:`MAX_ANGLE_DEGREES` from parallel.
    """
    found = geometry(reference)
    if found is None or not candidates or not same_frame_of_reference(reference, candidates[0]):
        return None
    normal, origin = found
    limit = math.cos(math.radians(MAX_ANGLE_DEGREES))
    positions: list[float | None] = []
    for frame in candidates:
        other = geometry(frame)
        parallel = other is not None and abs(float(np.dot(other[0], normal))) >= limit
        positions.append(float(np.dot(other[1], normal)) if parallel else None)
    return nearest_index(positions, float(np.dot(origin, normal)))
