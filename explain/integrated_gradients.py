"""Integrated gradients (Sundararajan et al. 2017), streamed as a refining quadrature.

The attribution of each input value is ``(x - baseline)`` times the integral, along the straight
path from the baseline to the input, of the target probability's gradient. The integral is a
quadrature rule: by default Gauss-Legendre with ``steps`` nodes, as Captum does; Riemann rules
are options. The final result equals ``captum.attr.IntegratedGradients`` with the same rule,
steps and baseline.

The nodes are evaluated in an interleaved order that covers the whole path early (both ends,
the middle, the quarters, and so on). A partial result is the weighted mean of the gradients at the
nodes done so far, over the whole path: an estimate of the full integral at every step, never
a truncated path, and exactly the rule once every node is in. With each update comes the
completeness gap: the attributions' sum against ``f(input) - f(baseline)``, which the exact
integral would close.

Where the model starts with affine operators (a convolution, batch norm, input normalisation),
the gradients are taken at the end of that stem and summed there: the stem's backward pass then
runs once per update rather than once per node (``explain/linear_stem.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.fx import GraphModule

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import BatchScorer, CancelToken, Update, model_device_input
from explain.in_place import writes_in_place
from explain.linear_stem import SplitModel, split_linear_stem
from explain.method import Method
from explain.model_file import LoadedModel

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


@dataclass(frozen=True)
class IntegratedGradientsParams:
    """Quadrature nodes, the rule, and the baseline (a value, ``mean`` or ``blur``)."""

    steps: int = 50
    rule: str = "gausslegendre"
    baseline: float | str = 0.0


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] along the path and their weights, exactly as Captum computes them."""
    if rule == "gausslegendre":
        points, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (1 + points), 0.5 * weights
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    if steps < 2:
        raise ValueError("a Riemann rule needs at least 2 steps")
    kind = rule.split("_")[1]
    weights = np.full(steps, 1.0 / steps)
    nodes = {
        "trapezoid": torch.linspace(0, 1, steps),
        "left": torch.linspace(0, 1 - 1 / steps, steps),
        "middle": torch.linspace(1 / (2 * steps), 1 - 1 / (2 * steps), steps),
        "right": torch.linspace(1 / steps, 1, steps),
    }[kind]
    if kind == "trapezoid":
        weights[0] /= 2
        weights[-1] /= 2
    return np.asarray(nodes.tolist()), weights


def interleaved_order(count: int) -> np.ndarray:
    """Node ranks so that each next node is the one farthest from those taken: ends first.

    Greedy farthest-point order on the ranks: both ends, the middle, the quarters, and so on,
    so that any prefix is spread over the whole path.
    """
    if count <= 2:
        return np.arange(count)
    order = [0, count - 1]
    distance = np.minimum(np.arange(count), count - 1 - np.arange(count)).astype(float)
    distance[order] = -1
    for _ in range(count - 2):
        pick = int(np.argmax(distance))
        order.append(pick)
        distance = np.minimum(distance, np.abs(np.arange(count) - pick))
        distance[order] = -1
    return np.asarray(order)


def path_start(x: torch.Tensor, params: IntegratedGradientsParams) -> torch.Tensor:
    """Where the path starts; a blur is broad (a sixteenth of the image) to remove the finding."""
    return baseline_image(x, params.baseline, blur_sigma=broad_blur_sigma(x))


def after_stem(split: SplitModel | None, points: torch.Tensor) -> torch.Tensor:
    """Points of the path as the rest of the model sees them: through the stem, if it was cut.

    Each point goes through the stem as the whole model would take it, rather than being
    interpolated between the stem's outputs at the two ends. The two are equal in exact
    arithmetic but round differently, and in a deep ReLU network a rounding difference can tip
    a unit across zero and change the gradient there: on MONAI's DenseNet-121 that moved the
    map by a thousandth of its peak away from Captum's. A stem's forward pass costs little; its
    backward pass, which the cut saves, runs once per update.
    """
    if split is None:
        return points
    with torch.no_grad():
        return split.stem(points)


def carried_back(stem: torch.nn.Module, x: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """A gradient at the stem's output carried back to the input: one backward pass of the stem."""
    with torch.enable_grad():
        point = x[None].detach().requires_grad_(True)
        (result,) = torch.autograd.grad(stem(point), point, gradient[None])
    return result[0]


def integrated_gradients(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: IntegratedGradientsParams = IntegratedGradientsParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """Integrated gradients of ``x`` ``(channels, height, width)`` for output ``target``."""
    nodes, weights = quadrature(params.rule, params.steps)
    order = interleaved_order(params.steps)
    device_x = model_device_input(x, model)
    baseline = path_start(device_x, params)
    path = device_x - baseline
    scorer = BatchScorer(model, target, cancel, batch_size)
    ends = scorer.score(torch.stack([device_x, baseline]))
    score, baseline_score = float(ends[0]), float(ends[1])
    # Gradients are taken after the model's affine stem and summed there, then carried back
    # through the stem once per update (explain/linear_stem.py).
    split = split_linear_stem(model.module)
    forward = split.rest if split else None
    # Weighted gradients, accumulated on the device; Captum multiplies in float32 too.
    alphas = torch.tensor(nodes[order], dtype=torch.float32, device=model.device)
    step_weights = torch.tensor(weights[order], dtype=torch.float32, device=model.device)
    total = torch.zeros_like(after_stem(split, device_x[None])[0])
    done_weight = 0.0

    def make_batch(start: int, stop: int) -> torch.Tensor:
        return after_stem(split, baseline + alphas[start:stop].view(-1, 1, 1, 1) * path)

    # Autograd refuses to let a graph write into the leaf it differentiates by. The rest after a
    # cut overwrites nothing; a whole model keeps its in-place operators (explain/in_place.py),
    # so it gets a copy of the batch, through which the gradient flows back.
    graph = forward or model.module
    copy_input = isinstance(graph, GraphModule) and writes_in_place(graph)

    def weighted_gradients(batch: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            point = batch.detach().requires_grad_(True)
            outputs = model.probabilities(point.clone() if copy_input else point, forward)[:, target]
            (gradients,) = torch.autograd.grad(outputs.sum(), point)
        return gradients

    for start, gradients in scorer.run(params.steps, make_batch, weighted_gradients):
        stop = start + len(gradients)
        total += (gradients * step_weights[start:stop].view(-1, 1, 1, 1)).sum(dim=0)
        done_weight += float(weights[order[start:stop]].sum())
        final = stop == params.steps
        # The gradients seen so far stand for the whole path, in the proportion of the rule.
        estimate = total * (float(weights.sum()) / done_weight) if not final else total
        if split:
            estimate = carried_back(split.stem, device_x, estimate)
        attribution = (estimate * path).detach().to("cpu", torch.float32).numpy()
        gap = float(attribution.sum(dtype=np.float64)) - (score - baseline_score)
        yield Update(
            heatmap=attribution.sum(axis=0).astype(np.float32),
            progress=stop / params.steps,
            final=final,
            evaluations=scorer.evaluations,
            attribution=attribution if final else None,
            figures={"score": score, "baseline_score": baseline_score, "completeness_gap": gap},
        )


METHOD = Method("ig", "Integrated gradients", IntegratedGradientsParams, integrated_gradients, baseline=path_start,
                units="share of the probability", choices={"rule": RULES}, image_or_value=("baseline",))
