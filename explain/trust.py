"""How far to trust a heatmap: does removing what it highlights really change the model's mind?

A plausible-looking map can still say nothing about the model. These figures test the map
against the model itself, on the exact input the explanation used:

- deletion and insertion curves (Petsiuk et al. 2018): remove (or reveal) pixels from the
  most to the least highlighted and follow the target probability; a faithful map makes the
  deletion curve fall fast (small area) and the insertion curve rise fast (large area);
- AOPC under region perturbation (Samek et al. 2015): the mean drop in probability as square
  regions are removed most-relevant first, beside the same for a random order, so the figure
  has a meaning of its own: how much better than chance the map is;
- the probability after removing the top 10% of the map against a random 10%, the plain
  sentence a radiologist reads.

Every perturbed input is one job in a single list, scored in batches like an explanation,
with progress and cancellation; the figures are final once the list is done. The figures share
their inputs where they coincide: each distinct input is scored once, and the image itself not
at all where the explanation has scored it already.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from explain.engine import BatchScorer, CancelToken, model_device_input
from explain.model_file import LoadedModel

#: The share of pixels removed for the verdict's sentence.
VERDICT_FRACTION = 0.1
#: The insertion curve says nothing of the map when the image with every pixel removed scores at
#: least this share of the image's own probability (see :func:`insertion_uninformative`).
INSERTION_ROOM = 0.9


@dataclass(frozen=True)
class TrustParams:
    """Curve resolution, region size and random repeats; defaults balance cost and stability."""

    points: int = 20
    region: int = 16
    regions_removed: int = 20
    random_orders: int = 3
    seed: int = 0


@dataclass(frozen=True, eq=False)
class TrustUpdate:
    """Progress of the figures; ``figures`` and ``curves`` are complete on the final one."""

    progress: float
    final: bool
    evaluations: int
    figures: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, np.ndarray] = field(default_factory=dict)


def pixel_ranking(heatmap: np.ndarray) -> np.ndarray:
    """Flat pixel indices from the most to the least highlighted; unknown counts as least."""
    values = np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=-np.inf)
    return np.argsort(-values.ravel(), kind="stable")


def region_ranking(heatmap: np.ndarray, region: int) -> tuple[np.ndarray, np.ndarray]:
    """Square regions, as a label image and their order by summed heat, most first."""
    height, width = heatmap.shape
    rows, columns = -(-height // region), -(-width // region)
    labels = (np.arange(height)[:, None] // region) * columns + np.arange(width)[None, :] // region
    totals = np.bincount(labels.ravel(), weights=np.nan_to_num(heatmap).ravel(), minlength=rows * columns)
    return labels, np.argsort(-totals, kind="stable")


def area_under(curve: np.ndarray) -> float:
    """Trapezoidal area of a curve sampled evenly over [0, 1]."""
    return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))


def mixing_masks(order: np.ndarray, counts: list[int], size: int) -> list[np.ndarray]:
    """For each count, a flat boolean mask of the first ``count`` entries of ``order``."""
    masks = []
    for count in counts:
        mask = np.zeros(size, dtype=bool)
        mask[order[:count]] = True
        masks.append(mask)
    return masks


def aopc_steps(shape: tuple[int, int], params: TrustParams) -> int:
    """How many regions AOPC removes: as many as asked, or every region of a small image."""
    regions = math.ceil(shape[0] / params.region) * math.ceil(shape[1] / params.region)
    return min(params.regions_removed, regions)


def removal_masks(heatmap: np.ndarray, params: TrustParams) -> np.ndarray:
    """Every input the figures score, as flat masks ``(inputs, pixels)`` of the pixels removed.

    In :func:`summarise`'s order: the deletion curve, the insertion curve (the complement of
    deletion's: it keeps the most highlighted pixels), AOPC in the map's order of regions and in
    random ones, then the verdict's random tenths.
    """
    height, width = heatmap.shape
    size = height * width
    rng = np.random.default_rng(params.seed)
    counts = [int(round(f * size)) for f in np.linspace(0.0, 1.0, params.points + 1)]
    labels, region_order = region_ranking(heatmap, params.region)
    steps = aopc_steps(heatmap.shape, params)
    random_region_orders = [rng.permutation(len(region_order)) for _ in range(params.random_orders)]
    verdict_count = int(round(VERDICT_FRACTION * size))
    random_pixels = [rng.permutation(size)[:verdict_count] for _ in range(params.random_orders)]

    deletion = mixing_masks(pixel_ranking(heatmap), counts, size)
    masks = [*deletion, *(~mask for mask in deletion)]
    for order in [region_order, *random_region_orders]:
        masks += [np.isin(labels, order[:k]).ravel() for k in range(steps + 1)]
    masks += [mixing_masks(pixels, [verdict_count], size)[0] for pixels in random_pixels]
    return np.stack(masks)


def distinct_inputs(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The masks to score, each once, and for every mask the index of its score among them.

    The curves and AOPC meet at the same inputs: deletion's first point, insertion's last and
    every AOPC order's first step are the image itself (index -1: its score is known before the
    figures start), deletion's last point is insertion's first. Any other masks that happen to
    be equal are scored once too. The distinct masks keep the order they are first needed in.
    """
    removes = masks.any(axis=1)
    _, first, inverse = np.unique(np.packbits(masks[removes], axis=1), axis=0, return_index=True,
                                  return_inverse=True)
    by_first_use = np.argsort(first, kind="stable")
    position = np.empty_like(by_first_use)
    position[by_first_use] = np.arange(len(by_first_use))
    index = np.full(len(masks), -1)
    index[removes] = position[inverse.ravel()]
    return masks[removes][first[by_first_use]], index


