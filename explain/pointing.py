"""Where a map points: its hottest point, and how far that lies from a known lesion.

The pointing game (Zhang et al. 2016) asks one question of a heatmap: does its hottest point
fall on the finding? The benchmark, the training script's report and the tests all ask it, so
they ask it here, the same way.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def hottest_point(heatmap: np.ndarray) -> tuple[int, int]:
    """The map's hottest pixel; where a region shares the top value, its pixel nearest the region's centre.

    LIME's map is constant over each superpixel and a saturated mask is flat at its top, so the
    top value can be a whole region; the first of its pixels in raster order (what ``argmax``
    returns) is an arbitrary corner of it, and the region's centre is where a reader's eye
    lands. Values within a millionth of the top count as tied: resizing a constant region onto
    the image's grid leaves rounding differences.
    """
    top = np.nanmax(heatmap)
    tied = np.argwhere(np.nan_to_num(heatmap, nan=-np.inf) >= top - 1e-6 * abs(top))
    centre = tied.mean(axis=0)
    row, column = tied[np.argmin(((tied - centre) ** 2).sum(axis=1))]
    return int(row), int(column)


def pointing_distance(heatmap: np.ndarray, lesion: np.ndarray) -> float:
    """Distance in pixels from the map's hottest point to the lesion (a boolean mask), 0 inside it.

    A map with no hottest point (blank, or nothing known) gets infinity, so that it never hits.
    """
    finite = np.isfinite(heatmap)
    if not finite.any() or np.nanmax(heatmap) == np.nanmin(heatmap):
        return float("inf")
    return float(ndimage.distance_transform_edt(~lesion)[hottest_point(heatmap)])
