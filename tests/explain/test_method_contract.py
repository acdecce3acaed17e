"""What every registered method promises, checked on each one at its default parameters.

A new method is covered by adding its registry entry: it must stream honest partial maps, stop
within one batch of a cancel, give the same map at any batch size, and, where a reference
implementation exists, equal it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explain.engine import CancelToken
from explain.methods import METHODS
from explain.model_file import load_model
from tests.explain.test_grad_cam import package_grad_cam, package_grad_cam_pp
from tests.explain.test_integrated_gradients import captum_integrated_gradients
from tests.explain.test_lime import captum_lime
from tests.explain.test_occlusion import captum_occlusion
from tests.model_factory import SmallCnn, card_for, export_model

CPU = torch.device("cpu")
TARGET = 1
#: The reference implementation of each method that has one: ``oracle(model, x, target, params)``.
ORACLES = {"occlusion": captum_occlusion, "ig": captum_integrated_gradients, "lime": captum_lime,
           "gradcam": package_grad_cam, "gradcampp": package_grad_cam_pp}
NAMES = sorted(METHODS)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_model(export_model(SmallCnn(), card_for(40, 56), tmp_path_factory.mktemp("contract")), CPU)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 40, 56, generator=torch.Generator().manual_seed(3))


#: Another batch or another tool sums the convolutions in another order, so a probability below one
#: may round differently in float32, by an ulp of one at most: the floor of any comparison of
#: maps built from differences of probabilities, however small the default window's drops are.
ROUNDING = 2 * np.finfo(np.float32).eps


def defaults(name):
    method = METHODS[name]
    return method, method.params()


@pytest.mark.parametrize("name", NAMES)
def test_partial_maps_stream_in_order_and_the_last_is_final(model, image, name):
    method, params = defaults(name)
    updates = list(method.explain(model, image, TARGET, params, batch_size=1))
    partial, final = updates[:-1], updates[-1]
    assert len(partial) >= 3 and not any(u.final for u in partial), "at least three partial maps, then one final"
    assert final.final and final.progress == 1.0
    progress = [u.progress for u in updates]
    assert all(a < b for a, b in zip(progress, progress[1:])), "progress only grows"
    evaluations = [u.evaluations for u in updates]
    assert evaluations == sorted(evaluations)
    unknown = [int(np.isnan(u.heatmap).sum()) for u in updates]
    assert unknown == sorted(unknown, reverse=True) and unknown[-1] == 0, "what is known stays known"
    assert all(u.heatmap.shape == (40, 56) and u.heatmap.dtype == np.float32 for u in updates)
    assert final.attribution.shape == (1, 40, 56) and np.isfinite(final.attribution).all()
    assert np.ptp(final.heatmap) > 0, "the final map is not constant"


@pytest.mark.parametrize("name", NAMES)
def test_a_cancel_stops_the_method_within_one_batch(model, image, name):
    method, params = defaults(name)
    cancel = CancelToken()
    seen = []
    for update in method.explain(model, image, TARGET, params, cancel=cancel, batch_size=2):
        seen.append(update)
        cancel.cancel()
    assert len(seen) == 1 and not seen[0].final, "no update comes after the cancel"


@pytest.mark.parametrize("name", NAMES)
def test_the_map_does_not_depend_on_the_batch_size(model, image, name):
    method, params = defaults(name)
    one, many = (list(method.explain(model, image, TARGET, params, batch_size=size))[-1] for size in (1, 64))
    scale = np.abs(one.attribution).max()
    np.testing.assert_allclose(many.attribution, one.attribution, rtol=1e-5, atol=1e-5 * scale + ROUNDING)


@pytest.mark.parametrize("name", [name for name in NAMES if name in ORACLES])
def test_the_map_equals_the_reference_implementation(model, image, name):
    method, params = defaults(name)
    ours = list(method.explain(model, image, TARGET, params, batch_size=16))[-1].attribution
    expected = ORACLES[name](model, image, TARGET, params)
    scale = np.abs(expected).max()
    assert scale > 1e-5, "the test model must react, or equality proves nothing"
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-6 * scale + ROUNDING)


def test_every_method_says_what_its_map_measures_and_how_to_remove_a_pixel(image):
    for method in METHODS.values():
        params = method.params()
        assert method.title and method.units, method.name
        assert method.baseline(image, params).shape == image.shape, method.name
        assert set(method.choices) | set(method.image_or_value) <= set(vars(params)), method.name
