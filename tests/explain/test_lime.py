"""LIME equals Captum's, is reproducible, finds a known answer, streams honest fits, stops when cancelled."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from captum._utils.models.model import Model
from captum.attr import Lime
from scipy import ndimage

from explain.engine import CancelToken
from explain.lime import (
    RIDGE_ALPHA,
    LimeParams,
    fill_image,
    fit_surrogate,
    kernel_weights,
    lime,
    lime_baseline,
    superpixels,
)
from explain.model_file import load_model
from tests.model_factory import RegionDetector, SmallCnn, card_for, export_model

CPU = torch.device("cpu")
QUICK = LimeParams(samples=120, segments=20)
BOX = (16, 36, 20, 44)


def smooth_image(height: int, width: int, seed: int, texture: float) -> torch.Tensor:
    """A blotchy grey image around 1, so superpixels have edges to follow."""
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(height, width)), 3)
    return torch.as_tensor(1 + texture * noise / noise.std(), dtype=torch.float32)[None]


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return load_model(export_model(SmallCnn(), card_for(40, 56), tmp_path_factory.mktemp("cnn")), CPU)


@pytest.fixture(scope="module")
def image():
    return smooth_image(40, 56, seed=1, texture=1.0)


@pytest.fixture(scope="module")
def region_run(tmp_path_factory):
    """LIME of a model that looks only at BOX, with switched-off superpixels set to 0.

    The fill is a constant because a superpixel inside the box replaced by its own mean leaves
    the box's mean, and so this model, unchanged. The faint texture keeps each superpixel's
    evidence close to its overlap with the box.
    """
    model = load_model(export_model(RegionDetector(BOX), card_for(64, 64), tmp_path_factory.mktemp("region")), CPU)
    x = smooth_image(64, 64, seed=2, texture=0.1)
    params = LimeParams(samples=300, segments=36, fill=0.0)
    return superpixels(x, params), list(lime(model, x, 1, params))[-1]


class RidgeByLeastSquares(Model):
    """Weighted ridge with a free intercept, solved as plain least squares on augmented rows."""

    def fit(self, train_data, **kwargs):
        masks, scores, weights = (t.double().numpy() for t in next(iter(train_data)))
        count, root = masks.shape[1], np.sqrt(weights)[:, None]
        # Rows of sqrt(alpha) on the diagonal are the ridge penalty; the intercept column has none.
        design = np.vstack([np.hstack([masks, np.ones((len(masks), 1))]) * root,
                            np.sqrt(RIDGE_ALPHA) * np.eye(count, count + 1)])
        values = np.concatenate([scores * root[:, 0], np.zeros(count)])
        self.coefficients = torch.as_tensor(np.linalg.lstsq(design, values, rcond=None)[0][:count])[None]

    def representation(self):
        return self.coefficients

    def __call__(self, x):
        raise NotImplementedError("Lime.attribute only fits the surrogate; it never predicts with it")


def captum_lime(model, x, target, params):
    """Captum's Lime with our superpixels, fill, samples and kernel, and an independent fit."""
    labels = superpixels(x, params)
    masks = np.random.default_rng(params.seed).random((params.samples, labels.max() + 1)) < 0.5
    masks[0] = True

    def samples(inputs, **kwargs):
        yield from (torch.as_tensor(mask[None]).long() for mask in masks)

    explainer = Lime(
        lambda batch: model.probabilities(batch), interpretable_model=RidgeByLeastSquares(),
        similarity_func=lambda original, perturbed, mask, **kwargs: float(
            kernel_weights(mask.numpy().astype(bool), params.kernel_width)[0]),
        perturb_func=samples,
    )
    result = explainer.attribute(
        x[None], target=target, baselines=fill_image(x, labels, params.fill)[None],
        feature_mask=torch.as_tensor(labels)[None, None], n_samples=params.samples, perturbations_per_eval=16,
    )
    return result[0].detach().numpy()