def trust_figures(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    heatmap: np.ndarray,
    removed: torch.Tensor,
    params: TrustParams = TrustParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
    score: float | None = None,
) -> Iterator[TrustUpdate]:
    """Figures for ``heatmap`` (``(height, width)``, on the model's input grid) of ``x``.

    ``removed`` is what a removed pixel becomes, ``(channels, height, width)``: the method's
    baseline, or a blurred copy of the input. ``score`` is the model's probability of ``x`` where
    the caller has it already (the explanation scored the same input with the same model); it
    is scored here otherwise. Each distinct input is scored once (:func:`distinct_inputs`).
    """
    height, width = heatmap.shape
    masks = removal_masks(heatmap, params)
    inputs, index = distinct_inputs(masks)
    device_x = model_device_input(x, model)
    fill = removed.to(model.device, torch.float32)
    # The map's own run has just found this model's best batch: no first partial map to hurry here.
    scorer = BatchScorer(model, target, cancel, batch_size, resume=True)
    if score is None:
        score = float(scorer.score(device_x[None])[0])
    input_masks = torch.as_tensor(inputs.reshape(-1, height, width))

    def make_batch(start: int, stop: int) -> torch.Tensor:
        chosen = input_masks[start:stop].to(model.device)[:, None]
        return torch.where(chosen, fill, device_x)

    scores = np.empty(len(inputs))
    for start, batch_scores in scorer.run(len(inputs), make_batch):
        stop = start + len(batch_scores)
        scores[start:stop] = batch_scores
        if stop < len(inputs):
            yield TrustUpdate(stop / len(inputs), False, scorer.evaluations)
    if scorer.cancel.cancelled:
        return
    job_scores = np.where(index < 0, score, scores[np.maximum(index, 0)])
    yield summarise(job_scores, score, params.points + 1, aopc_steps(heatmap.shape, params), params.random_orders,
                    scorer.evaluations)


def summarise(scores: np.ndarray, score: float, points: int, steps: int, repeats: int,
              evaluations: int) -> TrustUpdate:
    """Turn the scored job list back into curves and figures."""
    take = iter_slices(scores)
    deletion, insertion = take(points), take(points)
    morf = take(steps + 1)
    random_aopc = [take(steps + 1) for _ in range(repeats)]
    random_tenth = take(repeats)

    def aopc(curve: np.ndarray) -> float:
        return float(np.mean(curve[0] - curve))

    figures = {
        "score": score,
        "deletion_auc": area_under(deletion),
        "insertion_auc": area_under(insertion),
        "aopc": aopc(morf),
        "aopc_random": float(np.mean([aopc(c) for c in random_aopc])),
        "top10_removed_score": float(np.interp(VERDICT_FRACTION, np.linspace(0, 1, points), deletion)),
        "random10_removed_score": float(np.mean(random_tenth)),
        "removed_score": float(deletion[-1]),
    }
    curves = {"fraction": np.linspace(0, 1, points), "deletion": deletion, "insertion": insertion}
    return TrustUpdate(1.0, True, evaluations, figures, curves)


def insertion_uninformative(figures: Mapping[str, float]) -> bool:
    """Whether the insertion area cannot tell a good map from a bad one on this image.

    The insertion curve starts at the probability of the image with every pixel removed
    (``removed_score``) and ends at the image's own (``score``); its early points are inputs
    that are nearly all baseline. When the model already gives the removed image at least
    :data:`INSERTION_ROOM` of the image's probability, revealing pixels has under a tenth of
    the score to rise by, and the area measures the baseline, not the map. For a probability
    this also covers every removed image scoring 0.9 or more. The deletion curve starts from
    the image itself and keeps its meaning.
    """
    return "removed_score" in figures and figures["removed_score"] >= INSERTION_ROOM * figures["score"]


def iter_slices(values: np.ndarray) -> Callable[[int], np.ndarray]:
    """Hand out consecutive slices of ``values``, in the order the jobs were listed."""
    position = [0]

    def take(count: int) -> np.ndarray:
        chunk = values[position[0]:position[0] + count]
        position[0] += count
        return chunk

    return take


def verdict(figures: Mapping[str, float], label: str) -> str:
    """One sentence a radiologist reads beside the map, and one more when the insertion curve means nothing."""
    sentence = removal_verdict(figures, label)
    if not insertion_uninformative(figures):
        return sentence
    return sentence + (f" The insertion curve means nothing here: with every pixel removed the {label} probability "
                       f"is already {figures['removed_score']:.2f} (the image {figures['score']:.2f}).")


def removal_verdict(figures: Mapping[str, float], label: str) -> str:
    """Whether removing the map's top tenth changes the model's mind more than a random tenth does."""
    before = figures["score"]
    top, random = figures["top10_removed_score"], figures["random10_removed_score"]
    sentence = (f"Removing the top 10% of highlighted pixels changes the {label} probability from "
                f"{before:.2f} to {top:.2f}; a random 10% changes it to {random:.2f}.")
    gain = figures["aopc"] - figures["aopc_random"]
    if before - top > 2 * max(before - random, 0.0) + 0.05 and gain > 0:
        return sentence + " The map points at what the model uses."
    if gain > 0:
        return sentence + " The map is only weakly tied to the model's decision."
    if before - top <= max(before - random, 0.0):
        return sentence + " The map does no better than chance: do not rely on it."
    # The pixels' tenth favours the map, its regions (AOPC) do not: say which decides.
    return sentence + (f" Removed square by square, though, its hottest regions do no better than random ones"
                       f" (the probability changes by {-figures['aopc']:+.2f} on average, against"
                       f" {-figures['aopc_random']:+.2f}): do not rely on it.")
