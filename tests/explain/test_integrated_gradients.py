"""Integrated gradients equals Captum's, and its partial results estimate the whole integral."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import CancelToken
from explain.integrated_gradients import (
    IntegratedGradientsParams,
    integrated_gradients,
    interleaved_order,
    quadrature,
)
from explain.linear_stem import split_linear_stem
from explain.model_file import load_model
from tests.model_factory import TinyDenseNet, TinyResNet, card_for, export_model

CPU = torch.device("cpu")


def final(model, x, params, **options):
    return list(integrated_gradients(model, x, 1, params, **options))[-1]


def captum_integrated_gradients(model, x, target, params):
    """Captum's integrated gradients with our rule, steps and baseline."""
    reference = baseline_image(x, params.baseline, blur_sigma=broad_blur_sigma(x))
    return IntegratedGradients(lambda batch: model.probabilities(batch)).attribute(
        x[None], baselines=reference[None], target=target, n_steps=params.steps, method=params.rule,
        internal_batch_size=5,
    )[0].detach().numpy()


@pytest.mark.parametrize("rule", ["gausslegendre", "riemann_trapezoid", "riemann_middle", "riemann_right"])
@pytest.mark.parametrize("baseline", [0.0, -2.0, "blur", "black"])
def test_final_attribution_equals_captum(cnn, image, rule, baseline):
    params = IntegratedGradientsParams(steps=24, rule=rule, baseline=baseline)
    ours = final(cnn, image, params)
    expected = captum_integrated_gradients(cnn, image, 1, params)
    assert np.abs(expected).max() > 1e-5
    assert ours.attribution.dtype == np.float32 and ours.attribution.shape == (1, 40, 56)
    np.testing.assert_allclose(ours.attribution, expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("architecture", [TinyDenseNet, TinyResNet])
def test_gradients_summed_after_the_stem_equal_captum_through_it(tmp_path, image, architecture):
    model = load_model(export_model(architecture(), card_for(40, 56), tmp_path), CPU)
    assert split_linear_stem(model.module) is not None  # batch norm or a shift after the first convolution
    params = IntegratedGradientsParams(steps=16, baseline="blur")
    ours = list(integrated_gradients(model, image, 1, params, batch_size=3))
    expected = IntegratedGradients(lambda batch: model.probabilities(batch)).attribute(
        image[None], baselines=baseline_image(image, "blur", blur_sigma=56 / 16)[None], target=1, n_steps=16,
    )[0].detach().numpy()
    assert np.abs(expected).max() > 1e-5
    np.testing.assert_allclose(ours[-1].attribution, expected, rtol=1e-5, atol=1e-9)
    partial = ours[0].heatmap  # a partial update is carried back through the stem too
    assert partial.shape == (40, 56) and np.corrcoef(partial.ravel(), expected[0].ravel())[0, 1] > 0.5


def test_completeness_gap_shrinks_as_steps_grow(cnn, image):
    gaps = [abs(final(cnn, image, IntegratedGradientsParams(steps, "riemann_trapezoid")).figures["completeness_gap"])
            for steps in (4, 16, 64)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.05 * abs(final(cnn, image, IntegratedGradientsParams(64)).figures["score"])


def test_every_update_estimates_the_whole_integral(cnn, image):
    updates = list(integrated_gradients(cnn, image, 1, IntegratedGradientsParams(32), batch_size=4))
    assert [u.progress for u in updates] == [k / 8 for k in range(1, 9)]
    assert [u.final for u in updates] == [False] * 7 + [True]
    final_map = updates[-1].heatmap
    # A truncated path would carry a fraction of the final map's size; an estimate of the whole
    # integral is of the same size and already points the same way after a quarter of the nodes.
    quarter = updates[1].heatmap
    assert 0.5 < np.abs(quarter).sum() / np.abs(final_map).sum() < 2.0
    assert np.corrcoef(quarter.ravel(), final_map.ravel())[0, 1] > 0.8
    assert all("completeness_gap" in u.figures and "score" in u.figures for u in updates)


def test_result_does_not_depend_on_batch_size(cnn, image):
    params = IntegratedGradientsParams(20)
    results = [final(cnn, image, params, batch_size=size).attribution for size in (1, 6, 64)]
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-5, atol=1e-9)


def test_cancel_stops_within_one_batch(cnn, image):
    cancel = CancelToken()
    seen = []
    for update in integrated_gradients(cnn, image, 1, IntegratedGradientsParams(40), cancel=cancel, batch_size=4):
        seen.append(update)
        cancel.cancel()
    assert len(seen) == 1 and seen[0].evaluations == 2 + 4


def test_interleaved_order_covers_the_path_early():
    order = interleaved_order(50)
    assert sorted(order.tolist()) == list(range(50))
    nodes, _ = quadrature("gausslegendre", 50)
    first = nodes[order[:5]]
    assert first.min() < 0.1 and first.max() > 0.9, "the first few nodes span the path"


def test_quadrature_follows_captum():
    for rule in ("gausslegendre", "riemann_left", "riemann_middle"):
        nodes, weights = quadrature(rule, 10)
        assert weights.sum() == pytest.approx(1.0) and 0 <= nodes.min() and nodes.max() <= 1
    # Captum's trapezoid rule spaces 10 nodes 1/9 apart but weighs them 1/10: it sums to 0.9.
    nodes, weights = quadrature("riemann_trapezoid", 10)
    assert (nodes[0], nodes[-1], weights.sum()) == (0.0, 1.0, pytest.approx(0.9))
    with pytest.raises(ValueError, match="unknown rule"):
        quadrature("simpson", 10)
