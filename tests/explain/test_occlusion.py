"""Occlusion equals Captum's, streams coarse to fine, and stops when cancelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import Occlusion

from explain.engine import CancelToken
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, interlaced_order, occlusion, occlusion_baseline
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    card = card_for(40, 56)
    return load_model(export_model(SmallCnn(), card, tmp_path_factory.mktemp("cnn")), CPU)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 40, 56, generator=torch.Generator().manual_seed(1))


def captum_occlusion(model, x, target, params):
    baselines = occlusion_baseline(x, params.baseline, params.window)[None]
    explainer = Occlusion(lambda batch: model.probabilities(batch))
    result = explainer.attribute(
        x[None], sliding_window_shapes=(x.shape[0], params.window, params.window),
        strides=(1, params.stride, params.stride), baselines=baselines, target=target, perturbations_per_eval=8,
    )
    return result[0].detach().numpy()


@pytest.mark.parametrize("params", [
    OcclusionParams(8, 4, 0.0), OcclusionParams(7, 3, -1.5), OcclusionParams(10, 10, "mean"),
    OcclusionParams(6, 5, "blur"),
])
def test_final_map_equals_captum(cnn, image, params):
    updates = list(occlusion(cnn, image, 1, params))
    final = updates[-1]
    assert final.final and final.attribution.shape == (1, 40, 56) and final.attribution.dtype == np.float32
    expected = captum_occlusion(cnn, image, 1, params)
    assert np.abs(expected).max() > 1e-5, "the test model must react to occlusion"
    np.testing.assert_allclose(final.attribution, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(final.heatmap, final.attribution[0])


def test_result_does_not_depend_on_batch_size(cnn, image):
    params = OcclusionParams(8, 4, 0.0)
    maps = [list(occlusion(cnn, image, 0, params, batch_size=size))[-1].attribution for size in (1, 3, 64)]
    adaptive = list(occlusion(cnn, image, 0, params))[-1].attribution
    for other in (*maps[1:], adaptive):
        np.testing.assert_allclose(other, maps[0], rtol=1e-5, atol=1e-7)


def test_progress_is_monotone_and_partial_maps_are_complete_estimates(cnn, image):
    updates = list(occlusion(cnn, image, 1, OcclusionParams(8, 2, 0.0)))
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(updates) > 3
    assert [u.final for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(u.attribution is None for u in updates[:-1])
    # Every partial map is filled everywhere: an estimate, not a hole-ridden map.
    assert all(np.isfinite(u.heatmap).all() for u in updates)
    # Once the coarse grid is done, the estimate already looks like the final map.
    coarse = next(u for u in updates if u.progress >= 0.1)
    assert np.corrcoef(coarse.heatmap.ravel(), updates[-1].heatmap.ravel())[0, 1] > 0.5


def test_hotspot_is_found_on_a_model_with_a_known_answer(tmp_path):
    card = card_for(48, 64)
    model = load_model(export_model(RegionDetector((30, 42, 8, 20)), card, tmp_path), CPU)
    x = torch.ones(1, 48, 64)
    final = list(occlusion(model, x, 1, OcclusionParams(4, 2, 0.0)))[-1]
    inside = final.heatmap[30:42, 8:20]
    assert inside.min() > 0
    assert np.abs(final.heatmap[:, 30:]).max() == 0, "nothing far from the box matters"


def test_interlaced_order_visits_coarse_grid_first():
    order = interlaced_order(9, 9)
    first = {divmod(int(i), 9) for i in order[:9]}
    assert first == {(r, c) for r in (0, 4, 8) for c in (0, 4, 8)}
    assert sorted(order.tolist()) == list(range(81))


def test_cancel_stops_within_one_batch(cnn, image):
    cancel = CancelToken()
    seen = []
    for update in occlusion(cnn, image, 1, OcclusionParams(4, 1, 0.0), cancel=cancel, batch_size=5):
        seen.append(update)
        if len(seen) == 2:
            cancel.cancel()
    assert len(seen) == 2 and not seen[-1].final
    assert seen[-1].evaluations == 1 + 2 * 5
