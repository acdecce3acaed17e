"""Incremental inference gives what the whole model gives, on every kind of layer it knows,
and falls back to the whole model for the rest."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from explain.incremental import IncrementalModel, Patch, occluded_copies
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, WindowGrid, occlusion
from tests.explain.test_occlusion import captum_occlusion
from tests.model_factory import RegionDetector, SmallCnn, TinyDenseNet, TinyResNet, card_for, export_model

CPU = torch.device("cpu")
HEIGHT, WIDTH = 48, 60
ARCHITECTURES = {"cnn": SmallCnn, "densenet": TinyDenseNet, "resnet": TinyResNet}


@pytest.fixture(scope="module", params=sorted(ARCHITECTURES))
def model(request, tmp_path_factory):
    module = ARCHITECTURES[request.param]()
    return load_model(export_model(module, card_for(HEIGHT, WIDTH), tmp_path_factory.mktemp(request.param)), CPU)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))


def whole_batch(image, hidden, windows):
    batch = image.repeat(len(windows), 1, 1, 1)
    for k, (rows, columns) in enumerate(windows):
        batch[k, :, rows, columns] = hidden[:, rows, columns]
    return batch


@pytest.mark.parametrize("window, stride", [(8, 4), (11, 7)])
def test_outputs_equal_the_whole_model(model, image, window, stride):
    grid = WindowGrid(HEIGHT, WIDTH, window, stride)
    # Corners, edges (windows cut off there) and the middle, in one batch.
    windows = [grid.bounds(i) for i in range(0, grid.shape[0] * grid.shape[1], 3)]
    hidden = torch.full_like(image, -2.0)
    with torch.inference_mode():
        incremental = IncrementalModel(model.module, image)
        got = incremental(occluded_copies(image, hidden, windows, (window, window)))
        expected = model.module(whole_batch(image, hidden, windows))
    assert not torch.equal(expected[0], expected[-1]), "the copies must differ for the test to mean anything"
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_early_layers_are_computed_on_boxes(image, tmp_path):
    model = load_model(export_model(TinyDenseNet(), card_for(HEIGHT, WIDTH), tmp_path), CPU)
    incremental = IncrementalModel(model.module, image)
    kinds = {}
    original = incremental._step

    def recording(node, env):
        kinds[node.name] = result = original(node, env)
        return result

    incremental._step = recording
    with torch.inference_mode():
        incremental(occluded_copies(image, torch.zeros_like(image), [(slice(0, 6), slice(0, 6))] * 2, (6, 6)))
    # A 6-pixel window under a 5x5 kernel with stride 2 and padding 2 reaches outputs 0 to 3.
    first_conv = next(v for k, v in kinds.items() if k.startswith("conv2d"))
    assert isinstance(first_conv, Patch) and first_conv.size == (4, 4) and first_conv.base.shape[-2:] == (24, 30)
    assert isinstance(kinds["linear"], torch.Tensor) and kinds["linear"].shape == (2, 2)


def test_a_graph_without_known_layers_falls_back_to_the_whole_model(image, tmp_path):
    model = load_model(export_model(RegionDetector((10, 30, 12, 40)), card_for(HEIGHT, WIDTH), tmp_path), CPU)
    assert not IncrementalModel.supports(model.module)
    params = OcclusionParams(8, 4, 0.0)
    exact = list(occlusion(model, image, 1, params, incremental=False))[-1]
    fallback = list(occlusion(model, image, 1, params))[-1]
    np.testing.assert_array_equal(fallback.attribution, exact.attribution)


@pytest.mark.parametrize("params", [OcclusionParams(8, 4, 0.0), OcclusionParams(13, 6, "blur")])
def test_occlusion_map_equals_captum_and_the_plain_run(model, image, params):
    incremental = list(occlusion(model, image, 1, params))[-1]
    plain = list(occlusion(model, image, 1, params, incremental=False))[-1]
    expected = captum_occlusion(model, image, 1, params)
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(incremental.attribution, plain.attribution, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(incremental.attribution, expected, rtol=1e-4, atol=1e-6)


def test_result_does_not_depend_on_batch_size(model, image):
    params = OcclusionParams(9, 4, 0.0)
    maps = [list(occlusion(model, image, 1, params, batch_size=size))[-1].attribution for size in (1, 5, 64)]
    for other in maps[1:]:
        np.testing.assert_allclose(other, maps[0], rtol=1e-4, atol=1e-6)


def test_fast_mode_differs_from_the_exact_map_by_rounding_only(model, image):
    params = OcclusionParams(8, 4, 0.0)
    exact = list(occlusion(model, image, 1, params))[-1]
    fast = list(occlusion(replace(model, fast=True), image, 1, params))[-1]
    assert not np.array_equal(fast.heatmap, exact.heatmap), "half precision rounds differently"
    # bfloat16 keeps 8 bits of mantissa: each probability within a few parts in a thousand.
    assert np.abs(fast.heatmap - exact.heatmap).max() < 0.01


def test_fast_mode_keeps_a_strong_map(image, tmp_path):
    model = load_model(export_model(RegionDetector((12, 28, 20, 36)), card_for(HEIGHT, WIDTH), tmp_path), CPU)
    params = OcclusionParams(8, 4, 0.0)
    exact = list(occlusion(model, image + 3.0, 1, params))[-1]
    fast = list(occlusion(replace(model, fast=True), image + 3.0, 1, params))[-1]
    assert np.corrcoef(fast.heatmap.ravel(), exact.heatmap.ravel())[0, 1] > 0.99


def test_drill_down_scores_the_coarse_grid_and_the_hottest_finer_positions(image, tmp_path):
    box = (12, 28, 20, 36)
    model = load_model(export_model(RegionDetector(box), card_for(HEIGHT, WIDTH), tmp_path), CPU)
    params = OcclusionParams(6, 2, 0.0)
    exact = list(occlusion(model, image + 3.0, 1, params))[-1]
    drilled = list(occlusion(model, image + 3.0, 1, replace(params, drill_down=0.2)))
    grid = WindowGrid(HEIGHT, WIDTH, 6, 2)
    positions = grid.shape[0] * grid.shape[1]
    coarse = len(range(0, grid.shape[0], 4)) * len(range(0, grid.shape[1], 4))
    assert drilled[-1].final and drilled[-1].evaluations == 1 + coarse + int(np.ceil(0.2 * (positions - coarse)))
    assert [u.progress for u in drilled] == sorted(u.progress for u in drilled) and drilled[-1].progress == 1.0
    # Only the detector's box matters: the refined positions are there, and so is the map.
    heat = drilled[-1].heatmap
    rows, columns = np.unravel_index(np.argmax(heat), heat.shape)
    assert box[0] <= rows < box[1] and box[2] <= columns < box[3]
    span = float(exact.heatmap.max() - exact.heatmap.min())
    assert structural_similarity(exact.heatmap, heat, data_range=span) > 0.9


def test_drill_down_must_be_a_share():
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="drill-down"):
            OcclusionParams(drill_down=bad)