@pytest.mark.parametrize("fill", ["mean", "blur", -1.0])
def test_final_map_equals_captum(cnn, image, fill):
    params = replace(QUICK, samples=100, fill=fill)
    # Captum's batches of 16, so that the model rounds every score the same way for both.
    final = list(lime(cnn, image, 1, params, batch_size=16))[-1]
    expected = captum_lime(cnn, image, 1, params)
    assert np.abs(expected).max() > 1e-4, "the test model must react to the superpixels"
    np.testing.assert_allclose(final.attribution, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def coefficients(labels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Each superpixel's heat, read back from the map."""
    return np.bincount(labels.ravel(), weights=heatmap.ravel()) / np.bincount(labels.ravel())


def test_same_seed_gives_the_same_map_and_another_seed_another(cnn, image):
    # A fixed batch size, because the tuned one depends on timing and batched inference
    # rounds differently in the last bit; bitwise equality is the claim here.
    first, again = (list(lime(cnn, image, 1, QUICK, batch_size=16))[-1] for _ in range(2))
    np.testing.assert_array_equal(first.attribution, again.attribution)
    assert first.figures == again.figures
    other = list(lime(cnn, image, 1, replace(QUICK, seed=1), batch_size=16))[-1]
    assert not np.allclose(other.attribution, first.attribution)


def test_result_does_not_depend_on_batch_size(cnn, image):
    params = replace(QUICK, samples=80)
    maps = [list(lime(cnn, image, 0, params, batch_size=size))[-1] for size in (1, 7, 64, None)]
    for other in maps[1:]:
        np.testing.assert_allclose(other.attribution, maps[0].attribution, rtol=1e-5, atol=1e-8)
        assert other.figures == pytest.approx(maps[0].figures, abs=1e-5)


def test_updates_stream_in_order_and_the_map_appears_with_the_first_fit(cnn, image):
    updates = list(lime(cnn, image, 1, QUICK, batch_size=8))
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0 and len(updates) > 3
    assert [u.final for u in updates] == [False] * (len(updates) - 1) + [True]
    assert all(u.attribution is None for u in updates[:-1])
    # Eight samples cannot pin down twenty superpixels and an intercept: nothing is known yet.
    assert np.isnan(updates[0].heatmap).all() and "r2" not in updates[0].figures
    fitted = [u for u in updates if "r2" in u.figures]
    assert fitted and all(np.isfinite(u.heatmap).all() for u in fitted)
    assert all(np.isnan(u.heatmap).all() for u in updates if "r2" not in u.figures)
    final = updates[-1]
    assert final.attribution.shape == (1, 40, 56) and final.attribution.dtype == np.float32
    np.testing.assert_array_equal(final.heatmap, final.attribution[0])
    # The first sample is the whole image: its score is the one explained, at no extra cost.
    with torch.inference_mode():
        expected = float(cnn.probabilities(image[None])[0, 1])
    assert all(u.figures["score"] == pytest.approx(expected, rel=1e-6) for u in updates)
    assert final.evaluations == QUICK.samples


def test_partial_map_is_the_final_map_of_a_shorter_run(cnn, image):
    """Every evaluation counts: halfway through, the map is what 60 samples alone would give."""
    halfway = next(u for u in lime(cnn, image, 1, QUICK, batch_size=10) if u.progress == 0.5)
    shorter = list(lime(cnn, image, 1, replace(QUICK, samples=60), batch_size=10))[-1]
    np.testing.assert_array_equal(halfway.heatmap, shorter.heatmap)
    assert halfway.figures == shorter.figures


def test_superpixels_overlapping_the_box_rank_first(region_run):
    labels, final = region_run
    top, bottom, left, right = BOX
    overlap = np.bincount(labels[top:bottom, left:right].ravel(), minlength=labels.max() + 1)
    heat = coefficients(labels, final.heatmap)
    # Those holding at least 5% of the box, by overlap, are the most important by coefficient.
    k = int((overlap >= 0.05 * overlap.sum()).sum())
    assert k >= 3
    np.testing.assert_array_equal(np.argsort(-heat)[:k], np.argsort(-overlap)[:k])
    assert np.abs(heat[overlap == 0]).max() < 0.2 * heat[np.argsort(-overlap)[:k]].min()


def test_surrogate_explains_a_near_linear_model(region_run):
    _, final = region_run
    assert final.figures["r2"] > 0.9


def test_cancel_stops_within_one_batch(cnn, image):
    cancel = CancelToken()
    seen = []
    for update in lime(cnn, image, 1, QUICK, cancel=cancel, batch_size=5):
        seen.append(update)
        if len(seen) == 2:
            cancel.cancel()
    assert len(seen) == 2 and not seen[-1].final
    assert seen[-1].evaluations == 2 * 5


@pytest.mark.parametrize("segmentation", ["slic", "felzenszwalb", "quickshift"])
@pytest.mark.parametrize("fill", ["mean", "blur", -1.0])
def test_every_segmentation_and_fill_runs(cnn, image, segmentation, fill):
    params = LimeParams(samples=60, segments=12, segmentation=segmentation, fill=fill)
    labels = superpixels(image, params)
    count = labels.max() + 1
    assert labels.shape == (40, 56) and 6 <= count <= 24
    assert set(np.unique(labels)) == set(range(count))
    final = list(lime(cnn, image, 1, params))[-1]
    assert final.final and np.isfinite(final.attribution).all()
    # One heat per superpixel: the map is constant on each.
    heat = coefficients(labels, final.heatmap)
    np.testing.assert_allclose(final.heatmap, heat[labels], rtol=1e-6)


def test_mean_fill_gives_each_superpixel_its_own_mean():
    x = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4)
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]])
    expected = torch.tensor([[[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5], [9.5, 9.5, 9.5, 9.5]]])
    torch.testing.assert_close(fill_image(x, labels, "mean"), expected)
    torch.testing.assert_close(fill_image(x, labels, "-2"), torch.full_like(x, -2.0))


