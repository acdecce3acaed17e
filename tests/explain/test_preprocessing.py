"""Preprocessing follows the card, and its inverse puts a heatmap back on the right pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.preprocessing import to_image_grid, to_model_input
from tests.model_factory import card_for


def test_model_input_is_resized_repeated_and_normalised():
    spec = card_for(32, 24, channels=3).input
    unit = np.full((300, 200), 0.75, dtype=np.float32)
    x = to_model_input(unit, spec)
    assert x.shape == (3, 32, 24) and x.dtype == torch.float32
    torch.testing.assert_close(x, torch.full((3, 32, 24), (0.75 - 0.5) / 0.25))


@pytest.mark.parametrize("image_shape", [(300, 180), (97, 401), (64, 64), (20, 30)])
def test_a_blob_on_the_model_grid_lands_on_the_same_anatomy(image_shape):
    """Mark a region in the image, carry it to the model grid and back: it stays in place."""
    rows, columns = image_shape
    spec = card_for(56, 72).input
    unit = np.zeros(image_shape, dtype=np.float32)
    top, bottom, left, right = rows // 5, rows // 2, columns // 2, 9 * columns // 10
    unit[top:bottom, left:right] = 1.0
    x = to_model_input(unit, spec)
    heat_on_model_grid = (x[0].numpy() > 0).astype(np.float32)  # 0 maps to -2, anything bright above 0
    back = to_image_grid(heat_on_model_grid, image_shape)
    assert back.shape == image_shape
    hot = back > 0.5
    agreement = (hot & (unit > 0)).sum() / (hot | (unit > 0)).sum()
    assert agreement > 0.85, f"intersection over union {agreement:.2f}"
    ys, xs = np.nonzero(hot)
    assert abs(ys.mean() - (top + bottom - 1) / 2) < max(rows / 56, 1.0)
    assert abs(xs.mean() - (left + right - 1) / 2) < max(columns / 72, 1.0)


def test_unknown_values_stay_unknown_on_the_image_grid():
    heat = np.full((10, 10), np.nan, dtype=np.float32)
    heat[:, :5] = 1.0
    back = to_image_grid(heat, (40, 40))
    assert np.isnan(back[:, 25:]).all() and (back[:, :15] == 1.0).all()
