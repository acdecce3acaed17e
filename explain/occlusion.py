"""Occlusion (Zeiler & Fergus 2013), streamed coarse to fine.

Each window position is hidden behind the baseline and the drop in the target probability is
recorded; a pixel's attribution is the mean drop over the windows covering it. That is exactly
``captum.attr.Occlusion`` with windows spanning every channel, and the final map equals it.

The positions are visited like an interlaced image: every fourth row and column of the
position grid first, then every second, then the rest. Each evaluation is one of the final set,
so streaming costs nothing; a partial map takes each missing position's drop from the nearest
position done so far and applies the same mean, so it is the final formula on the best guess.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from explain.baselines import baseline_image
from explain.engine import BatchScorer, CancelToken, Update, model_device_input
from explain.model_file import LoadedModel


@dataclass(frozen=True)
class OcclusionParams:
    """Window and stride in model-input pixels; the baseline a value, ``mean`` or ``blur``."""

    window: int = 16
    stride: int = 8
    baseline: float | str = 0.0


def window_starts(size: int, window: int, stride: int) -> np.ndarray:
    """Start of every window along one axis, as Captum places them.

    There are ``ceil((size - window) / stride) + 1`` of them; the last may run past the edge and
    is then cut off there.
    """
    if not 0 < window <= size:
        raise ValueError(f"window {window} must be between 1 and the input size {size}")
    if not 0 < stride <= window and window < size:
        raise ValueError(f"stride {stride} must be between 1 and the window {window}")
    count = int(np.ceil((size - window) / stride)) + 1 if window < size else 1
    return np.arange(count) * stride


def interlaced_order(rows: int, columns: int) -> np.ndarray:
    """Flat indices of a ``rows x columns`` grid, every 4th first, then every 2nd, then the rest."""
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    level = np.where((r % 4 == 0) & (c % 4 == 0), 0, np.where((r % 2 == 0) & (c % 2 == 0), 1, 2))
    return np.argsort(level.ravel(), kind="stable")


def occlusion_baseline(x: torch.Tensor, baseline: float | str, window: int) -> torch.Tensor:
    """What a hidden window shows; a blur's width follows the window, hiding detail at that scale."""
    return baseline_image(x, baseline, blur_sigma=window / 2.0)


class WindowGrid:
    """The window positions over an image, and the mean-over-covering-windows of any drops."""

    def __init__(self, height: int, width: int, window: int, stride: int) -> None:
        self.height, self.width, self.window = height, width, window
        self.rows = window_starts(height, window, stride)
        self.columns = window_starts(width, window, stride)
        self.shape = (len(self.rows), len(self.columns))
        self.coverage = self.spread(np.ones(self.shape))

    def bounds(self, flat_index: int) -> tuple[slice, slice]:
        """The pixels one window hides."""
        i, j = divmod(int(flat_index), self.shape[1])
        top, left = self.rows[i], self.columns[j]
        return slice(top, min(top + self.window, self.height)), slice(left, min(left + self.window, self.width))

    def spread(self, values: np.ndarray) -> np.ndarray:
        """Sum, at each pixel, of the values of the windows covering it.

        Places each value at its window's corner and box-sums with an integral image, so the
        cost is one pass over the pixels however many windows there are.
        """
        corners = np.zeros((self.height + 1, self.width + 1))
        np.add.at(corners, (self.rows[:, None] + 1, self.columns[None, :] + 1), values)
        integral = corners.cumsum(0).cumsum(1)
        r = np.arange(self.height + 1)
        c = np.arange(self.width + 1)
        r0, c0 = np.maximum(r - self.window, 0), np.maximum(c - self.window, 0)
        box = integral[r[:, None], c[None, :]] - integral[r0[:, None], c[None, :]]
        box -= integral[r[:, None], c0[None, :]] - integral[r0[:, None], c0[None, :]]
        return box[1:, 1:]

    def mean_map(self, drops: np.ndarray) -> np.ndarray:
        """Captum's occlusion attribution for a full grid of drops."""
        return self.spread(drops) / self.coverage

    def estimate(self, drops: np.ndarray) -> np.ndarray:
        """The map with each missing drop taken from the nearest position already scored."""
        missing = np.isnan(drops)
        if missing.all():
            return np.full((self.height, self.width), np.nan)
        if missing.any():
            nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
            drops = drops[tuple(nearest)]
        return self.mean_map(drops)


def occlusion(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: OcclusionParams = OcclusionParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """Occlusion attribution of ``x`` ``(channels, height, width)`` for output ``target``."""
    channels, height, width = x.shape
    grid = WindowGrid(height, width, params.window, params.stride)
    order = interlaced_order(*grid.shape)
    device_x = model_device_input(x, model)
    hidden = occlusion_baseline(device_x, params.baseline, params.window)
    scorer = BatchScorer(model, target, cancel, batch_size)
    original = float(scorer.score(device_x[None])[0])
    drops = np.full(grid.shape, np.nan)

    def make_batch(start: int, stop: int) -> torch.Tensor:
        batch = device_x.repeat(stop - start, 1, 1, 1)
        for k, flat in enumerate(order[start:stop]):
            rows, columns = grid.bounds(flat)
            batch[k, :, rows, columns] = hidden[:, rows, columns]
        return batch

    total = len(order)
    for start, scores in scorer.run(total, make_batch):
        done = start + len(scores)
        drops.ravel()[order[start:done]] = original - scores
        final = done == total
        heatmap = grid.estimate(drops).astype(np.float32)
        yield Update(
            heatmap=heatmap,
            progress=done / total,
            final=final,
            evaluations=scorer.evaluations,
            attribution=np.broadcast_to(heatmap, (channels, height, width)).copy() if final else None,
            figures={"score": original},
        )
