"""Occlusion (Zeiler & Fergus 2013), streamed coarse to fine.

Each window position is hidden behind the baseline and the drop in the target probability is
recorded; a pixel's attribution is the mean drop over the windows covering it. That is exactly
``captum.attr.Occlusion`` with windows spanning every channel, and the final map equals it.

The positions are visited like an interlaced image: every fourth row and column of the
position grid first, then every second, then the rest. Each evaluation is one of the final set,
so streaming costs nothing; a partial map takes each missing position's drop from the nearest
position done so far and applies the same mean, so it is the final formula on the best guess.

Exported models made of common layers are scored by incremental inference
(:mod:`explain.incremental`): only what a window can change is recomputed, with the same result.
Adaptive drill-down (Krypton's, ``drill_down`` below one) scores the coarse grid everywhere and
the finer positions only where the coarse map is hottest: an approximation, off by default.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from explain.baselines import baseline_image
from explain.engine import BatchScorer, CancelToken, Update, model_device_input, same_for_every_channel
from explain.incremental import IncrementalModel, Patch, occluded_copies
from explain.method import Method
from explain.model_file import LoadedModel


@dataclass(frozen=True)
class OcclusionParams:
    """Window and stride in model-input pixels; the baseline a value, ``mean``, ``black`` or ``blur``.

    The defaults are the best of a sweep on validation phantoms (``benchmarks/choose_defaults.py``,
    see the README): a small window finds a thin lesion, and a black patch hides fluid that the
    grey of the mean would barely change. ``drill_down`` is the share of the finer window
    positions that is scored, hottest first; one (the default) scores them all and gives the
    exact map.
    """

    window: int = 4
    stride: int = 2
    baseline: float | str = "black"
    drill_down: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.drill_down <= 1.0:
            raise ValueError(f"drill-down {self.drill_down} must be above 0 and at most 1")


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


def interlace_levels(rows: int, columns: int) -> np.ndarray:
    """Level of each position of a ``rows x columns`` grid: 0 every 4th, 1 every 2nd, 2 the rest."""
    r, c = np.meshgrid(np.arange(rows), np.arange(columns), indexing="ij")
    return np.where((r % 4 == 0) & (c % 4 == 0), 0, np.where((r % 2 == 0) & (c % 2 == 0), 1, 2)).ravel()


def interlaced_order(rows: int, columns: int) -> np.ndarray:
    """Flat indices of a ``rows x columns`` grid, every 4th first, then every 2nd, then the rest."""
    return np.argsort(interlace_levels(rows, columns), kind="stable")


def hottest(positions: np.ndarray, estimated: np.ndarray, share: float) -> np.ndarray:
    """The ``share`` of ``positions`` whose estimated drop is largest, in their given order."""
    keep = int(np.ceil(share * len(positions)))
    ranked = np.argsort(-estimated.ravel()[positions], kind="stable")[:keep]
    return positions[np.sort(ranked)]


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

    @staticmethod
    def filled(drops: np.ndarray) -> np.ndarray:
        """Each missing drop taken from the nearest position already scored."""
        missing = np.isnan(drops)
        if missing.all() or not missing.any():
            return drops
        nearest = ndimage.distance_transform_edt(missing, return_distances=False, return_indices=True)
        return drops[tuple(nearest)]

    def estimate(self, drops: np.ndarray) -> np.ndarray:
        """The map with each missing drop taken from the nearest position already scored."""
        if np.isnan(drops).all():
            return np.full((self.height, self.width), np.nan)
        return self.mean_map(self.filled(drops))


def occlusion(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: OcclusionParams = OcclusionParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
    incremental: bool = True,
) -> Iterator[Update]:
    """Occlusion attribution of ``x`` ``(channels, height, width)`` for output ``target``.

    ``incremental=False`` scores every occluded copy with the whole model, for comparison.
    """
    channels, height, width = x.shape
    grid = WindowGrid(height, width, params.window, params.stride)
    order = interlaced_order(*grid.shape)
    coarse = int((interlace_levels(*grid.shape) == 0).sum())
    device_x = model_device_input(x, model)
    hidden = occlusion_baseline(device_x, params.baseline, params.window)
    scorer = BatchScorer(model, target, cancel, batch_size)
    original = float(scorer.score(device_x[None])[0])
    drops = np.full(grid.shape, np.nan)
    forward = None
    if incremental and model.batched and IncrementalModel.supports(model.module):
        with torch.inference_mode(), model.precision():
            forward = IncrementalModel(model.module, device_x)
    box = (min(params.window, height), min(params.window, width))

    def make_batch(positions: np.ndarray) -> Patch | torch.Tensor:
        copies = occluded_copies(device_x, hidden, [grid.bounds(p) for p in positions], box)
        return copies if forward is not None else copies.whole()

    total = coarse + int(np.ceil(params.drill_down * (len(order) - coarse)))
    done = 0
    for stage, positions in enumerate((order[:coarse], order[coarse:])):
        if stage and params.drill_down < 1:
            positions = hottest(positions, grid.filled(drops), params.drill_down)
        for start, scores in scorer.run(len(positions), lambda a, b: make_batch(positions[a:b]),
                                        lambda batch: scorer.target_scores(batch, forward)):
            drops.ravel()[positions[start:start + len(scores)]] = original - scores
            done += len(scores)
            final = done == total
            yield same_for_every_channel(grid.estimate(drops).astype(np.float32), channels, done / total, final,
                                         scorer.evaluations, {"score": original})


METHOD = Method("occlusion", "Occlusion", OcclusionParams, occlusion,
                baseline=lambda x, params: occlusion_baseline(x, params.baseline, params.window),
                units="drop in probability", image_or_value=("baseline",), hints={
                    "window": "Side of the square hidden at each position, in model-input pixels",
                    "stride": "Step between window positions, in model-input pixels",
                    "baseline": "What hides the window: black, the image's mean, a blur, or a value",
                    "drill_down": "Share of the fine positions scored, hottest first (1: all, the exact map)",
                })
