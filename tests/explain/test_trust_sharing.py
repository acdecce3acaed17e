"""The trust figures share their forward passes without changing a single figure.

The reference here is the straightforward computation, written out plainly: every input each
figure asks for is built and scored on its own, one forward pass each, and the curves and
areas are taken from those scores. The engine scores each distinct input once, and the image
itself not at all when the explanation has already scored it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from explain.methods import METHODS
from explain.model_file import LoadedModel, load_model
from explain.occlusion import OcclusionParams
from explain.session import ExplanationRequest, ExplanationSettings, finish, run_session
from explain.trust import VERDICT_FRACTION, TrustParams, distinct_inputs, removal_masks, trust_figures
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")
BOX = (10, 26, 14, 34)
PARAMS = TrustParams(points=10, region=8, regions_removed=12, random_orders=2, seed=4)


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> LoadedModel:
    return load_model(export_model(RegionDetector(BOX), card_for(40, 48), tmp_path_factory.mktemp("detector")), CPU)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> LoadedModel:
    return load_model(export_model(SmallCnn(seed=5), card_for(40, 48), tmp_path_factory.mktemp("cnn")), CPU)


def probability(model: LoadedModel, image: torch.Tensor) -> float:
    """One forward pass of one image: the target's probability."""
    with torch.inference_mode():
        return float(model.probabilities(image[None])[0, 1])


