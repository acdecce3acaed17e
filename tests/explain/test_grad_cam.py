"""Grad-CAM and Grad-CAM++ equal the ``grad-cam`` package's maps on the same layer and target.

The package hooks a module's output, so it runs either on the original PyTorch model and its
layer, or on a copy of the exported graph with a pass-through module put after the layer's node.
It rescales every map to [0, 1]; ours keeps its units, so it is compared both ways: rescaled to
the package's output, and in units to the package's own sum of weighted maps before rescaling.
"""

from __future__ import annotations

import copy
import sys
import types
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch.fx import GraphModule

from explain.engine import CancelToken
from explain.grad_cam import METHOD, NO_FEATURE_MAP, PLUS_PLUS, GradCamParams, chosen_layer
from explain.model_card import ModelCard, ModelCardError
from explain.model_file import load_model
from tests.model_factory import InplaceCnn, SmallCnn, TinyDenseNet, TinyResNet, card_for, export_model

CPU = torch.device("cpu")
HEIGHT, WIDTH = 40, 56
#: Modules of torchvision that ``pytorch_grad_cam`` imports; it uses none of them for the CAMs.
TORCHVISION = ("torchvision", "torchvision.ops", "torchvision.transforms", "torchvision.transforms.functional")


def import_grad_cam() -> types.ModuleType:
    """The ``grad-cam`` package, with a stand-in for torchvision where there is none.

    The package imports torchvision at the top for image loading and detection targets, which
    its CAMs never use; PyPI's torchvision for our CPU torch is a CUDA build that fails to
    import beside it, so none is installed (scripts/setup). The stand-in lives only while the
    package is imported: nothing else in the session sees it.
    """
    try:
        import torchvision  # noqa: F401
    except (ImportError, RuntimeError):
        for name in TORCHVISION:
            sys.modules[name] = types.ModuleType(name)
        transforms = sys.modules["torchvision.transforms"]
        transforms.Compose = transforms.Normalize = transforms.ToTensor = None
        sys.modules["torchvision.transforms.functional"].resize = None
        try:
            import pytorch_grad_cam
        finally:
            for name in TORCHVISION:
                del sys.modules[name]
    import pytorch_grad_cam

    return pytorch_grad_cam


grad_cam_package = import_grad_cam()
PACKAGE_CLASSES = {"gradcam": grad_cam_package.GradCAM, "gradcampp": grad_cam_package.GradCAMPlusPlus}
METHODS = {"gradcam": METHOD, "gradcampp": PLUS_PLUS}


class LogOdds:
    """The package's target: one image's log-odds of a label, ``log p - log(1 - p)``."""

    def __init__(self, label: int, activation: str) -> None:
        self.label, self.activation = label, activation

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.activation == "sigmoid":
            return logits[self.label]
        log_p = torch.log_softmax(logits, dim=0)[self.label]
        return log_p - torch.log(-torch.expm1(log_p))


class Probability(LogOdds):
    """The package's target: one image's softmax probability of a label."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=0)[self.label]


def package_maps(kind: str, module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor,
                 target: LogOdds) -> tuple[np.ndarray, np.ndarray]:
    """The package's map of ``x`` (rescaled to [0, 1], as it gives it) and the same in units.

    In units: its own sum of weighted maps, ReLU'd and resized with OpenCV as it does, before the
    rescaling. The input requires grad so that an exported graph, whose weights do not, records
    the path back to the layer.
    """
    batch = x[None].clone().requires_grad_(True)
    with PACKAGE_CLASSES[kind](model=module, target_layers=[layer]) as cam:
        shown = cam(input_tensor=batch, targets=[target])[0]
        activations = cam.activations_and_grads.activations[0].numpy()
        gradients = cam.activations_and_grads.gradients[0].numpy()
        weighted = cam.get_cam_image(batch, layer, [target], activations, gradients)[0]
    in_units = cv2.resize(np.maximum(weighted, 0), (x.shape[2], x.shape[1]))
    return shown, in_units


def tapped(module: GraphModule, name: str) -> tuple[GraphModule, torch.nn.Module]:
    """A copy of an exported graph, sharing its weights, with a pass-through module after node ``name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's pytree deprecation in deepcopy
        graph = copy.deepcopy(module.graph)
    copied = GraphModule(module, graph)
    copied.add_submodule("tap", torch.nn.Identity())
    node = next(node for node in copied.graph.nodes if node.name == name)
    with copied.graph.inserting_after(node):
        tap = copied.graph.call_module("tap", (node,))
    node.replace_all_uses_with(tap, delete_user_cb=lambda user: user is not tap)
    copied.recompile()
    return copied, copied.tap


def package_on_graph(kind: str, model, x: torch.Tensor, target: int, params: GradCamParams,
                     objective: type[LogOdds] = LogOdds) -> tuple[np.ndarray, np.ndarray]:
    """:func:`package_maps` on the exported graph, at the layer our method chose."""
    module, tap = tapped(model.module, chosen_layer(model, params).name)
    return package_maps(kind, module, tap, x, objective(target, model.card.activation))


