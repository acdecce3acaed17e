"""LIME on superpixels (Ribeiro et al. 2016), streamed as the samples are scored.

The image is cut into superpixels. Each sample switches a random half of them off (their
pixels take the superpixel's own mean intensity, a blurred copy, or a constant) and records the
target probability. A linear model of that probability in the on/off switches, fitted with
more weight on samples close to the whole image, is the explanation: a superpixel's
coefficient is how much the probability rises when it is shown, and each of its pixels carries
that heat. That is Captum's ``Lime`` attribution with the superpixels as its feature mask.

All the samples are drawn from the seed before any is scored, so a partial map is the final
formula on the samples scored so far, exactly the map a run with that many samples would give.
The surrogate is refitted whenever the samples have grown by a tenth; a refit is one small
least-squares solve, and every evaluation counts toward the final fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from skimage import segmentation

from explain.baselines import baseline_image, parse_baseline
from explain.engine import BatchScorer, CancelToken, Update, model_device_input, same_for_every_channel
from explain.method import Method, Outlines
from explain.model_file import LoadedModel

#: SLIC's balance of intensity against distance for a grey image in [0, 1]: superpixels of
#: even size that still follow the heart border and the diaphragm (skimage's 10 is for colour).
SLIC_COMPACTNESS = 0.3
#: Ridge penalty of the surrogate, lime's own: it makes the fit unique while few samples are in
#: and shrinks the final coefficients by well under a percent.
RIDGE_ALPHA = 1.0
#: The surrogate is refitted once the samples scored have grown by this factor since the last fit.
REFIT_GROWTH = 1.1


@dataclass(frozen=True)
class LimeParams:
    """How many samples and superpixels, how they are made, and how samples are weighted.

    ``segments`` is the superpixel count aimed at; SLIC lands close to it, felzenszwalb is
    searched for it, quickshift is sized for it. ``fill`` is what a switched-off superpixel
    shows: ``mean`` (its own mean intensity, as lime does), ``blur`` (a copy blurred at the
    superpixel scale) or a number in model-input space. ``kernel_width`` is lime's: the width
    of the exponential kernel on the cosine distance between a sample and the whole image.
    """

    samples: int = 1000
    segments: int = 50
    segmentation: str = "slic"
    fill: float | str = "mean"
    seed: int = 0
    kernel_width: float = 0.25

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, not {self.samples}")
        if self.segments < 1:
            raise ValueError(f"segments must be at least 1, not {self.segments}")
        if self.segmentation not in SEGMENTERS:
            raise ValueError(f"segmentation must be one of {', '.join(SEGMENTERS)}, not {self.segmentation!r}")
        if self.kernel_width <= 0:
            raise ValueError(f"kernel_width must be positive, not {self.kernel_width}")
        if isinstance(self.fill, str):
            try:
                parse_baseline(self.fill)
            except ValueError:
                raise ValueError(f"fill must be 'mean', 'blur' or a number, not {self.fill!r}") from None


def slic(grey: np.ndarray, count: int) -> np.ndarray:
    """SLIC superpixels: k-means in intensity and position, compact and close to ``count``."""
    return segmentation.slic(grey, n_segments=count, compactness=SLIC_COMPACTNESS, channel_axis=None, start_label=0)


def felzenszwalb(grey: np.ndarray, count: int, steps: int = 10) -> np.ndarray:
    """Felzenszwalb's graph segmentation, its scale searched for about ``count`` segments.

    Its scale sets segment sizes only through the local contrast, so the same scale gives
    one segment on a smooth image and dozens on a radiograph; a bisection on the scale's
    logarithm (fewer segments as it grows) finds one within a tenth of the count, or the
    closest of ``steps`` tries. Fragments under a quarter of a typical superpixel are merged.
    """
    min_size = max(grey.size // (4 * count), 1)
    low, high = -8.0, 12.0
    best = None
    for _ in range(steps):
        middle = (low + high) / 2
        labels = segmentation.felzenszwalb(grey, scale=2.0**middle, sigma=0.5, min_size=min_size, channel_axis=None)
        found = labels.max() + 1
        if best is None or abs(found - count) < abs(best.max() + 1 - count):
            best = labels
        if abs(found - count) <= count / 10:
            break
        low, high = (middle, high) if found > count else (low, middle)
    return best


def quickshift(grey: np.ndarray, count: int) -> np.ndarray:
    """Quickshift mode seeking, its kernel sized for about ``count`` segments.

    On the 0-100 lightness scale quickshift's ratio is made for, so intensity edges count;
    with no cut on link length, the count follows the kernel: about one segment per square
    eight kernel widths across.
    """
    kernel = max(np.sqrt(grey.size / count) / 8, 1.0)
    return segmentation.quickshift(grey[..., None] * 100, ratio=0.5, kernel_size=kernel, max_dist=np.inf,
                                   convert2lab=False)


SEGMENTERS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "slic": slic, "felzenszwalb": felzenszwalb, "quickshift": quickshift,
}


def superpixels(x: torch.Tensor, params: LimeParams = LimeParams()) -> np.ndarray:
    """Superpixel labels ``(height, width)``, numbered 0 .. count - 1, of a model input.

    The segmentation sees the first channel rescaled to [0, 1], the grey image the
    radiologist sees, whatever the model's normalisation. The viewer calls this too, to
    draw the superpixel boundaries the map is made of.
    """
    grey = x[0].detach().cpu().numpy().astype(np.float64)
    span = grey.max() - grey.min()
    grey = (grey - grey.min()) / span if span > 0 else np.zeros_like(grey)
    labels = SEGMENTERS[params.segmentation](grey, params.segments)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def fill_image(x: torch.Tensor, labels: np.ndarray, fill: float | str) -> torch.Tensor:
    """What switched-off superpixels show, on x's device: see :class:`LimeParams`.

    Superpixel means are summed on the host in float64, so the result is the same on any
    device; a blur hides detail at the scale of a typical superpixel.
    """
    count = int(labels.max()) + 1
    if fill == "mean":
        image = x.detach().cpu().numpy().astype(np.float64)
        flat = labels.ravel()
        sizes = np.bincount(flat, minlength=count)
        means = np.stack([np.bincount(flat, weights=channel.ravel(), minlength=count) for channel in image]) / sizes
        return torch.as_tensor(means[:, labels], dtype=x.dtype, device=x.device)
    side = np.sqrt(labels.size / count)
    return baseline_image(x, fill, blur_sigma=side / 2)


def lime_baseline(x: torch.Tensor, params: LimeParams) -> torch.Tensor:
    """The input with every superpixel switched off: what "removed" means for LIME."""
    return fill_image(x, superpixels(x, params), params.fill)


def kernel_weights(masks: np.ndarray, width: float) -> np.ndarray:
    """Lime's sample weights: ``exp(-d² / 2 width²)`` on the cosine distance d to all-on.

    A mask with k of n superpixels on has cosine similarity sqrt(k / n) to the whole image,
    so with half of them on, d is about 0.29 and the weight about one half; the whole image
    weighs 1 and the blank one about 0.0003. The cosine (lime_image's choice) rather than the
    Hamming distance keeps the weights close to lime's for any superpixel count.
    """
    distance = 1.0 - np.sqrt(masks.mean(axis=1))
    return np.exp(-(distance**2) / (2 * width**2))


@dataclass(frozen=True)
class Surrogate:
    """A weighted linear model of the score: one coefficient per superpixel, and its fit."""

    coefficients: np.ndarray
    intercept: float
    r2: float


def fit_surrogate(masks: np.ndarray, scores: np.ndarray, weights: np.ndarray, alpha: float = RIDGE_ALPHA) -> Surrogate:
    """Weighted ridge regression of ``scores`` on the ``masks`` switches, intercept not penalised.

    Centring on the weighted means takes the intercept out, leaving a ``(count, count)``
    system. ``r2`` is the weighted coefficient of determination, lime's ``score``: how much
    of the score's variation over the samples the linear model explains. A constant score is
    explained in full by the intercept.
    """
    z = masks.astype(np.float64)
    total_weight = weights.sum()
    z_mean = weights @ z / total_weight
    y_mean = weights @ scores / total_weight
    zc, yc = z - z_mean, scores - y_mean
    gram = zc.T @ (weights[:, None] * zc) + alpha * np.eye(z.shape[1])
    coefficients = np.linalg.solve(gram, zc.T @ (weights * yc))
    residual = weights @ (yc - zc @ coefficients) ** 2
    spread = weights @ yc**2
    tiny = np.finfo(np.float64).eps * (weights @ scores**2)
    r2 = 1.0 - residual / spread if spread > tiny else 1.0
    return Surrogate(coefficients, float(y_mean - z_mean @ coefficients), float(r2))


def lime(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: LimeParams = LimeParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """LIME attribution of ``x`` ``(channels, height, width)`` for output ``target``.

    The first sample is the whole image, so its score is the one explained, at no extra cost.
    The map stays NaN until there are more samples than superpixels: before that, the
    surrogate's ``count + 1`` unknowns are not pinned down by the data.
    """
    channels, height, width = x.shape
    labels = superpixels(x, params)
    count = int(labels.max()) + 1
    masks = np.random.default_rng(params.seed).random((params.samples, count)) < 0.5
    masks[0] = True
    weights = kernel_weights(masks, params.kernel_width)
    device_x = model_device_input(x, model)
    hidden = fill_image(device_x, labels, params.fill)
    device_labels = torch.as_tensor(labels.ravel(), device=device_x.device)
    device_masks = torch.as_tensor(masks, device=device_x.device)
    scorer = BatchScorer(model, target, cancel, batch_size)
    scores = np.full(params.samples, np.nan)

    def make_batch(start: int, stop: int) -> torch.Tensor:
        # index_select, not [:, labels]: indexing by an image of labels takes torch a far slower path.
        shown = device_masks[start:stop].index_select(1, device_labels).view(stop - start, 1, height, width)
        return torch.where(shown, device_x, hidden)

    total = params.samples
    first_fit = min(count + 1, total)
    fitted, coefficients, figures = 0, np.full(count, np.nan), {}
    for start, batch_scores in scorer.run(total, make_batch):
        done = start + len(batch_scores)
        scores[start:done] = batch_scores
        final = done == total
        if final or (done >= first_fit and done >= fitted * REFIT_GROWTH):
            surrogate = fit_surrogate(masks[:done], scores[:done], weights[:done])
            fitted, coefficients, figures = done, surrogate.coefficients, {"r2": surrogate.r2}
        yield same_for_every_channel(coefficients[labels].astype(np.float32), channels, done / total, final,
                                     scorer.evaluations, {"score": float(scores[0]), **figures})


METHOD = Method("lime", "LIME (superpixels)", LimeParams, lime, baseline=lime_baseline,
                units="surrogate weight (probability)", choices={"segmentation": tuple(SEGMENTERS)},
                image_or_value=("fill",), outlines=Outlines("superpixels", superpixels))
