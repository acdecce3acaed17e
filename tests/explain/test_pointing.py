"""The pointing game's question, on hand-made maps whose right answer is known."""

from __future__ import annotations

import numpy as np

from explain.pointing import pointing_distance


def lesion() -> np.ndarray:
    """A 20 x 20 image with a lesion in rows 5-9, columns 5-9 (25 pixels)."""
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:10, 5:10] = True
    return mask


def spot(row: int, column: int) -> np.ndarray:
    heatmap = np.zeros((20, 20), dtype=np.float32)
    heatmap[row, column] = 1.0
    return heatmap


def test_the_hottest_pixel_inside_the_lesion_is_at_distance_zero() -> None:
    assert pointing_distance(spot(7, 7), lesion()) == 0.0


def test_the_distance_is_to_the_nearest_lesion_pixel() -> None:
    # Three columns right of the lesion's last column (9): a hit at 5 px, a miss at 0 px.
    assert pointing_distance(spot(7, 12), lesion()) == 3.0
    # Diagonal from the corner (9, 9): 3 and 4 pixels away makes 5.
    assert pointing_distance(spot(12, 13), lesion()) == 5.0


def test_the_hottest_pixel_wins_over_warmer_pixels_elsewhere() -> None:
    heatmap = spot(0, 19) * 0.5 + spot(6, 6)
    assert pointing_distance(heatmap, lesion()) == 0.0
    assert pointing_distance(spot(6, 6) * 0.5 + spot(0, 19), lesion()) > 10


def test_a_hottest_region_points_from_its_centre_not_its_corner() -> None:
    # A LIME-like map: one region of equal top value, rows 2-11 and columns 2-11, around the lesion.
    heatmap = np.zeros((20, 20), dtype=np.float32)
    heatmap[2:12, 2:12] = 1.0
    heatmap[2, 2] += 1e-9  # rounding on the image grid does not make a corner the hottest point
    assert pointing_distance(heatmap, lesion()) == 0.0


def test_a_blank_or_unknown_map_points_nowhere() -> None:
    assert pointing_distance(np.zeros((20, 20)), lesion()) == np.inf
    assert pointing_distance(np.full((20, 20), np.nan), lesion()) == np.inf