def in_units_oracle(kind: str):
    """The contract's oracle for ``kind``: the package's map in our units, for every channel."""
    def oracle(model, x, target, params):
        _, in_units = package_on_graph(kind, model, x, target, params)
        return np.broadcast_to(in_units, x.shape).copy()
    return oracle


package_grad_cam, package_grad_cam_pp = in_units_oracle("gradcam"), in_units_oracle("gradcampp")


def rescaled(heatmap: np.ndarray) -> np.ndarray:
    """A map rescaled to [0, 1] as the package rescales its own, less its guard of 1e-7, which
    on a map in units of a thousandth would move it by a ten-thousandth."""
    shifted = heatmap - heatmap.min()
    return shifted / shifted.max()


def final(kind: str, model, x: torch.Tensor, target: int, params: GradCamParams = GradCamParams()):
    return list(METHODS[kind].explain(model, x, target, params))[-1]


def assert_equal_to_package(ours: np.ndarray, shown: np.ndarray, in_units: np.ndarray) -> None:
    assert in_units.max() > 1e-6, "the map must not be blank, or equality proves nothing"
    np.testing.assert_allclose(rescaled(ours), shown, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours, in_units, rtol=1e-5, atol=1e-6 * in_units.max())


class MaxPooledCnn(SmallCnn):
    """The small CNN with a global max pooling head, as the demo model has: the pooling returns its
    indices too, so the pooled map is reached through the pair it makes."""

    def __init__(self) -> None:
        super().__init__()
        self.features[4] = torch.nn.AdaptiveMaxPool2d(1)


