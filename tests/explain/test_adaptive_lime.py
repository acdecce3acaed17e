"""Adaptive LIME stops when the surrogate's errors say its ranking has settled; a prefix of the fixed run."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy import ndimage

import explain.lime as lime_module
from explain.engine import CancelToken
from explain.lime import (
    MAX_ADAPTIVE_SAMPLES,
    TOP_SETTLED,
    LimeParams,
    Surrogate,
    fit_surrogate,
    lime,
    relative_error,
    round_ends,
    superpixels,
    top_confidence,
    top_superpixels,
)
from explain.model_file import load_model
from tests.model_factory import Indifferent, RegionDetector, card_for, export_model

CPU = torch.device("cpu")
BOX = (16, 36, 20, 44)
#: Explicit superpixels and fill, so that the tests do not follow LimeParams' defaults.
ADAPTIVE = LimeParams(samples=0, segments=36, fill=0.0, stability=0.999, precision=0.0)
BATCH = 16


def smooth_image(height: int, width: int, seed: int, texture: float) -> torch.Tensor:
    """A blotchy grey image around 1, so superpixels have edges to follow."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(height, width)), 3)
    return torch.as_tensor(1 + texture * noise / noise.std(), dtype=torch.float32)[None]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    """A model that looks only at BOX, an easy answer for LIME to settle on."""
    return load_model(export_model(RegionDetector(BOX), card_for(64, 64), tmp_path_factory.mktemp("region")), CPU)


@pytest.fixture(scope="module")
def region_image():
    return smooth_image(64, 64, seed=2, texture=0.1)


@pytest.fixture(scope="module")
def adaptive_updates(region, region_image):
    # A fixed batch size: the tuned one depends on timing, and batched inference rounds the
    # last bit differently; bitwise claims need the same batches.
    return list(lime(region, region_image, 1, ADAPTIVE, batch_size=BATCH))


def rounds(updates):
    """The updates that end a round: those whose refit is on every sample scored so far."""
    return [u for u in updates if u.figures.get("samples_used") == u.evaluations]


def test_stops_before_the_cap_on_an_easy_model(region_image, adaptive_updates):
    final = adaptive_updates[-1]
    assert final.final and final.figures["cap_reached"] == 0.0
    used = int(final.figures["samples_used"])
    assert used < MAX_ADAPTIVE_SAMPLES and final.evaluations == used
    assert final.figures["top_confidence"] >= ADAPTIVE.stability and final.notes == ()
    ended = rounds(adaptive_updates)
    assert len(ended) >= 2, "the first round was not sure yet"
    assert all(u.figures["top_confidence"] < ADAPTIVE.stability for u in ended[:-1])
    # The superpixels inside the box the model looks at are the top ones.
    labels = superpixels(region_image, ADAPTIVE)
    top = top_superpixels(coefficients(labels, final))
    rows, columns = np.nonzero(np.isin(labels, list(top)))
    assert np.mean((rows >= BOX[0]) & (rows < BOX[1]) & (columns >= BOX[2]) & (columns < BOX[3])) > 0.5


def coefficients(labels: np.ndarray, update) -> np.ndarray:
    """Each superpixel's heat, read back from the map."""
    return np.bincount(labels.ravel(), weights=update.heatmap.ravel()) / np.bincount(labels.ravel())


def test_the_result_is_the_fixed_run_with_as_many_samples(region, region_image, adaptive_updates):
    final = adaptive_updates[-1]
    fixed = list(lime(region, region_image, 1, replace(ADAPTIVE, samples=int(final.figures["samples_used"])),
                      batch_size=BATCH))[-1]
    np.testing.assert_array_equal(final.attribution, fixed.attribution)
    assert final.figures["r2"] == fixed.figures["r2"] and final.figures["score"] == fixed.figures["score"]


def test_two_runs_give_the_same_map_and_samples(region, region_image, adaptive_updates):
    again = list(lime(region, region_image, 1, ADAPTIVE, batch_size=BATCH))
    assert len(again) == len(adaptive_updates)
    for first, second in zip(adaptive_updates, again):
        np.testing.assert_array_equal(first.heatmap, second.heatmap)
        assert first.figures == pytest.approx(second.figures, nan_ok=True)
    np.testing.assert_array_equal(again[-1].attribution, adaptive_updates[-1].attribution)


def test_the_stopping_point_does_not_depend_on_batch_size(region, region_image, adaptive_updates):
    tuned = list(lime(region, region_image, 1, ADAPTIVE))[-1]
    assert tuned.figures["samples_used"] == adaptive_updates[-1].figures["samples_used"]
    np.testing.assert_allclose(tuned.attribution, adaptive_updates[-1].attribution, rtol=1e-5, atol=1e-8)


