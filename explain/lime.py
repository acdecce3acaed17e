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

With ``samples`` of 0 the run is adaptive: the samples come in rounds, each a quarter as large
again as all before it, and the run stops once the surrogate's own standard errors say its
ranking has settled (its top five are, with at least ``stability`` confidence, the top five) or
that what is left unsettled is a tie too close to see (every weight known to ``precision`` of the
largest). Its samples are the first ones of the seed's stream, so its map is exactly the fixed
run's with that many samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.special import ndtr
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
#: The most samples adaptive LIME (``samples`` of 0) takes: the 5,000 its benchmark's reference uses.
MAX_ADAPTIVE_SAMPLES = 5000
#: Adaptive LIME's first round, in samples per superpixel.
FIRST_ROUND_PER_SUPERPIXEL = 4
#: Each round of adaptive LIME ends at this factor times the samples of the one before.
ROUND_GROWTH = 1.25
#: Adaptive LIME's ranking has settled when it is sure of this many top superpixels.
TOP_SETTLED = 5


@dataclass(frozen=True)
class LimeParams:
    """How many samples and superpixels, how they are made, and how samples are weighted.

    ``segments`` is the superpixel count aimed at; SLIC lands close to it, felzenszwalb is
    searched for it, quickshift is sized for it. ``fill`` is what a switched-off superpixel
    shows: ``mean`` (its own mean intensity, as lime does), ``blur`` (a copy blurred at the
    superpixel scale) or a number in model-input space. ``kernel_width`` is lime's: the width
    of the exponential kernel on the cosine distance between a sample and the whole image.

    ``samples`` of 0 makes the run adaptive: samples in rounds until, by the surrogate's standard
    errors, its top five superpixels are the top five with a confidence of at least
    ``stability``, or every superpixel's weight is known to within ``precision`` of the largest
    weight (one standard error), or until :data:`MAX_ADAPTIVE_SAMPLES`. Neither applies to a
    fixed run.
    """

    samples: int = 1000
    segments: int = 100
    segmentation: str = "slic"
    fill: float | str = "mean"
    seed: int = 0
    kernel_width: float = 0.25
    stability: float = 0.9
    precision: float = 0.05

    def __post_init__(self) -> None:
        if self.samples < 0:
            raise ValueError(f"samples must be zero (adaptive) or more, not {self.samples}")
        if not 0 <= self.stability <= 1:
            raise ValueError(f"stability is a confidence, from 0 to 1, not {self.stability}")
        if not self.precision >= 0:
            raise ValueError(f"precision is a share of the largest weight, 0 or more, not {self.precision}")
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
    """A weighted linear model of the score: one coefficient per superpixel, and its fit.

    ``covariance`` is the coefficients' (heteroscedasticity-robust, from the residuals) when
    the fit was asked for it.
    """

    coefficients: np.ndarray
    intercept: float
    r2: float
    covariance: np.ndarray | None = None


def fit_surrogate(masks: np.ndarray, scores: np.ndarray, weights: np.ndarray, alpha: float = RIDGE_ALPHA,
                  with_covariance: bool = False) -> Surrogate:
    """Weighted ridge regression of ``scores`` on the ``masks`` switches, intercept not penalised.

    Centring on the weighted means takes the intercept out, leaving a ``(count, count)``
    system. ``r2`` is the weighted coefficient of determination, lime's ``score``: how much
    of the score's variation over the samples the linear model explains. A constant score is
    explained in full by the intercept, and its coefficients are zero rather than rounding noise
    (which a map would show at full contrast, and a ranking would take for an order).

    The covariance is the sandwich estimate ``G⁻¹ Zᵀ W R² W Z G⁻¹`` (G the penalised Gram matrix,
    R the residuals): it needs no assumption that the score's noise is even across samples,
    which it is not where a superpixel switches a max-pooled score on and off.
    """
    z = masks.astype(np.float64)
    total_weight = weights.sum()
    z_mean = weights @ z / total_weight
    y_mean = weights @ scores / total_weight
    zc, yc = z - z_mean, scores - y_mean
    spread = weights @ yc**2
    count = z.shape[1]
    if spread <= np.finfo(np.float64).eps * (weights @ scores**2):
        return Surrogate(np.zeros(count), float(y_mean), 1.0, np.zeros((count, count)) if with_covariance else None)
    gram = zc.T @ (weights[:, None] * zc) + alpha * np.eye(count)
    coefficients = np.linalg.solve(gram, zc.T @ (weights * yc))
    residuals = yc - zc @ coefficients
    covariance = None
    if with_covariance:
        inverse = np.linalg.inv(gram)
        weighted = (weights * residuals)[:, None] * zc
        covariance = inverse @ (weighted.T @ weighted) @ inverse
    return Surrogate(coefficients, float(y_mean - z_mean @ coefficients),
                     float(1.0 - weights @ residuals**2 / spread), covariance)


