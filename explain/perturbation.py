"""Meaningful perturbation (Fong & Vedaldi 2017), streamed as the mask is learned.

Instead of hiding fixed windows, learn the smallest smooth region whose deletion changes the
model's mind. A low-resolution mask ``m`` (one cell per ``mask_cell`` input pixels, 28 x 28 for
a 224 input) is upsampled bilinearly to the input, and the perturbed input is
``m * x + (1 - m) * r``: where ``m`` is 1 the pixel is kept, where it is 0 it shows ``r``, the
``fill`` (computed once). The paper tried a constant, noise and a blur, and preferred the blur,
which removes a finding's detail while keeping the broad anatomy; it is the default. A black fill
(the image's darkest value) is one choice away and measured better on the demo model's effusion
phantoms (``benchmarks/choose_defaults.py perturbation``, seed 8000: hottest point within 5 pixels
of the fluid on 7 of 8 against 4 of 8, twice the relevance mass), since smooth fluid blurred is
still fluid. It stays an option because it is brittle: on the demo film its hottest point falls on
the film's bottom edge, random black patches move that model more than the map's region does, and
on a random network it finds no region at all, where the blur finds one.
Two games, as in the paper:

- ``delete``: find the smallest region whose deletion kills the score; the heat is ``1 - m``;
- ``preserve``: find the smallest region that alone keeps the score; the heat is ``m``.

Both minimise, over the heat ``h`` in [0, 1] (``1 - m`` to delete, ``m`` to preserve), with
Adam and a projection back onto [0, 1] after each step::

    lambda_area * mean(h) + lambda_tv * TV(h) - log(1 - p_target(perturbed))   (delete)
    lambda_area * mean(h) + lambda_tv * TV(h) - log(p_target(perturbed))       (preserve)

with ``mean(h)`` over the input's pixels and ``TV(h) = mean |row differences|^beta + mean
|column differences|^beta`` on the mask's own grid. Each step shifts the image (and its fill)
under the mask by a random jitter of up to ``jitter`` pixels, as Fong & Vedaldi do, so that a
mask cannot exploit one exact alignment of pixels: such a mask would be an adversarial
pattern, not an explanation.

One departure from the paper: the score term is a log-probability, not the probability. A
clinical model is often sure of itself (p = 0.9999), where the gradient of ``p`` vanishes and
the area term wins everywhere: with ``p`` itself, four of six confident blob detections got an
empty mask. ``-log(1 - p)`` is about the logit where the model is sure and fades to zero once the
score is gone, so it keeps the paper's floor without its saturation. (For softmax models,
``1 - p`` is the sum of the other labels' probabilities, which stays exact when ``p`` rounds
to 1.)

The defaults, and why. From the paper: a 28 x 28 mask for a 224 input (``mask_cell`` 8), a
blur of sigma 10, Adam at a learning rate of 0.1, ``beta`` 3 and a jitter of 4 pixels. Its area
weight, 1e-4, taken per input pixel of a 224 input, is ``lambda_area`` 5 as a mean over pixels:
deleting the whole image must buy five nats of certainty, deleting a tenth of it half a nat.
The smoothness weight is a third of that, 1.5, which kept the masks in one piece; between a
third and an equal weight the masks hardly changed. 300 iterations: 500 gave the same masks.
Checked on a small CNN trained to find a faint blob (sigma 10 pixels) in textured noise at
224 x 224: 69% of the deletion heat and 97% of the preserve heat lay within 20 pixels of the
blob's centre.

Scaled to the model. The defaults suit a model whose score drops by nats when its finding is
blurred. On one whose score barely moves (MONAI's ResNet-18 with random weights on a 64-pixel
input: 0.55, and 0.50 with the whole image blurred), no cell was ever worth its area and the
mask stayed empty; scaled, its mask deletes a fifth of the image and takes the score to 0.51. So the
first step, which takes the score term's gradient and the penalties' apart, scales both
penalties down until the most rewarding cell offers :data:`LEAST_PULL` times what it costs;
they are never scaled up, so a model in the paper's regime is optimised as before. The factor
is reported as ``penalty_scale``. It costs no evaluation: a forward pass under full deletion
would measure the same thing less well, as the demo model's score moves little under a whole-image
blur (0.94 to 0.91) but a lot under a small, well-placed one.

A blank map is never passed off as an explanation. When the final heat stays below
:data:`REGION_HEAT` everywhere, ``region_found`` is 0 and the final update carries a note that
says so and what to change.

There is no Captum equivalent. The attribution is defined here as the heat (the learned
deletion ``1 - m``, or the preserved ``m``) upsampled to the input grid and broadcast to every
channel, ``(channels, height, width)``, with values in [0, 1].

Beside the final map: ``score``, the target probability of the input; ``deleted_score``, its
probability once the mask's deletion is applied (without jitter; in ``preserve`` mode, with
everything but the kept region filled); ``mask_area``, the mean of the heat, the share of the
input deleted (or kept); ``penalty_scale``, the factor on the penalties; ``region_found``, 1 or
0. A deleted score close to the score says the mask explains little.

Streaming: a partial map is the current mask, every ``UPDATE_EVERY`` steps; the heat starts
at 0 (nothing deleted, or nothing preserved) and grows toward the final answer. Evaluations
count forward passes: the original score, one per step, and the final mask's score.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from explain.baselines import baseline_image, parse_baseline
from explain.engine import CancelToken, Update, model_device_input
from explain.method import Method
from explain.model_file import LoadedModel

#: Steps between partial maps: often enough to watch the mask form, rarely enough to cost nothing.
UPDATE_EVERY = 10
MODES = ("delete", "preserve")
#: Floor under a probability before its logarithm, so a saturated model gives a finite loss.
TINY = 1e-30
#: At the start, the most rewarding cell must offer this many times what the penalties charge
#: for it; below that, the penalties are scaled down to the model. Adam's first steps follow the
#: gradient's sign, so this says which cells are worth taking at first: those offering at least
#: a quarter of the best. The paper's regime is well above it (7.7 on the tests' region detector,
#: about 100 on the demo model), so calibrated models keep their penalties as they are.
LEAST_PULL = 4.0
#: A mask whose heat stays below this everywhere deletes (or keeps) no pixel more than half: no region.
REGION_HEAT = 0.5


@dataclass(frozen=True)
class PerturbationParams:
    """The optimisation's length, step and weights; the mask's grain; the fill; the game played.

    ``mask_cell`` is the side of one mask cell in model-input pixels, ``blur_sigma`` and
    ``jitter`` are in model-input pixels too. ``mode`` is ``delete`` or ``preserve``. ``fill``
    is what a deleted pixel shows: the paper's ``blur``, or, as it also tried, a constant
    (``black``, the image's darkest value; ``mean``; or a number in model-input space).
    """

    iterations: int = 300
    learning_rate: float = 0.1
    lambda_area: float = 5.0
    lambda_tv: float = 1.5
    beta: float = 3.0
    mask_cell: int = 8
    blur_sigma: float = 10.0
    jitter: int = 4
    mode: str = "delete"
    seed: int = 0
    fill: float | str = "blur"

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise ValueError(f"iterations must be at least 1, not {self.iterations}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning rate must be positive, not {self.learning_rate}")
        if self.lambda_area < 0 or self.lambda_tv < 0:
            raise ValueError("the area and smoothness weights cannot be negative")
        if self.beta < 1:
            raise ValueError(f"beta must be at least 1, not {self.beta}")
        if self.mask_cell < 1:
            raise ValueError(f"mask cell must be at least 1 pixel, not {self.mask_cell}")
        if not self.blur_sigma > 0:
            raise ValueError(f"blur sigma must be positive, not {self.blur_sigma}")
        if self.jitter < 0:
            raise ValueError(f"jitter cannot be negative, not {self.jitter}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be 'delete' or 'preserve', not {self.mode!r}")
        if isinstance(self.fill, str):
            try:
                parse_baseline(self.fill)
            except ValueError:
                raise ValueError(f"fill must be 'blur', 'black', 'mean' or a number, not {self.fill!r}") from None


def perturbation_baseline(x: torch.Tensor, params: PerturbationParams) -> torch.Tensor:
    """What a fully deleted pixel shows: its ``fill``, by default the input blurred by ``blur_sigma``."""
    return baseline_image(x, params.fill, blur_sigma=params.blur_sigma)


def total_variation(mask: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean ``beta``-th power of the differences between neighbouring cells, down and across.

    A ``beta`` above 2 forgives gentle slopes and punishes jumps, so masks come out as smooth
    blobs rather than speckle.
    """
    down = (mask[1:, :] - mask[:-1, :]).abs().pow(beta).mean() if mask.shape[0] > 1 else mask.new_zeros(())
    across = (mask[:, 1:] - mask[:, :-1]).abs().pow(beta).mean() if mask.shape[1] > 1 else mask.new_zeros(())
    return down + across


def penalty_scale(pull: torch.Tensor, price: torch.Tensor) -> float:
    """How far to scale the penalties down so that the model's most rewarding cell is worth taking.

    ``pull`` is the score term's gradient over the mask's cells at the start, ``price`` the
    penalties' (the area's alone, as an empty mask has no edges). Deleting a cell pays where
    its pull is negative. The defaults suit a model whose score drops by nats when a finding is
    blurred; on one whose score barely moves (a random network, a head never calibrated) no cell
    is ever worth its area, and the mask would stay empty however clear the evidence. So the
    penalties are scaled until the best cell offers :data:`LEAST_PULL` times its price, never
    up. A model that no cell moves keeps them as they are, and its empty mask is reported.
    """
    best = float((-pull).max())
    charged = float(price.abs().max())
    if best <= 0 or charged == 0:
        return 1.0
    return min(1.0, best / (LEAST_PULL * charged))


def no_region_note(params: PerturbationParams) -> str:
    """The one line that says a mask found nothing, and what to change."""
    game = ("deleting no part of the image lowered the score" if params.mode == "delete"
            else "no part of the image alone kept the score")
    return (f"No region found: {game} enough to pay for its area. The map is blank, not an explanation; "
            f"lower the area weight (now {params.lambda_area:g}) or check that the model reacts to this image.")


class MaskLearner:
    """One image, its fill and the heat being learned, with the steps that learn it.

    Keeps the model's parameters untouched: gradients are taken with ``torch.autograd.grad``
    with respect to the heat alone, so nothing accumulates in the model's ``.grad``.
    """

    def __init__(self, model: LoadedModel, x: torch.Tensor, target: int, params: PerturbationParams) -> None:
        height, width = x.shape[1:]
        if params.mask_cell > min(height, width):
            raise ValueError(f"mask cell {params.mask_cell} is larger than the input {height} x {width}")
        self.model, self.target, self.params = model, target, params
        self.size = (height, width)
        # Plain tensors even when the caller made ``x`` under inference mode, so autograd can use them.
        with torch.inference_mode(False):
            self.others = torch.arange(len(model.card.labels), device=model.device) != target
            image = model_device_input(x, model).clone()
            # Padded by the jitter with edge values, so a shifted view is a crop of these.
            pad = (params.jitter,) * 4
            self.image = F.pad(image[None], pad, mode="replicate")
            self.fill = F.pad(perturbation_baseline(image, params)[None], pad, mode="replicate")
            self.detail = self.image - self.fill
            grid = (-(-height // params.mask_cell), -(-width // params.mask_cell))
            self.heat = torch.zeros(grid, device=model.device, requires_grad=True)
        self.optimiser = torch.optim.Adam([self.heat], lr=params.learning_rate)
        self.generator = torch.Generator().manual_seed(params.seed)
        self.evaluations = 0
        #: The factor on the penalties, set from the model's own sensitivity at the first step.
        self.scale: float | None = None

    def upsampled(self, heat: torch.Tensor) -> torch.Tensor:
        """The heat on the input grid, ``(1, 1, H, W)``."""
        return F.interpolate(heat[None, None], size=self.size, mode="bilinear", align_corners=False)

    def keep(self, heat: torch.Tensor) -> torch.Tensor:
        """The mask ``m`` (1 keeps a pixel) for an upsampled heat."""
        return 1 - heat if self.params.mode == "delete" else heat

    def shifted(self, padded: torch.Tensor, shift: tuple[int, int]) -> torch.Tensor:
        """The input-sized view of a padded image moved by ``shift`` pixels (rows, columns)."""
        (height, width), jitter = self.size, self.params.jitter
        top, left = jitter + shift[0], jitter + shift[1]
        return padded[..., top:top + height, left:left + width]

    def perturbed(self, keep: torch.Tensor, shift: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """The input with the unkept part filled, the image shifted by ``shift`` under the mask.

        Written as the fill plus the kept share of the detail that the fill removes, which is
        ``keep * image + (1 - keep) * fill`` in one multiplication.
        """
        return self.shifted(self.fill, shift) + keep * self.shifted(self.detail, shift)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """The label probabilities of a one-image batch, counted as one evaluation."""
        self.evaluations += 1
        return self.model.probabilities(batch)[0]

    def original_score(self) -> float:
        """The target probability of the input itself."""
        with torch.inference_mode():
            return float(self.probabilities(self.shifted(self.image, (0, 0)))[self.target])

    def perturbed_score(self) -> float:
        """The target probability of the input perturbed by the current mask, unshifted."""
        with torch.inference_mode():
            keep = self.keep(self.upsampled(self.heat.detach()))
            return float(self.probabilities(self.perturbed(keep))[self.target])

    def surprise(self, probabilities: torch.Tensor) -> torch.Tensor:
        """The score term: ``-log(1 - p)`` to delete, ``-log p`` to preserve."""
        p = probabilities[self.target]
        if self.params.mode == "preserve":
            return -torch.log(p.clamp_min(TINY))
        rest = probabilities[self.others].sum() if self.model.card.activation == "softmax" else 1 - p
        return -torch.log(rest.clamp_min(TINY))

    def penalty(self) -> torch.Tensor:
        """The area and smoothness terms of the objective, before any scaling."""
        return (self.params.lambda_area * self.upsampled(self.heat).mean()
                + self.params.lambda_tv * total_variation(self.heat, self.params.beta))

    def step(self) -> None:
        """One Adam step on the objective for a random jitter, then back into [0, 1].

        The score term's gradient and the penalties' are taken apart, so that the first step
        can scale the penalties to the model (:func:`penalty_scale`) at no extra evaluation.
        """
        jitter = self.params.jitter
        shift = tuple(int(s) for s in torch.randint(-jitter, jitter + 1, (2,), generator=self.generator))
        with torch.inference_mode(False), torch.enable_grad():
            keep = self.keep(self.upsampled(self.heat))
            surprise = self.surprise(self.probabilities(self.perturbed(keep, shift)))
            (pull,) = torch.autograd.grad(surprise, self.heat)
            (price,) = torch.autograd.grad(self.penalty(), self.heat)
            if self.scale is None:
                self.scale = penalty_scale(pull, price)
            self.heat.grad = pull + self.scale * price
            self.optimiser.step()
            with torch.no_grad():
                self.heat.clamp_(0, 1)

    def heatmap(self) -> np.ndarray:
        """The current heat on the input grid, float32 in [0, 1]."""
        with torch.inference_mode():
            upsampled = self.upsampled(self.heat.detach())
        return upsampled[0, 0].to("cpu", torch.float32).numpy().clip(0, 1)


def perturbation(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: PerturbationParams = PerturbationParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """Meaningful-perturbation heat of ``x`` ``(channels, height, width)`` for output ``target``.

    ``batch_size`` is accepted so that every method is called alike, and unused: a step is one
    image forward and back, and the steps depend on each other, so there is nothing to batch.
    """
    cancel = cancel or CancelToken()
    channels, height, width = x.shape
    learner = MaskLearner(model, x, target, params)
    original = learner.original_score()
    for step in range(1, params.iterations + 1):
        if cancel.cancelled:
            return
        learner.step()
        if step % UPDATE_EVERY == 0 and step < params.iterations:
            yield Update(heatmap=learner.heatmap(), progress=step / params.iterations, final=False,
                         evaluations=learner.evaluations, figures={"score": original})
    heatmap = learner.heatmap()
    deleted = learner.perturbed_score()
    found = bool(heatmap.max() >= REGION_HEAT)
    yield Update(
        heatmap=heatmap,
        progress=1.0,
        final=True,
        evaluations=learner.evaluations,
        attribution=np.broadcast_to(heatmap, (channels, height, width)).copy(),
        figures={"score": original, "deleted_score": deleted, "mask_area": float(heatmap.mean()),
                 "penalty_scale": float(learner.scale), "region_found": float(found)},
        notes=() if found else (no_region_note(params),),
    )


METHOD = Method("perturbation", "Meaningful perturbation", PerturbationParams, perturbation,
                baseline=perturbation_baseline, units="mask: share removed", choices={"mode": MODES},
                fixed_score="log-probability", hints={
                    "iterations": "Optimisation steps of the mask",
                    "learning_rate": "Step size of the optimisation",
                    "lambda_area": "Weight of the mask's size: higher keeps the region smaller",
                    "lambda_tv": "Weight of the mask's roughness: higher keeps the region smooth",
                    "beta": "Exponent of the roughness penalty",
                    "mask_cell": "Side of one mask cell, in model-input pixels",
                    "blur_sigma": "How much the blur fill blurs, in model-input pixels",
                    "jitter": "Random shift of the image at each step, in pixels, against artefacts",
                    "mode": "delete: the smallest region whose removal kills the score; preserve: that alone keeps it",
                    "seed": "Draws the jitter, so that a run repeats",
                    "fill": "What a deleted pixel shows: a blur (the paper's), black, the mean, or a value",
                })
