"""The CUDA path gives the CPU's answers; skipped where there is no CUDA GPU (CI never has one)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from explain.engine import model_device_input
from explain.grad_cam import METHOD as GRAD_CAM
from explain.grad_cam import PLUS_PLUS as GRAD_CAM_PP
from explain.grad_cam import GradCamParams
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, occlusion
from tests.model_factory import TinyDenseNet, card_for, export_model

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    path = export_model(TinyDenseNet(), card_for(48, 60), tmp_path_factory.mktemp("densenet"))
    return load_model(path, CPU), load_model(path, CUDA)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, 48, 60, generator=torch.Generator().manual_seed(5))


def test_the_input_goes_to_the_gpu_once(models, image):
    _, gpu = models
    moved = model_device_input(image, gpu)
    assert moved.device.type == "cuda" and torch.equal(moved.cpu(), image)


def test_occlusion_on_the_gpu_equals_the_cpu(models, image):
    cpu, gpu = models
    params = OcclusionParams(8, 4, 0.0)
    on_cpu = list(occlusion(cpu, image, 1, params))[-1]
    for incremental in (True, False):
        on_gpu = list(occlusion(gpu, image, 1, params, incremental=incremental))[-1]
        np.testing.assert_allclose(on_gpu.attribution, on_cpu.attribution, rtol=1e-3, atol=1e-6)


def test_integrated_gradients_on_the_gpu_equal_the_cpu(models, image):
    cpu, gpu = models
    params = IntegratedGradientsParams(steps=16)
    on_cpu, on_gpu = (list(integrated_gradients(m, image, 1, params))[-1] for m in (cpu, gpu))
    np.testing.assert_allclose(on_gpu.attribution, on_cpu.attribution, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("method", [GRAD_CAM, GRAD_CAM_PP], ids=["gradcam", "gradcampp"])
def test_grad_cam_on_the_gpu_equals_the_cpu(models, image, method):
    cpu, gpu = models
    on_cpu, on_gpu = (list(method.explain(m, image, 0, GradCamParams()))[-1] for m in (cpu, gpu))
    scale = float(on_cpu.heatmap.max())
    assert scale > 0, "a blank map would prove nothing"
    np.testing.assert_allclose(on_gpu.attribution, on_cpu.attribution, rtol=1e-3, atol=1e-3 * scale)


def test_fast_mode_on_the_gpu_is_float16_and_close(models, image):
    _, gpu = models
    fast = replace(gpu, fast=True)
    with fast.precision():
        assert torch.get_autocast_dtype("cuda") == torch.float16
    params = OcclusionParams(8, 4, 0.0)
    exact = list(occlusion(gpu, image, 1, params))[-1]
    quick = list(occlusion(fast, image, 1, params))[-1]
    assert np.abs(quick.heatmap - exact.heatmap).max() < 0.01
