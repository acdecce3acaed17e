"""In-place operators are rewritten out of place exactly where nothing could tell, and kept elsewhere.

Each model here is exported as a user's would be, with its in-place operators, and loaded as the
engine loads it: the module keeps its writes (they reuse memory) except those into its own input,
and the engine's graph transformations work on its graph of values.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from explain.in_place import out_of_place, value_graph, writes_in_place
from explain.incremental import IncrementalModel
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients
from explain.linear_stem import split_linear_stem
from explain.model_file import LoadedModel, load_model
from explain.occlusion import OcclusionParams, occlusion
from tests.explain.test_integrated_gradients import captum_integrated_gradients
from tests.model_factory import card_for, export_model

CPU = torch.device("cpu")
aten = torch.ops.aten


class ResidualInPlace(torch.nn.Module):
    """``out += branch``, where the branch reaches further (7 x 7) than the tensor overwritten (3 x 3)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.near, self.far = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.Conv2d(1, 4, 7, padding=3)
        self.head = torch.nn.Linear(4 * 24 * 24, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.near(x)
        out += self.far(x)
        return self.head(torch.relu_(out).flatten(1))


class WritesItsInput(torch.nn.Module):
    """Clips its own input in place before the first convolution, as some users' models do."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.head = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x.clamp_(-1.0, 1.0)
        return self.head(self.conv(x).mean((2, 3)))


class WritesThroughAView(torch.nn.Module):
    """Doubles the top rows of its input through a view: a write the rewrite cannot prove harmless."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.head = torch.nn.Conv2d(1, 4, 3), torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x[:, :, :8].mul_(2.0)
        return self.head(torch.tanh(self.conv(x)).mean((2, 3)))


def loaded(module: torch.nn.Module, folder) -> LoadedModel:
    return load_model(export_model(module, card_for(24, 24), folder), CPU)


def image() -> torch.Tensor:
    return torch.randn(1, 24, 24, generator=torch.Generator().manual_seed(2))


def test_in_place_operators_have_out_of_place_twins():
    assert out_of_place(aten.relu_.default) is aten.relu.default
    assert out_of_place(aten.add_.Tensor) is aten.add.Tensor
    assert out_of_place(aten.hardtanh_.default) is aten.hardtanh.default
    assert out_of_place(aten.relu.default) is None, "already out of place"
    assert out_of_place(aten.conv2d.default) is None


def test_incremental_inference_is_exact_where_an_in_place_sum_overwrote_a_narrower_activation(tmp_path):
    model = loaded(ResidualInPlace(), tmp_path)
    assert writes_in_place(model.module), "the module keeps its in-place operators, which reuse memory"
    assert not writes_in_place(value_graph(model.module)) and IncrementalModel.supports(model.module)
    params = OcclusionParams(4, 4, 0.0)
    incremental = list(occlusion(model, image(), 1, params))[-1].attribution
    whole = list(occlusion(model, image(), 1, params, incremental=False))[-1].attribution
    assert np.abs(whole).max() > 1e-3
    # Before the rewrite, the boxes were pasted into an activation ``add_`` had overwritten: off by more than the map.
    np.testing.assert_allclose(incremental, whole, rtol=1e-5, atol=1e-7)


def test_a_model_that_writes_its_input_no_longer_changes_the_callers_tensor(tmp_path):
    model = loaded(WritesItsInput(), tmp_path)
    assert not writes_in_place(model.module)
    x = 3 * image()
    before = x.clone()
    final = list(occlusion(model, x, 1, OcclusionParams(6, 6, 0.0)))[-1]
    assert torch.equal(x, before) and np.abs(final.attribution).max() > 0


def test_a_write_through_a_view_is_kept_and_still_explained_exactly(tmp_path):
    model = loaded(WritesThroughAView(), tmp_path)
    assert writes_in_place(model.module) and value_graph(model.module) is None, "a write through a view is kept"
    assert not IncrementalModel.supports(model.module), "incremental inference keeps values; it must decline"
    assert split_linear_stem(model.module) is None, "the write has no user: a cut would drop it as dead code"
    params = IntegratedGradientsParams(steps=8)
    ours = list(integrated_gradients(model, image(), 1, params))[-1].attribution
    # Captum's leaf tensor cannot be written either; its reference gets a copy, as ours does.
    expected = captum_integrated_gradients(replace(model, module=lambda batch: model.module(batch.clone())),
                                           image(), 1, params)
    assert np.abs(expected).max() > 1e-5
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-9)