@dataclass
class Sampling:
    """The samples of one run, drawn from the seed, and their scores as they come in.

    The fixed and the adaptive run share it: both score a prefix of the same masks and fit
    the surrogate on it, so a run that stops at ``n`` samples is the fixed run of ``n``.
    """

    labels: np.ndarray
    masks: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    scorer: BatchScorer
    make_batch: Callable[[int, int], torch.Tensor]
    channels: int
    done: int = 0

    @property
    def count(self) -> int:
        """The number of superpixels, the surrogate's coefficients."""
        return self.masks.shape[1]

    def score_until(self, stop: int) -> Iterator[int]:
        """Score samples ``done .. stop`` batch by batch, yielding how many are done after each;
        stops quietly, short of ``stop``, when cancelled."""
        begun = self.done

        def make_batch(start: int, end: int) -> torch.Tensor:
            return self.make_batch(begun + start, begun + end)

        for start, batch_scores in self.scorer.run(stop - begun, make_batch):
            self.done = begun + start + len(batch_scores)
            self.scores[begun + start:self.done] = batch_scores
            yield self.done

    def fit(self, with_covariance: bool = False) -> Surrogate:
        """The surrogate on the samples scored so far."""
        done = self.done
        return fit_surrogate(self.masks[:done], self.scores[:done], self.weights[:done],
                             with_covariance=with_covariance)

    def update(self, coefficients: np.ndarray, progress: float, final: bool, figures: dict[str, float]) -> Update:
        """The map of ``coefficients``, each superpixel's pixels carrying its weight."""
        return same_for_every_channel(coefficients[self.labels].astype(np.float32), self.channels, progress, final,
                                      self.scorer.evaluations, {"score": float(self.scores[0]), **figures})


def draw_samples(model: LoadedModel, x: torch.Tensor, target: int, params: LimeParams, total: int,
                 cancel: CancelToken | None, batch_size: int | None) -> Sampling:
    """``total`` on/off masks from the seed, the first all on, and how to make their images.

    The masks come from one stream of uniform numbers, row after row, so the first ``n`` of
    any draw are the masks a draw of ``n`` gives: every run of a seed is a prefix of a longer one.
    """
    channels, height, width = x.shape
    labels = superpixels(x, params)
    count = int(labels.max()) + 1
    masks = np.random.default_rng(params.seed).random((total, count)) < 0.5
    masks[0] = True
    device_x = model_device_input(x, model)
    hidden = fill_image(device_x, labels, params.fill)
    device_labels = torch.as_tensor(labels.ravel(), device=device_x.device)
    device_masks = torch.as_tensor(masks, device=device_x.device)

    def make_batch(start: int, stop: int) -> torch.Tensor:
        # index_select, not [:, labels]: indexing by an image of labels takes torch a far slower path.
        shown = device_masks[start:stop].index_select(1, device_labels).view(stop - start, 1, height, width)
        return torch.where(shown, device_x, hidden)

    return Sampling(labels, masks, kernel_weights(masks, params.kernel_width), np.full(total, np.nan),
                    BatchScorer(model, target, cancel, batch_size), make_batch, channels)


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
    surrogate's ``count + 1`` unknowns are not pinned down by the data. With ``samples`` of 0
    the run is adaptive (:func:`adaptive_run`).
    """
    total = params.samples or MAX_ADAPTIVE_SAMPLES
    sampling = draw_samples(model, x, target, params, total, cancel, batch_size)
    yield from adaptive_run(sampling, params) if params.samples == 0 else fixed_run(sampling)


def fixed_run(sampling: Sampling) -> Iterator[Update]:
    """All the samples drawn, refitting whenever they have grown by a tenth."""
    total = len(sampling.masks)
    first_fit = min(sampling.count + 1, total)
    fitted, coefficients, figures = 0, np.full(sampling.count, np.nan), {}
    for done in sampling.score_until(total):
        final = done == total
        if final or (done >= first_fit and done >= fitted * REFIT_GROWTH):
            surrogate = sampling.fit()
            fitted, coefficients, figures = done, surrogate.coefficients, {"r2": surrogate.r2}
        yield sampling.update(coefficients, done / total, final, figures)


def round_ends(count: int, cap: int = MAX_ADAPTIVE_SAMPLES) -> list[int]:
    """Where adaptive LIME's rounds end: each :data:`ROUND_GROWTH` times the last, up to ``cap``.

    The first round is :data:`FIRST_ROUND_PER_SUPERPIXEL` samples a superpixel (at least one
    more than the superpixels, so the first fit is pinned down). Growing geometrically keeps
    the number of refits (each with its covariance) small, and a run overshoots the samples it
    needed by at most a quarter.
    """
    ends = [min(max(FIRST_ROUND_PER_SUPERPIXEL * count, count + 1), cap)]
    while ends[-1] < cap:
        ends.append(min(int(np.ceil(ends[-1] * ROUND_GROWTH)), cap))
    return ends


def top_superpixels(coefficients: np.ndarray, count: int = TOP_SETTLED) -> frozenset[int]:
    """The ``count`` superpixels with the largest coefficients: the evidence for the target."""
    return frozenset(np.argsort(-coefficients, kind="stable")[:count].tolist())


def top_confidence(surrogate: Surrogate, count: int = TOP_SETTLED) -> float:
    """A lower bound on the chance that the ``count`` largest coefficients are the true ``count`` largest.

    For each pair of a superpixel in the top and one outside it, the chance that their true
    order is the other way round, from the normal approximation of their difference; one less
    the sum of those chances (Bonferroni) bounds the chance that no pair is swapped. Zero where
    the bound says nothing.
    """
    values, covariance = surrogate.coefficients, surrogate.covariance
    order = np.argsort(-values, kind="stable")
    inside, outside = order[:count], order[count:]
    variance = np.diag(covariance)
    difference = values[inside][:, None] - values[outside][None, :]
    spread = np.sqrt(np.maximum(variance[inside][:, None] + variance[outside][None, :]
                                - 2 * covariance[np.ix_(inside, outside)], 0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        swapped = np.where(spread > 0, ndtr(-difference / spread), (difference <= 0).astype(float))
    return float(max(1.0 - swapped.sum(), 0.0))


def relative_error(surrogate: Surrogate) -> float:
    """The largest coefficient's standard error as a share of the largest coefficient (0 for an exact zero map)."""
    error = float(np.sqrt(np.max(np.diag(surrogate.covariance), initial=0.0)))
    peak = float(np.max(np.abs(surrogate.coefficients), initial=0.0))
    if peak == 0:
        return 0.0 if error == 0 else float("inf")
    return error / peak