@pytest.fixture(scope="module")
def image():
    return torch.randn(1, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Each test architecture, as built and as loaded from its archive."""
    folder = tmp_path_factory.mktemp("grad_cam")
    models = {}
    for architecture in (SmallCnn, TinyDenseNet, TinyResNet, InplaceCnn, MaxPooledCnn):
        path = export_model(architecture(), card_for(HEIGHT, WIDTH), folder, name=architecture.__name__)
        models[architecture.__name__] = (architecture().eval(), load_model(path, CPU))
    return models


@pytest.mark.parametrize(("architecture", "layer"), [
    ("SmallCnn", "relu_1"), ("TinyDenseNet", "relu_4"), ("TinyResNet", "mul"), ("InplaceCnn", "relu__2"),
    ("MaxPooledCnn", "relu_1"),
])
def test_the_layer_is_the_last_feature_map_before_the_global_pooling(exported, architecture, layer):
    # TinyResNet pools twice: its gate squeezes a map inside the network, the head pools the gated map.
    assert chosen_layer(exported[architecture][1], GradCamParams()).name == layer


@pytest.mark.parametrize("kind", ["gradcam", "gradcampp"])
@pytest.mark.parametrize(("architecture", "layer", "target"), [
    ("SmallCnn", lambda net: net.features[3], 1), ("TinyDenseNet", lambda net: net.head[0], 0),
])
def test_maps_equal_the_package_on_the_original_model(exported, image, kind, architecture, layer, target):
    net, model = exported[architecture]
    shown, in_units = package_maps(kind, net, layer(net), image, LogOdds(target, "softmax"))
    assert_equal_to_package(final(kind, model, image, target).heatmap, shown, in_units)


@pytest.mark.parametrize("kind", ["gradcam", "gradcampp"])
@pytest.mark.parametrize(("architecture", "target"), [
    ("SmallCnn", 1), ("TinyDenseNet", 0), ("TinyResNet", 1), ("MaxPooledCnn", 1),
])
def test_maps_equal_the_package_on_the_exported_graph(exported, image, kind, architecture, target):
    model = exported[architecture][1]
    shown, in_units = package_on_graph(kind, model, image, target, GradCamParams())
    ours = final(kind, model, image, target)
    assert_equal_to_package(ours.heatmap, shown, in_units)
    assert ours.attribution.shape == (1, HEIGHT, WIDTH) and ours.attribution.dtype == np.float32
    np.testing.assert_array_equal(ours.attribution[0], ours.heatmap)


@pytest.mark.parametrize("kind", ["gradcam", "gradcampp"])
def test_a_layer_named_in_the_parameters_or_the_card_is_the_one_explained(exported, image, kind, tmp_path):
    net, model = exported["TinyResNet"]
    shown, in_units = package_maps(kind, net, net.down, image, LogOdds(1, "softmax"))
    by_name = final(kind, model, image, 1, GradCamParams(layer="conv2d_3"))
    assert_equal_to_package(by_name.heatmap, shown, in_units)
    assert by_name.notes[0].startswith("layer conv2d_3 (down): 12 feature maps of 20 x 28")
    card = ModelCard.from_dict({**card_for(HEIGHT, WIDTH).to_dict(), "gradcam_layer": "conv2d_3"})
    path = export_model(TinyResNet(), card, tmp_path)
    assert ModelCard.read(path.with_suffix(".json")).gradcam_layer == "conv2d_3"
    from_card = load_model(path, CPU)
    np.testing.assert_array_equal(final(kind, from_card, image, 1).heatmap, by_name.heatmap)
    assert chosen_layer(from_card, GradCamParams(layer="relu_2")).name == "relu_2", "the parameter wins"


@pytest.mark.parametrize(("layer", "message"), [
    ("no_such_node", "has no node 'no_such_node'; its last feature maps are "),
    ("linear", "node 'linear' is no feature map"),
    ("adaptive_avg_pool2d_1", "is no feature map"),
])
def test_a_layer_that_is_not_a_feature_map_is_refused_in_one_line(exported, image, layer, message):
    with pytest.raises(ValueError, match=message) as refusal:
        final("gradcam", exported["TinyResNet"][1], image, 1, GradCamParams(layer=layer))
    assert "\n" not in str(refusal.value) and "mul" in str(refusal.value), "the candidates are named"


@pytest.mark.parametrize("value", ["", 7, ["relu_1"], "x" * 201])
def test_the_cards_layer_is_a_short_name_or_null(value):
    with pytest.raises(ModelCardError, match="'gradcam_layer' must be a node name"):
        ModelCard.from_dict({**card_for(8, 8).to_dict(), "gradcam_layer": value})
    assert ModelCard.from_dict({**card_for(8, 8).to_dict(), "gradcam_layer": None}).gradcam_layer is None


class Perceptron(torch.nn.Module):
    """Linear layers only: no map anywhere."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(HEIGHT * WIDTH, 16), torch.nn.ReLU(),
                                          torch.nn.Linear(16, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PatchTokens(torch.nn.Module):
    """A vision transformer's shape in small: a strided convolution cuts patches, which become
    a sequence of tokens, mixed by attention and averaged."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.patches = torch.nn.Conv2d(1, 16, 8, stride=8)
        self.attention = torch.nn.MultiheadAttention(16, 2, batch_first=True)
        self.head = torch.nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        mixed, _ = self.attention(tokens, tokens, tokens, need_weights=False)
        return self.head(mixed.mean(dim=1))


@pytest.mark.parametrize("architecture", [Perceptron, PatchTokens])
@pytest.mark.parametrize("kind", ["gradcam", "gradcampp"])
def test_a_model_without_a_pooled_feature_map_is_refused_in_one_line(tmp_path, image, architecture, kind):
    model = load_model(export_model(architecture(), card_for(HEIGHT, WIDTH), tmp_path), CPU)
    with pytest.raises(ValueError) as refusal:
        final(kind, model, image, 1)
    assert str(refusal.value) == NO_FEATURE_MAP and "\n" not in NO_FEATURE_MAP


def test_gradients_are_of_the_log_odds_the_probabilitys_up_to_a_positive_factor(exported, image):
    """Grad-CAM of the probability is Grad-CAM of its log-odds times dp/d(log-odds) = p (1 - p)."""
    model = exported["SmallCnn"][1]
    ours = final("gradcam", model, image, 1)
    p = ours.figures["score"]
    with torch.no_grad():
        assert p == pytest.approx(float(model.probabilities(image[None])[0, 1]), rel=1e-6)
    _, of_probability = package_on_graph("gradcam", model, image, 1, GradCamParams(), objective=Probability)
    np.testing.assert_allclose(ours.heatmap * p * (1 - p), of_probability, rtol=1e-4, atol=1e-7 * of_probability.max())


def test_a_saturated_sigmoid_still_gets_a_map(tmp_path, image):
    """At a logit of 40, float32 rounds the probability to 1 and its gradient to zero; the log-odds' is not."""
    net = SmallCnn()
    with torch.no_grad():
        net.features[6].bias[1] += 40.0
    model = load_model(export_model(net, card_for(HEIGHT, WIDTH, activation="sigmoid"), tmp_path), CPU)
    ours = final("gradcam", model, image, 1)
    assert ours.figures["score"] == 1.0 and ours.heatmap.max() > 0
    shown, in_units = package_on_graph("gradcam", model, image, 1, GradCamParams())
    assert_equal_to_package(ours.heatmap, shown, in_units)


def test_a_blank_map_says_why(exported, image):
    model = exported["TinyDenseNet"][1]  # at this image, every channel's weight for label 1 is negative
    ours = final("gradcam", model, image, 1)
    assert not ours.heatmap.any()
    assert any("the map is blank, not an explanation" in note for note in ours.notes)


def test_the_stages_come_in_order_and_a_cancel_stops_before_the_gradients(exported, image):
    model = exported["SmallCnn"][1]
    updates = list(METHOD.explain(model, image, 1, GradCamParams()))
    assert [u.evaluations for u in updates] == [0, 1, 1, 1]
    assert "score" not in updates[0].figures and updates[1].figures["score"] == updates[-1].figures["score"]
    assert all(np.isnan(u.heatmap).all() for u in updates[:-1]), "nothing of the map is known before the end"
    cancel = CancelToken()
    seen = []
    for update in METHOD.explain(model, image, 1, GradCamParams(), cancel=cancel):
        seen.append(update)
        if len(seen) == 2:
            cancel.cancel()
    assert len(seen) == 2 and not seen[-1].final
