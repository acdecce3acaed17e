"""Integrated gradients (Sundararajan et al. 2017), streamed as a refining quadrature.

The attribution of each input value is ``(x - baseline)`` times the integral, along the straight
path from the baseline to the input, of the target probability's gradient. The integral is a
quadrature rule: by default Gauss-Legendre with ``steps`` nodes, as Captum does; Riemann rules
are options. The final result equals ``captum.attr.IntegratedGradients`` with the same rule,
steps and baseline.

With ``steps`` of 0 the rule is adaptive: the trapezoid rule on both ends and the middle, its
intervals split where the gap arises (the scores at the nodes tell), until the completeness gap
has been below ``tolerance`` of ``f(input) - f(baseline)`` on two refinements in a row or
:data:`MAX_ADAPTIVE_NODES` are spent. The gradients are kept per node, at the input's size.
Each refinement streams as an update, exactly the rule on the nodes so far.

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
from dataclasses import dataclass, field, replace

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
    """Quadrature nodes, the rule, the baseline (a value, ``mean``, ``black`` or ``blur``), and SmoothGrad.

    ``steps`` nodes of ``rule`` give the fixed rule, Captum's; ``steps`` of 0 refines the
    trapezoid rule where it errs until the completeness gap is at most ``tolerance`` of the score explained
    less the baseline's (``rule`` then does not apply). The image blurred as the path's start is
    the best of a sweep on validation phantoms (see the README): blurring takes the fluid's edge
    away and keeps the film, so the path walks only through what makes the finding, where a black
    start also credits all the anatomy it brings back.

    ``noise_samples`` noisy copies of the input are averaged (0: plain integrated gradients). The
    noise's standard deviation is ``noise_level`` times the input's range (maximum minus minimum),
    the paper's measure, so that one level suits inputs in any units; 0.1 to 0.2 works well there.
    ``seed`` draws the noise, so that a run repeats.
    """

    steps: int = 16
    rule: str = "gausslegendre"
    tolerance: float = 0.01
    baseline: float | str = "blur"
    noise_samples: int = 0
    noise_level: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0:
            raise ValueError(f"steps must be zero (adaptive) or more, not {self.steps}")
        if not self.tolerance > 0:
            raise ValueError(f"the tolerance must be above zero, not {self.tolerance}")
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


def carried_back(stem: torch.nn.Module, x: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Gradients at the stem's output ``(n, ...)`` carried back to the input: one backward pass of
    the stem. It is affine, so the pass is the same at every point; it is taken at ``x``."""
    with torch.enable_grad():
        point = x.expand(len(gradients), *x.shape).detach().requires_grad_(True)
        (result,) = torch.autograd.grad(stem(point), point, gradients)
    return result


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