def test_baseline_is_the_image_with_every_superpixel_off(image):
    params = replace(QUICK, fill="mean")
    labels = superpixels(image, params)
    removed = lime_baseline(image, params)
    assert removed.shape == image.shape
    for label in range(labels.max() + 1):
        inside = removed[0][torch.as_tensor(labels == label)]
        torch.testing.assert_close(inside, torch.full_like(inside, float(image[0][labels == label].mean())))


def test_surrogate_recovers_a_linear_score():
    rng = np.random.default_rng(0)
    masks = rng.random((300, 8)) < 0.5
    truth = rng.normal(size=8)
    weights = kernel_weights(masks, 0.25)
    fit = fit_surrogate(masks, 0.3 + masks @ truth, weights, alpha=0.0)
    np.testing.assert_allclose(fit.coefficients, truth, atol=1e-10)
    assert fit.intercept == pytest.approx(0.3) and fit.r2 == pytest.approx(1.0)
    assert fit_surrogate(masks, np.full(300, 0.7), weights).r2 == 1.0


def test_kernel_weighs_samples_by_how_much_of_the_image_they_show():
    masks = np.array([[True] * 4, [True, True, False, False], [False] * 4])
    np.testing.assert_allclose(
        kernel_weights(masks, 0.25), [1.0, np.exp(-((1 - np.sqrt(0.5)) ** 2) / 0.125), np.exp(-8.0)]
    )


@pytest.mark.parametrize("bad", [
    {"samples": -1}, {"segments": 0}, {"segmentation": "watershed"}, {"fill": "noise"}, {"kernel_width": 0.0},
])
def test_parameters_are_checked(bad):
    with pytest.raises(ValueError):
        LimeParams(**bad)
