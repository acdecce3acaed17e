"""Every registered method on the architectures users bring, exported as users export them.

The zoo (:mod:`tests.model_zoo`) holds MONAI's DenseNet-121, ResNet-18, ResNet-50, SE-ResNet-50,
EfficientNet-B0 and a ViT, and a plain CNN with in-place activations, on 64-pixel inputs of one
or three channels with softmax or sigmoid heads. Each is exported once for this module, with a
dynamic batch and its in-place operators kept. Every method must run on every model and give a
finite map that is not constant; the exact ones must equal Captum run on the archive as it was
saved, in-place operators and all. Where an architecture breaks an assumption of the engine
(global operations inside for incremental inference, no convolutional stem for the linear-stem
cut), the engine must notice and stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pytest
import torch
from torch.fx import Node

from explain.in_place import value_graph, writes_in_place
from explain.incremental import IncrementalModel, Patch, occluded_copies
from explain.integrated_gradients import RULES, IntegratedGradientsParams
from explain.lime import LimeParams
from explain.linear_stem import split_linear_stem
from explain.methods import METHODS
from explain.model_file import LoadedModel, load_model
from explain.occlusion import OcclusionParams, WindowGrid, occlusion
from explain.perturbation import PerturbationParams
from tests.explain.test_integrated_gradients import captum_integrated_gradients
from tests.explain.test_occlusion import captum_occlusion
from tests.model_zoo import ZOO, export_zoo_model, zoo_image

CPU = torch.device("cpu")
#: One batch size for every run, so that each model sets up its kernels for few shapes.
BATCH = 16
#: Each method's parameters here: its defaults, made short where they are long. A method not
#: listed runs at its defaults.
QUICK = {
    "occlusion": OcclusionParams(window=16, stride=8),
    "ig": IntegratedGradientsParams(steps=4),
    "lime": LimeParams(samples=32, segments=16),
    "perturbation": PerturbationParams(iterations=10),
}
#: Models a method refuses by design, with a one-line reason instead of a map: Grad-CAM needs a
#: convolutional feature map, and a vision transformer has none.
REFUSED = {("vit", "gradcam"), ("vit", "gradcampp")}
#: Operators after which every position of a map depends on every other: a global pooling (the
#: squeeze of squeeze-excitation), or a map flattened into tokens for attention.
GLOBAL = {torch.ops.aten.adaptive_avg_pool2d.default, torch.ops.aten.mean.dim, torch.ops.aten.flatten.using_ints}


@dataclass(frozen=True)
class Case:
    """One zoo model, loaded as the engine loads it and as saved, with the image it explains.

    ``saved`` is the archive as a user would hand it to Captum, in-place operators and all; the
    references below run on it. Its weights are put in the engine's memory layout
    (channels-last): float32 rounds differently in another, and in a deep ReLU network that can
    tip a unit across zero at a quadrature node (Captum against itself, on ResNet-50's archive
    in the two layouts, differs by 2.5e-3 of the map's peak). ``target`` is the label the model
    predicts for the image, the one a user would ask about.
    """

    name: str
    loaded: LoadedModel
    saved: LoadedModel
    image: torch.Tensor
    target: int


@pytest.fixture(scope="module", params=sorted(ZOO))
def case(request, tmp_path_factory) -> Case:
    name = request.param
    path = export_zoo_model(name, tmp_path_factory.mktemp(name))
    loaded = load_model(path, CPU)
    saved = torch.export.load(str(path)).module().requires_grad_(False).to(memory_format=torch.channels_last)
    image = zoo_image(loaded.card.input.channels)
    with torch.no_grad():
        target = int(loaded.probabilities(image[None])[0].argmax())
    return Case(name, loaded, replace(loaded, module=saved), image, target)


def params_for(name: str) -> Any:
    return QUICK.get(name, METHODS[name].params())


def assert_equal_to_reference(ours: np.ndarray, expected: np.ndarray) -> None:
    """Equal to float32 rounding, against a reference whose map is well above it."""
    scale = float(np.abs(expected).max())
    assert scale > 1e-4, "the model must react, or equality proves nothing"
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-5 * scale)


def test_the_graph_of_values_rewrites_every_in_place_operator_and_computes_the_same(case):
    values = value_graph(case.loaded.module)
    if case.name != "vit":  # MONAI's ViT has no in-place operator to begin with
        assert writes_in_place(case.saved.module), "the archive keeps the in-place operators, as users export them"
    assert values is not None and not writes_in_place(values)
    inputs = torch.stack([case.image, torch.zeros_like(case.image)])
    with torch.no_grad():
        torch.testing.assert_close(values(inputs), case.saved.module(inputs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_gives_a_finite_map_that_is_not_constant(case, method):
    if (case.name, method) in REFUSED:
        with pytest.raises(ValueError) as refusal:
            list(METHODS[method].explain(case.loaded, case.image, case.target, params_for(method), batch_size=BATCH))
        assert str(refusal.value) and "\n" not in str(refusal.value), "a refusal is one line"
        return
    final = list(METHODS[method].explain(case.loaded, case.image, case.target, params_for(method), batch_size=BATCH))[-1]
    assert final.final and final.heatmap.shape == (64, 64)
    assert np.isfinite(final.attribution).all() and np.isfinite(final.heatmap).all()
    assert np.ptp(final.heatmap) > 0, "a constant map explains nothing"


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "whole"])
def test_occlusion_equals_captum(case, incremental):
    params = params_for("occlusion")
    ours = list(occlusion(case.loaded, case.image, case.target, params, batch_size=BATCH, incremental=incremental))[-1]
    assert_equal_to_reference(ours.attribution, captum_occlusion(case.saved, case.image, case.target, params))


@pytest.mark.parametrize("rule", RULES)
def test_integrated_gradients_equals_captum_with_every_rule(case, rule):
    # From a blurred copy rather than a blank image: on a constant image every max-pooling
    # window is a tie, and which pixel takes the gradient is left to rounding (Captum against
    # itself, in batches of 5 and of 8, differs there by 1.1e-3 of SE-ResNet-50's peak).
    params = replace(params_for("ig"), rule=rule, baseline="blur")
    ours = list(METHODS["ig"].explain(case.loaded, case.image, case.target, params, batch_size=BATCH))[-1]
    assert_equal_to_reference(ours.attribution,
                              captum_integrated_gradients(case.saved, case.image, case.target, params))


@pytest.mark.parametrize("case", ["densenet121", "inplace-cnn"], indirect=True)
def test_the_cut_after_the_stem_hands_an_in_place_relu_a_value_of_its_own(case):
    """The crash of issue 20: after DenseNet's stem, ``relu_`` wrote into the path's leaf tensor."""
    split = split_linear_stem(case.loaded.module)
    first = next(node for node in split.rest.graph.nodes if node.op == "call_function")
    assert first.target is torch.ops.aten.relu.default
    assert any(node.target is torch.ops.aten.relu_.default for node in case.saved.module.graph.nodes)


@pytest.mark.parametrize("case", ["vit"], indirect=True)
def test_a_transformer_is_not_cut_after_a_stem(case):
    # The patch embedding is a convolution, but the batch size is read from the input for the
    # attention's reshapes: the input has a second user, and the graph is left whole.
    assert split_linear_stem(case.loaded.module) is None


def global_descendants(nodes: list[Node], varies: set[Node]) -> set[Node]:
    """Every node from the first global operator on the input's path, on."""
    first = next(node for node in nodes if node.target in GLOBAL and node in varies)
    after, pending = set(), [first]
    while pending:
        node = pending.pop()
        if node not in after:
            after.add(node)
            pending.extend(node.users)
    return after


@pytest.mark.parametrize("case", ["seresnet50", "vit"], indirect=True)
@pytest.mark.parametrize("window", [16, 8])
def test_incremental_inference_falls_back_to_whole_maps_at_global_operations(case, window):
    """Squeeze-excitation pools the whole map inside every block, attention mixes every token:
    from there on every copy must be computed whole, and every value equal the whole model's."""
    grid = WindowGrid(64, 64, window, window)
    # Eight windows spread over the image: one batch, which stays whole to the end (no chunks).
    spread = np.linspace(0, grid.shape[0] * grid.shape[1] - 1, 8).round().astype(int)
    windows = [grid.bounds(k) for k in spread]
    with torch.inference_mode():
        incremental = IncrementalModel(case.loaded.module, case.image)
        seen: dict[Node, Any] = {}
        step = incremental._step
        incremental._step = lambda node, env: seen.setdefault(node, step(node, env))
        copies = occluded_copies(case.image, torch.zeros_like(case.image), windows, (window, window))
        outputs = incremental(copies)
        whole = incremental._run_whole(copies.whole())
    after = global_descendants(incremental.nodes, incremental.varies)
    assert any(isinstance(value, Patch) for node, value in seen.items() if node not in after), "boxes before"
    assert not any(isinstance(value, Patch) for node, value in seen.items() if node in after), "whole after"
    for node, value in seen.items():
        value = value.whole() if isinstance(value, Patch) else value
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            torch.testing.assert_close(value, whole[node], rtol=1e-4, atol=1e-5, msg=node.name)
    output = next(node for node in incremental.nodes if node.op == "output").args[0]
    torch.testing.assert_close(outputs, whole[output[0] if isinstance(output, (tuple, list)) else output])