class PathWalk:
    """What both rules share: the straight paths from the baseline to the inputs, the scorer, the
    scores at the ends, and gradients taken after the model's affine stem.

    The gradients are summed there and carried back through the stem once per path and update
    (``explain/linear_stem.py``).
    """

    def __init__(self, model: LoadedModel, x: torch.Tensor, target: int, params: IntegratedGradientsParams,
                 cancel: CancelToken | None, batch_size: int | None) -> None:
        self.model, self.target = model, target
        self.device_x = model_device_input(x, model)
        self.baseline = path_start(self.device_x, params)
        self.inputs = model_device_input(noisy_inputs(x, params), model)
        self.paths = self.inputs - self.baseline
        self.scorer = BatchScorer(model, target, cancel, batch_size)
        ends = self.scorer.score(torch.stack([self.device_x, self.baseline]))
        self.score, self.baseline_score = float(ends[0]), float(ends[1])
        self.split = split_linear_stem(model.module)
        self.forward = self.split.rest if self.split else None
        # Autograd refuses to let a graph write into the leaf it differentiates by. The rest after a
        # cut overwrites nothing; a whole model keeps its in-place operators (explain/in_place.py),
        # so it gets a copy of the batch, through which the gradient flows back.
        graph = self.forward or model.module
        self.copy_input = isinstance(graph, GraphModule) and writes_in_place(graph)

    def points(self, alphas: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
        """The points at ``alphas`` along the paths ``which``, as the model after the cut sees them."""
        return after_stem(self.split, self.baseline + alphas.view(-1, 1, 1, 1) * self.paths[which])

    def gradients(self, batch: torch.Tensor) -> torch.Tensor:
        """The target score's gradient at each point of a batch from :meth:`points`."""
        return self._gradients_and_scores(batch)[0]

    def _gradients_and_scores(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.enable_grad():
            point = batch.detach().requires_grad_(True)
            outputs = self.model.target_scores(point.clone() if self.copy_input else point, self.target, self.forward)
            (gradients,) = torch.autograd.grad(outputs.sum(), point)
        return gradients, outputs.detach()

    def attribution(self, gradient: torch.Tensor, path: int) -> torch.Tensor:
        """A path's attribution from its weighted sum of gradients after the cut."""
        at_input = carried_back(self.split.stem, self.device_x, gradient[None])[0] if self.split else gradient
        return at_input * self.paths[path]

    def scored_gradients(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The target score's gradient at each point of a batch from :meth:`points`, at the input
        (carried back through the stem), and the score there."""
        gradients, scores = self._gradients_and_scores(batch)
        if self.split:
            gradients = carried_back(self.split.stem, self.device_x, gradients)
        return gradients, scores.double()

    def scores(self, input_scores: list[float], noisy: bool) -> dict[str, float]:
        """The scores an update reports; with noise, ``noisy_score`` is the mean over the copies begun."""
        extra = {"noisy_score": float(np.mean(input_scores))} if noisy else {}
        return {"score": self.score, "baseline_score": self.baseline_score, **extra}


def integrated_gradients(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: IntegratedGradientsParams = IntegratedGradientsParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
) -> Iterator[Update]:
    """Integrated gradients of ``x`` ``(channels, height, width)`` for output ``target``, smoothed
    over noisy copies of ``x`` when ``noise_samples`` is above zero; adaptive when ``steps`` is 0."""
    walk = PathWalk(model, x, target, params, cancel, batch_size)
    return adaptive_rule(walk, params) if params.steps == 0 else fixed_rule(walk, params)


def fixed_rule(walk: PathWalk, params: IntegratedGradientsParams) -> Iterator[Update]:
    """``steps`` nodes of ``rule`` per path, in the interleaved order, an update per batch."""
    nodes, weights = quadrature(params.rule, params.steps)
    order = interleaved_order(params.steps)
    alphas = torch.tensor(nodes[order], dtype=torch.float32, device=walk.model.device)

    def make_batch(start: int, stop: int) -> torch.Tensor:
        # Node ``i`` over all the paths is node ``i % steps`` of path ``i // steps``.
        index = torch.arange(start, stop, device=walk.model.device)
        return walk.points(alphas[index % params.steps], index // params.steps)

    sums = PathSums(weights[order], walk.model.device, walk.attribution)
    # The score of each input whose path has begun: what its attribution should sum to, less the baseline's.
    input_scores = [walk.score] if not params.noise_samples else []
    count = len(walk.paths) * params.steps
    for start, gradients in walk.scorer.run(count, make_batch, walk.gradients):
        sums.add(start, gradients)
        while len(input_scores) < sums.begun():
            input_scores.append(float(walk.scorer.score(walk.inputs[len(input_scores)][None])[0]))
        stop = start + len(gradients)
        yield path_update(sums.mean(), stop / count, stop == count, walk.scorer.evaluations,
                          walk.scores(input_scores, params.noise_samples > 0), params.steps)


#: The adaptive rule's first nodes on every path: both ends and the middle.
FIRST_NODES = (0.0, 0.5, 1.0)
#: The most nodes the adaptive rule takes on one path.
MAX_ADAPTIVE_NODES = 257
#: A path is done when this many refinements in a row have a gap within the tolerance.
SETTLED_REFINEMENTS = 2
#: Intervals narrower than this are not split again: the nodes are float32 fractions of the path.
NARROWEST_INTERVAL = 2.0**-16


@dataclass
class RefinedPath:
    """One path's nodes so far, in order along it, with the score and its input gradient at each.

    The score is known exactly at every node (the gradient's own forward pass gives it), so each
    interval between neighbours has a local gap: the trapezoid rule's estimate of the score's rise
    over it, from the slopes at its ends, less the rise itself. The local gaps add up to the
    completeness gap, and their absolute values bound it; an interval where a ReLU or a max pool
    switches along the path shows a large one, and is the one to split.
    """

    direction: torch.Tensor  # the path's input less its baseline
    alphas: np.ndarray
    scores: np.ndarray
    gradients: list[torch.Tensor]
    slopes: np.ndarray = field(init=False)  # the score's derivative along the path, at each node

    def __post_init__(self) -> None:
        self.slopes = self._slopes(self.gradients)

    def _slopes(self, gradients: list[torch.Tensor]) -> np.ndarray:
        return np.array([float((g * self.direction).sum(dtype=torch.float64)) for g in gradients])

    def add(self, alphas: np.ndarray, scores: np.ndarray, gradients: list[torch.Tensor]) -> None:
        """New nodes, anywhere along the path."""
        order = np.argsort(np.concatenate([self.alphas, alphas]), kind="stable")
        self.alphas = np.concatenate([self.alphas, alphas])[order]
        self.scores = np.concatenate([self.scores, scores])[order]
        self.slopes = np.concatenate([self.slopes, self._slopes(gradients)])[order]
        merged = self.gradients + gradients
        self.gradients = [merged[i] for i in order]

    def local_gaps(self) -> np.ndarray:
        """Per interval, the trapezoid's rise of the score less the true rise."""
        return np.diff(self.alphas) * (self.slopes[1:] + self.slopes[:-1]) / 2 - np.diff(self.scores)

    def to_split(self, room: int, at_least: int = 1) -> np.ndarray:
        """Midpoints of the intervals with the largest local gaps: those that make up half of all
        of them, or the ``at_least`` worst if that is more, and never more than ``room``."""
        gaps = np.abs(self.local_gaps())
        gaps[np.diff(self.alphas) < NARROWEST_INTERVAL] = 0.0
        worst = np.argsort(-gaps, kind="stable")
        share = np.cumsum(gaps[worst])
        half = int(np.searchsorted(share, share[-1] / 2)) + 1
        count = min(max(half, at_least), room, int(np.count_nonzero(gaps)))
        chosen = worst[:count]
        return (self.alphas[chosen] + self.alphas[chosen + 1]) / 2

    def attribution(self) -> torch.Tensor:
        """The trapezoid rule over the nodes, times the path's direction."""
        widths = np.diff(self.alphas)
        weights = np.zeros(len(self.alphas))
        weights[:-1] += widths / 2
        weights[1:] += widths / 2
        total = sum(float(w) * g for w, g in zip(weights, self.gradients))
        return total * self.direction


#: A refinement round waits for the last one's scores, so its nodes share a batch even before the
#: scorer has grown to their number: on a CPU a batch of up to 8 costs less per node than smaller ones.
ROUND_BATCH = 8


def scored_nodes(walk: PathWalk, requests: list[tuple[int, float]]) -> list[tuple[torch.Tensor, float]] | None:
    """The gradient at the input and the score at each ``(path, alpha)``, in order; None when cancelled.

    The round's nodes go in one batch (up to :data:`ROUND_BATCH`), whatever the scorer's tuned size.
    """
    which = torch.tensor([path for path, _ in requests], device=walk.model.device)
    alphas = torch.tensor([alpha for _, alpha in requests], dtype=torch.float32, device=walk.model.device)
    results: list[tuple[torch.Tensor, float]] = []
    for _, (gradients, scores) in walk.scorer.run(len(requests), lambda start, stop: walk.points(
            alphas[start:stop], which[start:stop]), walk.scored_gradients, together=ROUND_BATCH):
        results.extend(zip(gradients, scores.tolist()))
    return None if walk.scorer.cancel.cancelled else results


def adaptive_rule(walk: PathWalk, params: IntegratedGradientsParams) -> Iterator[Update]:
    """The trapezoid rule on each path, its intervals split where their local gaps are largest,
    until the completeness gap is within ``tolerance`` of the score explained, twice in a row.

    A ReLU network's score has kinks along the path wherever a unit switches, and a model that
    max-pools has jumps in its slope wherever the winning unit changes. Rules that assume a smooth
    integrand lose their order there (nested Gauss rules of 63 nodes still missed 1% on the demo
    model, and the gap of a fixed rule rises and falls with its node count), so the nodes go where
    the gap comes from, which the scores at the nodes locate. Each round evaluates only new
    nodes.

    With noise, each copy's path refines until its own gaps are within the tolerance, all the
    copies still short of it together in the same batches; the baseline, where every path
    starts, is evaluated once.
    """
    count = len(walk.paths)
    noisy = params.noise_samples > 0
    explained = walk.scorer.score(walk.inputs) if noisy else np.array([walk.score])
    first = scored_nodes(walk, [(0, 0.0)] + [(p, alpha) for p in range(count) for alpha in FIRST_NODES[1:]])
    if first is None:
        return
    (start_gradient, start_score), rest = first[0], first[1:]
    later = len(FIRST_NODES) - 1
    paths = [RefinedPath(walk.paths[p], np.array(FIRST_NODES),
                         np.array([start_score] + [score for _, score in rest[p * later:(p + 1) * later]]),
                         [start_gradient] + [gradient for gradient, _ in rest[p * later:(p + 1) * later]])
             for p in range(count)]
    deltas = explained - walk.baseline_score
    within = [0] * count  # refinements in a row within the tolerance, per path
    while True:
        attributions = [path.attribution() for path in paths]
        gaps = [float(a.sum(dtype=torch.float64)) - d for a, d in zip(attributions, deltas)]
        for p in range(count):
            within[p] = within[p] + 1 if abs(gaps[p]) <= params.tolerance * abs(deltas[p]) else 0
        short = [p for p in range(count) if within[p] < SETTLED_REFINEMENTS]
        # A round fills at least the batch the scorer has settled on, which costs about what one input does.
        at_least = -(-walk.scorer.size // max(len(short), 1))
        splits = {p: paths[p].to_split(MAX_ADAPTIVE_NODES - len(paths[p].alphas), at_least) for p in short}
        active = [p for p in short if len(splits[p])]
        # What the cap would leave above the tolerance (a gap within it, not yet confirmed, is not).
        worst = max((relative_gap(gaps[p], deltas[p]) for p in short if not within[p]), default=0.0)
        yield adaptive_update(walk, torch.stack(attributions).mean(dim=0), explained,
                              [len(path.alphas) for path in paths], worst, not active, params)
        if not active:
            return
        requests = [(p, float(alpha)) for p in active for alpha in splits[p]]
        results = scored_nodes(walk, requests)
        if results is None:
            return
        for p in active:
            mine = [result for (path, _), result in zip(requests, results) if path == p]
            paths[p].add(splits[p], np.array([score for _, score in mine]), [gradient for gradient, _ in mine])


def adaptive_update(walk: PathWalk, mean: torch.Tensor, explained: np.ndarray, nodes_used: list[int],
                    worst: float, final: bool, params: IntegratedGradientsParams) -> Update:
    """An update of the adaptive rule. ``worst`` is the largest relative gap of a path still short
    of the tolerance: on the final update, the cap stopped it there, which the figures and a note say.
    Progress is the nodes done against the cap's, the most the run can take."""
    progress = 1.0 if final else sum(nodes_used) / (len(nodes_used) * MAX_ADAPTIVE_NODES)
    update = path_update(mean, progress, final, walk.scorer.evaluations,
                         walk.scores(list(explained), params.noise_samples > 0), max(nodes_used))
    capped = final and worst > 0
    figures = {**update.figures, "cap_reached": float(capped)}
    note = (f"integrated gradients stopped at its cap of {MAX_ADAPTIVE_NODES} nodes with a completeness gap of "
            f"{100 * worst:.3g}%, above the tolerance of {100 * params.tolerance:.3g}%")
    return replace(update, figures=figures, notes=(note,) if capped else ())


def relative_gap(gap: float, explained: float) -> float:
    """The completeness gap relative to the score explained less the baseline's; infinite where that is 0."""
    if explained:
        return abs(gap) / abs(explained)
    return float("inf") if gap else 0.0


def path_update(mean: torch.Tensor, progress: float, final: bool, evaluations: int,
                scores: dict[str, float], steps: int) -> Update:
    """An update with the completeness gap: the attributions' sum against the score explained
    less the baseline's, which the exact integral would close, also relative to the latter.

    With noise, the score explained is ``noisy_score``, the mean score of the noisy copies begun:
    it is what the smoothed map sums to, not the clean input's ``score``. ``steps`` is the
    nodes per path of the rule the update is of, reported as ``steps_used``.
    """
    attribution = mean.detach().to("cpu", torch.float32).numpy()
    explained = scores.get("noisy_score", scores["score"]) - scores["baseline_score"]
    gap = float(attribution.sum(dtype=np.float64)) - explained
    figures = {**scores, "completeness_gap": gap, "relative_completeness_gap": relative_gap(gap, explained),
               "steps_used": float(steps)}
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
                display=Display("absolute", 2.0), hints={
                    "steps": "Nodes along the path (0: adaptive, refined until the tolerance is met)",
                    "rule": "Quadrature rule of a fixed run (Gauss-Legendre is Captum's)",
                    "tolerance": "Adaptive runs (steps 0): the completeness gap allowed, as a share of the score",
                    "baseline": "Where the path starts: a blur of the image, black, its mean, or a value",
                    "noise_samples": "SmoothGrad: noisy copies averaged (0: none)",
                    "noise_level": "SmoothGrad: the noise's spread, as a share of the image's range",
                    "seed": "Draws the SmoothGrad noise, so that a run repeats",
                })