def adaptive_run(sampling: Sampling, params: LimeParams) -> Iterator[Update]:
    """Samples in rounds (:func:`round_ends`) until the surrogate's ranking of superpixels has settled.

    After each round the surrogate is refitted with its standard errors, and the run stops when
    they put its top :data:`TOP_SETTLED` superpixels in place with a confidence of at least
    ``params.stability`` (:func:`top_confidence`), or every weight within ``params.precision``
    of the largest (:func:`relative_error`), or at the cap. The second rule is for ties: on the
    demo model a few superpixels carry the score and the rest sit near zero, so the fifth and
    sixth are often equal within any sample count's noise (two 5,000-sample runs of different
    seeds disagreed on the top five of 10 of 13 images at 100 superpixels), and samples spent separating them would
    change nothing a reader can see. Rounds that only compared one refit with the last stopped
    by chance where such ties swapped back and forth.
    Every batch streams the last round's map, and every round's refit streams as an update. The
    final figures give ``samples_used``, ``top_confidence`` and ``relative_error`` (the stability
    figures) and ``cap_reached``.
    """
    cap = len(sampling.masks)
    coefficients, figures = np.full(sampling.count, np.nan), {}
    for stop in round_ends(sampling.count, cap):
        for done in sampling.score_until(stop):
            if done < stop:
                yield sampling.update(coefficients, done / cap, False, figures)
        if sampling.done < stop:
            return  # cancelled
        surrogate = sampling.fit(with_covariance=True)
        coefficients = surrogate.coefficients
        confidence, error = top_confidence(surrogate), relative_error(surrogate)
        settled = confidence >= params.stability or error <= params.precision
        final = settled or stop == cap
        capped = final and not settled
        figures = {"r2": surrogate.r2, "samples_used": float(stop), "top_confidence": confidence,
                   "relative_error": error, "cap_reached": float(capped)}
        update = sampling.update(coefficients, 1.0 if final else stop / cap, final, figures)
        if final:
            note = (f"LIME stopped at its cap of {cap} samples before its ranking of superpixels settled "
                    f"(top five {confidence:.0%} sure, weights within {error:.1%} of the largest)")
            yield replace(update, notes=(note,)) if capped else update
            return
        yield update


METHOD = Method("lime", "LIME (superpixels)", LimeParams, lime, baseline=lime_baseline,
                units="surrogate weight (probability)", choices={"segmentation": tuple(SEGMENTERS)},
                image_or_value=("fill",), outlines=Outlines("superpixels", superpixels), hints={
                    "samples": "Perturbed images scored (0: adaptive, until the ranking settles)",
                    "segments": "Superpixels aimed at: the map's pieces",
                    "segmentation": "How the image is cut into superpixels",
                    "fill": "What a switched-off superpixel shows: its mean, a blur, black, or a value",
                    "seed": "Draws the samples, so that a run repeats",
                    "kernel_width": "How fast a sample's weight falls as it moves away from the whole image",
                    "stability": "Adaptive runs (samples 0): how sure of the top five before stopping",
                    "precision": "Adaptive runs (samples 0): stop once every weight is known to this share "
                                 "of the largest",
                })
