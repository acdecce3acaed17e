"""Meaningful perturbation finds a known region, streams honest masks, stops, and repeats itself."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from explain.engine import CancelToken
from explain.model_file import LoadedModel, load_model
from explain.perturbation import PerturbationParams, perturbation, perturbation_baseline
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")
BOX = (24, 40, 16, 32)  # top, bottom, left, right: 16 pixels, about the blur's width
#: A 16 x 16 mask on the 64-pixel input, so the 16-pixel box spans four cells each way.
FAST = PerturbationParams(iterations=150, mask_cell=4)


@pytest.fixture(scope="module", params=["softmax", "sigmoid"])
def detector(request, tmp_path_factory):
    card = card_for(64, 64, activation=request.param)
    return load_model(export_model(RegionDetector(BOX), card, tmp_path_factory.mktemp("box")), CPU)


@pytest.fixture(scope="module")
def lesion():
    """A bright square exactly on the detector's box, on a dark field.

    Not a uniformly bright image: its blur would equal it, and deleting by blurring would
    change nothing anywhere.
    """
    x = torch.zeros(1, 64, 64)
    top, bottom, left, right = BOX
    x[:, top:bottom, left:right] = 1.0
    return x


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return load_model(export_model(SmallCnn(), card_for(40, 56), tmp_path_factory.mktemp("cnn")), CPU)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 40, 56, generator=torch.Generator().manual_seed(1))


def share_in_box(heatmap: np.ndarray) -> float:
    top, bottom, left, right = BOX
    return float(heatmap[top:bottom, left:right].sum() / heatmap.sum())


def peak_in_box(heatmap: np.ndarray) -> bool:
    top, bottom, left, right = BOX
    row, column = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return top <= row < bottom and left <= column < right


@pytest.fixture(scope="module")
def all_blurred_score(detector, lesion):
    """The score with the whole image blurred: the most that deleting can take away."""
    with torch.inference_mode():
        return float(detector.probabilities(perturbation_baseline(lesion, FAST)[None])[0, 1])


def test_deletion_mask_lies_on_the_region_the_model_reads(detector, lesion, all_blurred_score):
    final = list(perturbation(detector, lesion, 1, FAST))[-1]
    assert final.final and final.attribution.shape == (1, 64, 64) and final.attribution.dtype == np.float32
    np.testing.assert_array_equal(final.attribution[0], final.heatmap)
    assert share_in_box(final.heatmap) > 0.6 and peak_in_box(final.heatmap)
    score, deleted, area = (final.figures[key] for key in ("score", "deleted_score", "mask_area"))
    assert score - deleted > 0.6 * (score - all_blurred_score), "deleting the mask must kill the score"
    assert score - all_blurred_score > 0.5, "the lesion must matter for the test to mean anything"
    assert area == pytest.approx(float(final.heatmap.mean())) and area < 0.1, "a small deletion"


def test_preserve_keeps_the_region_the_model_reads(detector, lesion, all_blurred_score):
    final = list(perturbation(detector, lesion, 1, dataclasses.replace(FAST, mode="preserve")))[-1]
    assert share_in_box(final.heatmap) > 0.6 and peak_in_box(final.heatmap)
    score, kept, area = (final.figures[key] for key in ("score", "deleted_score", "mask_area"))
    assert kept - all_blurred_score > 0.7 * (score - all_blurred_score) and area < 0.1


def test_updates_stream_in_order_and_every_map_is_a_mask(cnn, image):
    params = PerturbationParams(iterations=45, mask_cell=4)
    updates = list(perturbation(cnn, image, 1, params))
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(updates) == 5
    assert [u.final for u in updates] == [False] * 4 + [True]
    assert all(u.attribution is None for u in updates[:-1])
    assert all(np.isfinite(u.heatmap).all() and 0 <= u.heatmap.min() and u.heatmap.max() <= 1 for u in updates)
    assert all("score" in u.figures for u in updates)
    # The original, one forward pass per step, and the final mask's score.
    assert [u.evaluations for u in updates] == [11, 21, 31, 41, 47]


def test_the_model_is_left_untouched(cnn, image):
    before = {name: p.detach().clone() for name, p in cnn.module.named_parameters()}
    list(perturbation(cnn, image, 1, PerturbationParams(iterations=20, mask_cell=4)))
    for name, parameter in cnn.module.named_parameters():
        assert parameter.grad is None, f"{name} collected gradients"
        assert torch.equal(parameter, before[name])


def test_caller_grad_mode_is_kept_between_updates(cnn):
    with torch.inference_mode():
        x = torch.randn(1, 40, 56)  # an inference tensor, as a caller in inference mode makes
        for update in perturbation(cnn, x, 1, PerturbationParams(iterations=20, mask_cell=4)):
            assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
    assert update.final


def test_a_model_exported_for_one_image_at_a_time_works(tmp_path, lesion):
    card = card_for(64, 64)
    model = load_model(export_model(RegionDetector(BOX), card, tmp_path, dynamic_batch=False), CPU)
    assert not model.batched
    final = list(perturbation(model, lesion, 1, dataclasses.replace(FAST, iterations=20)))[-1]
    assert final.final and final.figures["mask_area"] > 0


class CountingModule(torch.nn.Module):
    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.inner(x)


def test_cancel_stops_within_one_step(cnn, image):
    counting = CountingModule(cnn.module)
    model = LoadedModel(cnn.card, counting, cnn.device, cnn.batched)
    cancel = CancelToken()
    seen = []
    for update in perturbation(model, image, 1, PerturbationParams(iterations=100, mask_cell=4), cancel=cancel):
        seen.append(update)
        cancel.cancel()
    assert len(seen) == 1 and not seen[0].final
    assert counting.calls == seen[0].evaluations == 11


def test_same_seed_gives_the_same_mask(detector, lesion):
    params = dataclasses.replace(FAST, iterations=30, seed=3)
    first, second = (list(perturbation(detector, lesion, 1, params))[-1] for _ in range(2))
    np.testing.assert_array_equal(first.attribution, second.attribution)
    assert first.figures == second.figures
    other = list(perturbation(detector, lesion, 1, dataclasses.replace(params, seed=4)))[-1]
    assert not np.array_equal(other.attribution, first.attribution), "the seed drives the jitter"


@pytest.mark.parametrize("change", [
    {"mode": "keep"}, {"iterations": 0}, {"blur_sigma": 0.0}, {"jitter": -1}, {"lambda_area": -1.0},
    {"fill": "noise"},
])
def test_bad_parameters_are_refused_with_a_message(change):
    with pytest.raises(ValueError):
        PerturbationParams(**change)


def test_a_mask_cell_larger_than_the_input_is_refused(cnn, image):
    with pytest.raises(ValueError, match="mask cell"):
        next(perturbation(cnn, image, 1, PerturbationParams(mask_cell=64)))


def test_a_black_fill_deletes_to_the_darkest_value_and_still_finds_the_region(detector, lesion):
    params = dataclasses.replace(FAST, fill="black")
    removed = perturbation_baseline(lesion, params)
    assert torch.equal(removed, torch.full_like(lesion, float(lesion.min()))), "deleted pixels show the darkest value"
    final = list(perturbation(detector, lesion, 1, params))[-1]
    assert share_in_box(final.heatmap) > 0.6 and peak_in_box(final.heatmap)