def unshared_figures(model: LoadedModel, x: torch.Tensor, heatmap: np.ndarray, removed: torch.Tensor,
                     params: TrustParams) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """Deletion, insertion and AOPC as their papers define them, every input scored on its own."""
    height, width = heatmap.shape
    size = height * width
    rng = np.random.default_rng(params.seed)
    ranking = np.argsort(-heatmap.ravel(), kind="stable")
    rows, columns = -(-height // params.region), -(-width // params.region)
    labels = (np.arange(height)[:, None] // params.region) * columns + np.arange(width)[None, :] // params.region
    totals = np.bincount(labels.ravel(), weights=heatmap.ravel(), minlength=rows * columns)
    region_order = np.argsort(-totals, kind="stable")
    random_orders = [rng.permutation(rows * columns) for _ in range(params.random_orders)]
    tenth = int(round(VERDICT_FRACTION * size))
    random_tenths = [rng.permutation(size)[:tenth] for _ in range(params.random_orders)]

    def with_removed(pixels: np.ndarray) -> float:
        mask = np.zeros(size, dtype=bool)
        mask[pixels] = True
        return probability(model, torch.where(torch.as_tensor(mask.reshape(height, width)), removed, x))

    def kept(pixels: np.ndarray) -> float:
        return with_removed(np.setdiff1d(np.arange(size), pixels))

    counts = [int(round(f * size)) for f in np.linspace(0, 1, params.points + 1)]
    deletion = np.array([with_removed(ranking[:count]) for count in counts])
    insertion = np.array([kept(ranking[:count]) for count in counts])
    steps = min(params.regions_removed, rows * columns)

    def aopc(order: np.ndarray) -> float:
        curve = np.array([with_removed(np.flatnonzero(np.isin(labels, order[:k]))) for k in range(steps + 1)])
        return float(np.mean(curve[0] - curve))

    def area(curve: np.ndarray) -> float:
        return float(np.trapezoid(curve, dx=1.0 / (len(curve) - 1)))

    figures = {
        "score": probability(model, x), "deletion_auc": area(deletion), "insertion_auc": area(insertion),
        "aopc": aopc(region_order), "aopc_random": float(np.mean([aopc(order) for order in random_orders])),
        "top10_removed_score": float(np.interp(VERDICT_FRACTION, np.linspace(0, 1, len(deletion)), deletion)),
        "random10_removed_score": float(np.mean([with_removed(pixels) for pixels in random_tenths])),
        "removed_score": float(deletion[-1]),
    }
    return figures, {"deletion": deletion, "insertion": insertion}


def shared_figures(model: LoadedModel, x: torch.Tensor, heatmap: np.ndarray, removed: torch.Tensor,
                   params: TrustParams, **options):
    *_, final = trust_figures(model, x, 1, heatmap, removed, params, **options)
    assert final.final
    return final


MAPS = {
    "smooth random": lambda: np.random.default_rng(0).random((40, 48)),
    "the true box": lambda: np.pad(np.ones((16, 20)), ((10, 14), (14, 14))),
    "blocky, ties within regions": lambda: np.kron(np.random.default_rng(1).random((5, 6)), np.ones((8, 8))),
    "constant": lambda: np.ones((40, 48)),
}


@pytest.mark.parametrize("name", sorted(MAPS))
@pytest.mark.parametrize("fixture", ["detector", "cnn"])
def test_sharing_changes_no_figure_and_no_curve(name, fixture, request):
    model = request.getfixturevalue(fixture)
    x = torch.randn(1, 40, 48, generator=torch.Generator().manual_seed(2))
    heatmap, removed = MAPS[name](), torch.full_like(x, -0.5)
    figures, curves = unshared_figures(model, x, heatmap, removed, PARAMS)
    shared = shared_figures(model, x, heatmap, removed, PARAMS)
    assert shared.figures == pytest.approx(figures, abs=1e-6)
    for curve in ("deletion", "insertion"):
        np.testing.assert_allclose(shared.curves[curve], curves[curve], atol=1e-6)


def test_a_known_score_spares_the_image_its_forward_pass_and_changes_nothing(cnn):
    x = torch.randn(1, 40, 48, generator=torch.Generator().manual_seed(3))
    heatmap, removed = MAPS["smooth random"](), torch.zeros_like(x)
    scored = shared_figures(cnn, x, heatmap, removed, PARAMS)
    known = shared_figures(cnn, x, heatmap, removed, PARAMS, score=probability(cnn, x))
    assert known.evaluations == scored.evaluations - 1
    assert known.figures == pytest.approx(scored.figures, abs=1e-6)


def test_each_distinct_input_is_scored_once(cnn):
    heatmap = MAPS["smooth random"]()
    masks = removal_masks(heatmap, PARAMS)
    inputs, index = distinct_inputs(masks)
    # The image itself: deletion's first point, insertion's last, each AOPC order's first step.
    assert (index < 0).sum() == 2 + 1 + PARAMS.random_orders
    assert len(np.unique(inputs, axis=0)) == len(inputs) == len(masks) - (index < 0).sum() - 1
    np.testing.assert_array_equal(inputs[index[index >= 0]], masks[index >= 0])
    x = torch.randn(1, 40, 48, generator=torch.Generator().manual_seed(3))
    final = shared_figures(cnn, x, heatmap, torch.zeros_like(x), PARAMS, batch_size=7)
    assert final.evaluations == len(inputs) + 1


def test_any_batch_size_gives_the_same_figures(cnn):
    x = torch.randn(1, 40, 48, generator=torch.Generator().manual_seed(3))
    heatmap, removed = MAPS["smooth random"](), torch.zeros_like(x)
    one, many = (shared_figures(cnn, x, heatmap, removed, PARAMS, batch_size=size).figures for size in (1, 64))
    assert one == pytest.approx(many, abs=1e-6)


def test_the_session_hands_the_explanations_score_to_the_figures_only_when_exact(cnn):
    x = torch.randn(1, 40, 48, generator=torch.Generator().manual_seed(3))
    settings = ExplanationSettings(METHODS["occlusion"], OcclusionParams(8, 4), cnn, 1, batch_size=4)
    finals = {step.stage: step.update for step in run_session(ExplanationRequest(settings, x)) if step.final}
    assert finals["trust"].figures["score"] == finals["explanation"].figures["score"]
    assert finals["trust"].evaluations == len(distinct_inputs(removal_masks(finals["explanation"].heatmap,
                                                                            TrustParams()))[0])
    fast = finish(ExplanationRequest(replace(settings, model=replace(cnn, fast=True)), x))
    assert fast.trust["score"] == pytest.approx(probability(cnn, x), abs=1e-6)
