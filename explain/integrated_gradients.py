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

With ``noise_samples`` above zero the map is SmoothGrad over integrated gradients (Smilkov et al.
2017): the mean of the attributions of that many copies of the input with Gaussian noise added,
all from the same baseline. A gradient map of a ReLU network is speckled, each pixel flipping
with the units it switches; averaging over a small neighbourhood of the input leaves the structure
the model reacts to. The copies' paths are walked one after another in the same batches, and each
update is the mean over the copies begun, the one under way estimated as above. The final result
equals ``captum.attr.NoiseTunnel(IntegratedGradients(...))`` with ``nt_type="smoothgrad"`` given
the same noise.

Where the model starts with affine operators (a convolution, batch norm, input normalisation),
the gradients are taken at the end of that stem and summed there: the stem's backward pass then
runs once per update rather than once per node (``explain/linear_stem.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.fx import GraphModule

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import BatchScorer, CancelToken, Update, model_device_input
from explain.in_place import writes_in_place
from explain.linear_stem import SplitModel, split_linear_stem
from explain.method import Display, Method
from explain.model_file import LoadedModel

RULES = ("gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")


@dataclass(frozen=True)
class IntegratedGradientsParams:
    """Quadrature nodes, the rule, the baseline (a value, ``mean`` or ``blur``), and SmoothGrad.

    ``noise_samples`` noisy copies of the input are averaged (0: plain integrated gradients). The
    noise's standard deviation is ``noise_level`` times the input's range (maximum minus minimum),
    the paper's measure, so that one level suits inputs in any units; 0.1 to 0.2 works well there.
    ``seed`` draws the noise, so that a run repeats.
    """

    steps: int = 50
    rule: str = "gausslegendre"
    baseline: float | str = 0.0
    noise_samples: int = 0
    noise_level: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.noise_samples < 0:
            raise ValueError(f"noise samples must be zero or more, not {self.noise_samples}")
        if not self.noise_level >= 0:
            raise ValueError(f"the noise level must be zero or more, not {self.noise_level}")


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


def noise_std(x: torch.Tensor, params: IntegratedGradientsParams) -> float:
    """The noise's standard deviation: ``noise_level`` times the input's range."""
    return params.noise_level * float(x.max() - x.min())


def noisy_inputs(x: torch.Tensor, params: IntegratedGradientsParams) -> torch.Tensor:
    """The inputs whose attributions are averaged, ``(samples, channels, height, width)``: the noisy
    copies of ``x`` on the CPU, or ``x`` alone when there is no noise.

    The noise comes from a generator of its own seeded with ``seed``, on the CPU, so that a run
    repeats on any device and leaves torch's global generator alone. It is drawn as Captum's
    NoiseTunnel draws it from the global one (one ``torch.normal`` call for all the copies): the
    same seed gives the same noise.
    """
    x = x.to(torch.float32)
    if params.noise_samples == 0:
        return x[None]
    generator = torch.Generator().manual_seed(params.seed)
    noise = torch.normal(0.0, noise_std(x, params), size=(params.noise_samples, *x.shape), generator=generator)
    return x + noise


class PathSums:
    """The mean attribution over the inputs' paths, which come one after another, node by node.

    ``attribution(gradient, path)`` turns the weighted sum of a path's gradients (after the
    stem, if it was cut) into that path's attribution. At most one path is under way at a time;
    its estimate scales the nodes done so far up to the whole rule.
    """

    def __init__(self, weights: np.ndarray, device: torch.device,
                 attribution: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
        self.weights = weights  # in the order the nodes are done
        self.step_weights = torch.tensor(weights, dtype=torch.float32, device=device)
        self.steps = len(weights)
        self.attribution = attribution
        self.finished: torch.Tensor | None = None  # the sum of the finished paths' attributions
        self.paths_done = 0
        self.current: torch.Tensor | None = None
        self.current_weight = 0.0

    def add(self, start: int, gradients: torch.Tensor) -> None:
        """Gradients of nodes ``start ..`` counted over all the paths, in order; a batch may span paths."""
        stop = start + len(gradients)
        ranks = torch.arange(start, stop, device=gradients.device) % self.steps
        # Weighted in float32 on the device, as Captum multiplies too.
        weighted = gradients * self.step_weights[ranks].view(-1, 1, 1, 1)
        for path in range(start // self.steps, (stop - 1) // self.steps + 1):
            first, last = max(start, path * self.steps), min(stop, (path + 1) * self.steps)
            part = weighted[first - start:last - start].sum(dim=0)
            self.current = part if self.current is None else self.current + part
            self.current_weight += float(self.weights[first - path * self.steps:last - path * self.steps].sum())
            if last == (path + 1) * self.steps:
                self._finish()

    def _finish(self) -> None:
        done = self.attribution(self.current, self.paths_done)
        self.finished = done if self.finished is None else self.finished + done
        self.paths_done += 1
        self.current, self.current_weight = None, 0.0

    def begun(self) -> int:
        """How many paths the mean is over: the finished ones and the one under way."""
        return self.paths_done + (self.current is not None)

    def mean(self) -> torch.Tensor:
        """The mean attribution over the paths begun; exactly the rule's once they are all done."""
        total = self.finished
        if self.current is not None:
            # The gradients seen so far stand for the whole path, in the proportion of the rule.
            scale = float(self.weights.sum()) / self.current_weight
            estimate = self.attribution(self.current * scale, self.paths_done)
            total = estimate if total is None else total + estimate
        return total / self.begun()


def integrated_gradients(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: IntegratedGradientsParams = IntegratedGradientsParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """Integrated gradients of ``x`` ``(channels, height, width)`` for output ``target``, smoothed
    over noisy copies of ``x`` when ``noise_samples`` is above zero."""
    nodes, weights = quadrature(params.rule, params.steps)
    order = interleaved_order(params.steps)
    device_x = model_device_input(x, model)
    baseline = path_start(device_x, params)
    inputs = model_device_input(noisy_inputs(x, params), model)
    paths = inputs - baseline
    scorer = BatchScorer(model, target, cancel, batch_size)
    ends = scorer.score(torch.stack([device_x, baseline]))
    score, baseline_score = float(ends[0]), float(ends[1])
    # Gradients are taken after the model's affine stem and summed there, then carried back
    # through the stem once per path and update (explain/linear_stem.py).
    split = split_linear_stem(model.module)
    forward = split.rest if split else None
    alphas = torch.tensor(nodes[order], dtype=torch.float32, device=model.device)

    def make_batch(start: int, stop: int) -> torch.Tensor:
        # Node ``i`` over all the paths is node ``i % steps`` of path ``i // steps``.
        index = torch.arange(start, stop, device=model.device)
        points = baseline + alphas[index % params.steps].view(-1, 1, 1, 1) * paths[index // params.steps]
        return after_stem(split, points)

    def attribution(gradient: torch.Tensor, path: int) -> torch.Tensor:
        return (carried_back(split.stem, device_x, gradient) if split else gradient) * paths[path]

    # Autograd refuses to let a graph write into the leaf it differentiates by. The rest after a
    # cut overwrites nothing; a whole model keeps its in-place operators (explain/in_place.py),
    # so it gets a copy of the batch, through which the gradient flows back.
    graph = forward or model.module
    copy_input = isinstance(graph, GraphModule) and writes_in_place(graph)

    def weighted_gradients(batch: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            point = batch.detach().requires_grad_(True)
            outputs = model.target_scores(point.clone() if copy_input else point, target, forward)
            (gradients,) = torch.autograd.grad(outputs.sum(), point)
        return gradients

    sums = PathSums(weights[order], model.device, attribution)
    # The score of each input whose path has begun: what its attribution should sum to, less the baseline's.
    input_scores = [score] if not params.noise_samples else []
    count = len(paths) * params.steps
    for start, gradients in scorer.run(count, make_batch, weighted_gradients):
        sums.add(start, gradients)
        while len(input_scores) < sums.begun():
            input_scores.append(float(scorer.score(inputs[len(input_scores)][None])[0]))
        stop = start + len(gradients)
        noisy = {"noisy_score": float(np.mean(input_scores))} if params.noise_samples else {}
        yield path_update(sums.mean(), stop / count, stop == count, scorer.evaluations,
                          {"score": score, "baseline_score": baseline_score, **noisy})


def path_update(mean: torch.Tensor, progress: float, final: bool, evaluations: int,
                scores: dict[str, float]) -> Update:
    """An update with the completeness gap: the attributions' sum against the score explained
    less the baseline's, which the exact integral would close.

    With noise, the score explained is ``noisy_score``, the mean score of the noisy copies begun:
    it is what the smoothed map sums to, not the clean input's ``score``.
    """
    attribution = mean.detach().to("cpu", torch.float32).numpy()
    explained = scores.get("noisy_score", scores["score"])
    gap = float(attribution.sum(dtype=np.float64)) - (explained - scores["baseline_score"])
    figures = {**scores, "completeness_gap": gap}
    return Update(
        heatmap=attribution.sum(axis=0).astype(np.float32),
        progress=progress,
        final=final,
        evaluations=evaluations,
        attribution=attribution if final else None,
        figures=figures,
    )


METHOD = Method("ig", "Integrated gradients", IntegratedGradientsParams, integrated_gradients, baseline=path_start,
                units="share of the probability", choices={"rule": RULES}, image_or_value=("baseline",),
                display=Display("absolute", 2.0))
