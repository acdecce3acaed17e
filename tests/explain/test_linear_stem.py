"""A model's affine start is cut off exactly where it stops being affine, and nowhere else."""

from __future__ import annotations

import pytest
import torch

from explain.linear_stem import split_linear_stem
from explain.model_file import load_model
from tests.model_factory import SmallCnn, TinyDenseNet, TinyResNet, card_for, export_model

CPU = torch.device("cpu")
aten = torch.ops.aten


class Normalised(torch.nn.Module):
    """Input normalisation in the graph, then a convolution: all of it affine."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = SmallCnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner((x - 0.5) / 0.25 * 2.0)


class ReluFirst(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = SmallCnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.relu(x))


class Squared(torch.nn.Module):
    """A product of the input with itself: each factor alone looks affine, the whole is not."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = SmallCnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x * x)


def loaded(module: torch.nn.Module, folder, dynamic_batch: bool = True):
    return load_model(export_model(module, card_for(24, 32), folder, dynamic_batch=dynamic_batch), CPU)


def convolutions(module: torch.nn.Module) -> int:
    return sum(node.target is aten.conv2d.default for node in module.graph.nodes)


@pytest.mark.parametrize("architecture, stem_ops", [
    (SmallCnn, {aten.conv2d.default}),
    (TinyDenseNet, {aten.conv2d.default, aten.batch_norm.default}),
    (TinyResNet, {aten.conv2d.default, aten.sub.Tensor}),
    (Normalised, {aten.conv2d.default, aten.sub.Tensor, aten.div.Tensor, aten.mul.Tensor}),
])
def test_the_cut_model_computes_the_same_and_its_stem_is_affine(tmp_path, architecture, stem_ops):
    model = loaded(architecture(), tmp_path)
    split = split_linear_stem(model.module)
    assert split is not None
    assert {node.target for node in split.stem.graph.nodes if node.op == "call_function"} == stem_ops
    assert convolutions(split.stem) == 1 and convolutions(split.rest) == convolutions(model.module) - 1
    x, b = torch.randn(2, 3, 1, 24, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(split.rest(split.stem(x)), model.module(x))
        torch.testing.assert_close(split.stem(0.3 * x + 0.7 * b), 0.3 * split.stem(x) + 0.7 * split.stem(b))


@pytest.mark.parametrize("architecture", [ReluFirst, Squared])
def test_a_model_that_is_not_affine_from_its_input_is_not_cut(tmp_path, architecture):
    assert split_linear_stem(loaded(architecture(), tmp_path).module) is None


def test_a_model_exported_for_one_image_at_a_time_is_cut_too(tmp_path):
    model = loaded(TinyDenseNet(), tmp_path, dynamic_batch=False)
    split = split_linear_stem(model.module)
    x = torch.randn(1, 1, 24, 32)
    with torch.no_grad():
        torch.testing.assert_close(split.rest(split.stem(x)), model.module(x))