def test_every_round_streams_as_an_update(region_image, adaptive_updates):
    ended = rounds(adaptive_updates)
    ends = round_ends(int(superpixels(region_image, ADAPTIVE).max()) + 1)
    assert [int(u.figures["samples_used"]) for u in ended] == ends[:len(ended)]
    assert len(ended) >= 2 and ended[-1] is adaptive_updates[-1]
    assert [u.final for u in adaptive_updates] == [False] * (len(adaptive_updates) - 1) + [True]
    progress = [u.progress for u in adaptive_updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    # Between refits, each batch streams the last round's map.
    assert len(adaptive_updates) > len(ended)
    assert all(0 <= u.figures["top_confidence"] <= 1 and u.figures["relative_error"] > 0 for u in ended)


def test_the_cap_stops_an_unsettled_run(monkeypatch, region, region_image):
    monkeypatch.setattr(lime_module, "MAX_ADAPTIVE_SAMPLES", 200)
    updates = list(lime(region, region_image, 1, replace(ADAPTIVE, stability=1.0, precision=0.0), batch_size=BATCH))
    final = updates[-1]
    assert final.final and final.figures["cap_reached"] == 1.0
    assert final.figures["samples_used"] == 200 and final.evaluations == 200
    assert len(final.notes) == 1 and "cap of 200 samples" in final.notes[0]
    assert all(not u.notes for u in updates[:-1])


def test_a_model_that_ignores_the_image_settles_at_once(tmp_path, region_image):
    model = load_model(export_model(Indifferent(), card_for(64, 64), tmp_path), CPU)
    final = list(lime(model, region_image, 1, ADAPTIVE, batch_size=BATCH))[-1]
    assert final.figures["cap_reached"] == 0.0 and final.figures["relative_error"] == 0.0
    assert final.figures["samples_used"] == round_ends(int(superpixels(region_image, ADAPTIVE).max()) + 1)[0]


def test_a_precise_map_stops_even_where_ranks_tie(region, region_image, adaptive_updates):
    loose = list(lime(region, region_image, 1, replace(ADAPTIVE, stability=1.0, precision=1.0), batch_size=BATCH))
    assert len(rounds(loose)) == 1 and loose[-1].figures["relative_error"] <= 1.0
    assert loose[-1].figures["samples_used"] < adaptive_updates[-1].figures["samples_used"]


def test_fixed_samples_still_give_the_fixed_run(region, region_image):
    params = replace(ADAPTIVE, samples=150)
    final = list(lime(region, region_image, 1, params, batch_size=BATCH))[-1]
    assert final.evaluations == 150 and set(final.figures) == {"score", "r2"}
    # The stopping parameter is the adaptive run's alone.
    other = list(lime(region, region_image, 1, replace(params, stability=0.1, precision=0.5), batch_size=BATCH))[-1]
    np.testing.assert_array_equal(final.attribution, other.attribution)


def test_cancel_stops_within_one_batch(region, region_image):
    cancel = CancelToken()
    seen = []
    for update in lime(region, region_image, 1, ADAPTIVE, cancel=cancel, batch_size=5):
        seen.append(update)
        if len(seen) == 2:
            cancel.cancel()
    assert len(seen) == 2 and not seen[-1].final and seen[-1].evaluations == 10


def test_round_ends_grow_to_the_cap():
    ends = round_ends(50)
    assert ends[0] == 200 and ends[-1] == MAX_ADAPTIVE_SAMPLES
    assert all(later > earlier for earlier, later in zip(ends, ends[1:]))
    assert round_ends(3, cap=20)[0] == 12 and round_ends(200, cap=300) == [300]


def test_top_superpixels_and_how_sure_the_fit_is_of_them():
    values = np.array([0.5, -0.1, 0.3, 0.0, 0.9, 0.2, 0.4])
    assert top_superpixels(values) == {4, 0, 6, 2, 5} and len(top_superpixels(values)) == TOP_SETTLED
    sure = Surrogate(values, 0.0, 1.0, np.eye(7) * 1e-8)
    assert top_confidence(sure) == pytest.approx(1.0) and relative_error(sure) == pytest.approx(1e-4 / 0.9)
    # The fifth (0.2) and sixth (0.0) apart by one standard error of their difference: 16% likely swapped.
    tied = Surrogate(values, 0.0, 1.0, np.eye(7) * 0.02)
    assert top_confidence(tied) < 0.84 and relative_error(tied) == pytest.approx(np.sqrt(0.02) / 0.9)
    assert top_confidence(Surrogate(np.zeros(7), 0.0, 1.0, np.zeros((7, 7)))) == 0.0


def test_the_standard_errors_match_the_spread_of_refits():
    """The sandwich errors of one fit against the coefficients' spread over 300 independent fits."""
    rng = np.random.default_rng(4)
    truth = np.array([1.0, 0.5, 0.0, -0.3, 0.2, 0.0])
    fits, errors = [], []
    for _ in range(300):
        masks = rng.random((200, 6)) < 0.5
        noise = rng.normal(scale=0.2 + 0.6 * masks[:, 0], size=200)  # uneven, as a max pool makes it
        weights = rng.uniform(0.5, 1.0, size=200)
        fit = fit_surrogate(masks, masks @ truth + noise, weights, alpha=1e-6, with_covariance=True)
        fits.append(fit.coefficients)
        errors.append(np.sqrt(np.diag(fit.covariance)))
    np.testing.assert_allclose(np.mean(errors, axis=0), np.std(fits, axis=0), rtol=0.15)


@pytest.mark.parametrize("bad", [{"samples": -1}, {"stability": 1.5}, {"stability": -0.5}, {"precision": -0.1}])
def test_parameters_are_checked(bad):
    with pytest.raises(ValueError):
        replace(ADAPTIVE, **bad)
