"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018) on the exported graph.

Both weigh the feature maps of one layer, the last convolutional one before the model pools its
image into a vector, by how much the target label gains from each; their weighted sum, ReLU'd
and upsampled bilinearly to the input grid, is the map. They differ only in the channel weights
(:func:`grad_cam_weights`, :func:`grad_cam_pp_weights`).

What is differentiated is the target probability's log-odds, ``log(p / (1 - p))``, not the
probability itself. It rises and falls with the probability, so Grad-CAM's map is the
probability's own times the positive factor ``1 / (p (1 - p))``; but it does not saturate: a
confident sigmoid head rounds p to 1.0 in float32, and the probability's gradient, and its map,
to exactly zero. For a sigmoid head the log-odds is the logit, the usual target of Grad-CAM; for
a softmax head it is the target's logit less the log-sum-exp of the others. Grad-CAM++ is not
blind to that factor, and uses the same target (:func:`explain.model_file.log_odds`, which every
method explains when asked to). The ``score`` figure is the probability, as for every method.

The final map equals the ``grad-cam`` package's (``pytorch_grad_cam``) on the same layer and
target, before the package rescales it to [0, 1]: ours keeps its units, so that a weak map
looks weak and a blank one stays blank.

The layer is a node of the exported graph: the last feature map the model pools or flattens
into one vector per image (:func:`find_layer`), or one named by the ``layer`` parameter or the
card's ``gradcam_layer``. The graph is run node by node (torch.fx's ``Interpreter``) with that
node's value made a leaf of autograd, so the backward pass stops there. A forward and a
backward pass are all the work; an update comes after each real stage (the layer's feature
maps, the score, the gradients), its map NaN because nothing of it is known before the
gradients are in, and a cancel is obeyed between stages.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch.fx import GraphModule, Interpreter, Node

from explain.baselines import baseline_image
from explain.engine import CancelToken, Update, model_device_input, same_for_every_channel
from explain.method import Method
from explain.model_file import LoadedModel, log_odds

aten = torch.ops.aten

#: Operators that make a feature map from an image.
CONVOLUTIONS = {aten.conv2d.default, aten.conv2d.padding, aten.convolution.default}
#: Operators that only reshape a value: a hand-written global pooling may view a map as
#: ``(N, C, H * W)`` before taking its mean. Transposes are not among them: a vision
#: transformer flattens its patch map and transposes it into a sequence of tokens.
RESHAPES = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints,
            aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default, aten.unsqueeze.default, aten.clone.default}
#: Grad-CAM++'s guard in the denominator of its weights, the grad-cam package's: where a
#: gradient is tiny its square is of this order, so the guard is part of the result.
PLUS_PLUS_EPSILON = 1e-6
#: The refusal for a model with nothing to take a class activation map of.
NO_FEATURE_MAP = ("Grad-CAM needs a convolutional feature map pooled into the prediction; this model has none "
                  "(a vision transformer, or linear layers only): choose another method")
UNITS = "gradient-weighted activation (log-odds)"
#: The work of weighing and upsampling the maps, against one forward pass: next to nothing.
MAP_WORK = 0.01


@dataclass(frozen=True)
class GradCamParams:
    """``layer`` names the graph node whose feature maps are weighed; empty takes the card's
    ``gradcam_layer``, or else the last feature map before the model pools its image."""

    layer: str = ""


#: ``weigh(activations, gradients)``: one weight per channel of the layer's ``(C, h, w)`` maps.
ChannelWeights = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def grad_cam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's: each channel's gradient averaged over its positions."""
    return gradients.mean(dim=(1, 2))


def grad_cam_pp_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++'s: the positive gradients, each weighed by the paper's ``alpha`` (its equation 19).

    ``alpha = g² / (2 g² + sum(A) g³)`` is the closed form for an exponential of the score; it
    gives a position more say where few positions of its channel carry the gradient, so that a
    small finding is not outvoted by a large one. Written with the package's guard and its zero
    where the gradient is zero.
    """
    squared = gradients**2
    total = activations.sum(dim=(1, 2), keepdim=True)
    alpha = squared / (2 * squared + total * squared * gradients + PLUS_PLUS_EPSILON)
    alpha = torch.where(gradients != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(gradients) * alpha).sum(dim=(1, 2))


def per_image_shape(node: Node) -> tuple[int, ...] | None:
    """The recorded shape of a node's value less its batch dimension; None if it is no tensor."""
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor) or value.dim() < 1:
        return None
    try:
        return tuple(int(size) for size in value.shape[1:])
    except (TypeError, RuntimeError):  # a dynamic size other than the batch
        return None


def is_spatial(node: Node) -> bool:
    """Whether a node's value is a stack of 2-D maps ``(N, C, h, w)``, more than one pixel each way."""
    shape = per_image_shape(node)
    return shape is not None and len(shape) == 3 and shape[1] > 1 and shape[2] > 1


def feature_maps(module: GraphModule) -> list[Node]:
    """Nodes, in graph order, whose spatial value is computed from the image through a convolution.

    A spatial value before any convolution (the normalised image) carries no learned features.
    """
    varies: set[Node] = set()
    convolved: set[Node] = set()
    found = []
    for node in module.graph.nodes:
        if node.op == "placeholder":
            varies.add(node)
            continue
        if node.op != "call_function" or not any(arg in varies for arg in node.all_input_nodes):
            continue
        varies.add(node)
        if node.target in CONVOLUTIONS or any(arg in convolved for arg in node.all_input_nodes):
            convolved.add(node)
            if is_spatial(node):
                found.append(node)
    return found


def is_pooled(node: Node) -> bool:
    """Whether the model reduces a feature map to one vector per image, possibly after reshapes.

    A global pooling leaves one value per channel, a flatten (VGG's head) every value; either
    way the result has at most one dimension longer than one. A vision transformer's patch map
    is flattened into tokens instead, and is not pooled.
    """
    channels, height, width = per_image_shape(node)
    sizes = {channels, channels * height * width}
    pending = list(node.users)
    while pending:
        user = pending.pop()
        shape = per_image_shape(user)
        if shape is None:  # several values at once (max pooling with its indices): follow what is taken
            pending.extend(user.users)
            continue
        if math.prod(shape) in sizes and sum(size > 1 for size in shape) <= 1:
            return True
        if user.target in RESHAPES:
            pending.extend(user.users)
    return False


def find_layer(module: GraphModule) -> Node:
    """The last feature map the model pools or flattens into a vector: Grad-CAM's usual layer.

    It has the most semantic features that still have a place in the image. ``ValueError``
    for a model without one.
    """
    pooled = [node for node in feature_maps(module) if is_pooled(node)]
    if not pooled:
        raise ValueError(NO_FEATURE_MAP)
    return pooled[-1]


def named_layer(module: GraphModule, name: str) -> Node:
    """The feature map of the graph node called ``name``; ``ValueError`` naming the candidates."""
    maps = feature_maps(module)
    candidates = ", ".join(node.name for node in maps[-6:]) or "none"
    node = next((node for node in module.graph.nodes if node.name == name), None)
    if node is None:
        raise ValueError(f"the model's graph has no node {name[:60]!r}; its last feature maps are {candidates}")
    if node not in maps:
        raise ValueError(f"node {name[:60]!r} is no feature map (maps more than one pixel wide, computed by a "
                         f"convolution from the image); the model's last feature maps are {candidates}")
    return node


def chosen_layer(model: LoadedModel, params: GradCamParams) -> Node:
    """The layer asked for by the parameters, else by the card, else found in the graph."""
    if not isinstance(model.module, GraphModule):
        raise ValueError("Grad-CAM needs the model's exported graph")
    name = params.layer or model.card.gradcam_layer
    return named_layer(model.module, name) if name else find_layer(model.module)


class LayerTap:
    """One image through the exported graph, node by node, with the layer's value cut loose.

    The part up to the layer runs without autograd; the layer's value is copied into a leaf that
    requires grad, and the rest runs from that leaf, so the backward pass stops at the layer.
    The rest reads a copy of the leaf: an operator that writes its operand in place (``relu_``)
    writes into the copy, and the leaf keeps the feature maps as the layer made them.
    """

    def __init__(self, model: LoadedModel, layer: Node) -> None:
        self.model = model
        self.layer = layer
        self.interpreter = Interpreter(model.module)
        nodes = list(model.module.graph.nodes)
        cut = nodes.index(layer) + 1
        self.head, self.tail = nodes[:cut], nodes[cut:]
        self.leaf: torch.Tensor | None = None

    def share_before_layer(self) -> float:
        """The share of the operators that run up to the layer, for the progress."""
        head = sum(node.op == "call_function" for node in self.head)
        return head / max(head + sum(node.op == "call_function" for node in self.tail), 1)

    def _run(self, nodes: list[Node]) -> None:
        """Run ``nodes`` in order, each value kept until its last use, as ``Interpreter.run`` does."""
        interpreter = self.interpreter
        for node in nodes:
            interpreter.env[node] = interpreter.run_node(node)
            for spent in interpreter.user_to_last_uses.get(node, []):
                del interpreter.env[spent]

    def to_layer(self, batch: torch.Tensor) -> torch.Tensor:
        """The layer's feature maps for ``batch``, as a leaf of autograd."""
        graph = self.model.module.graph
        self.interpreter.env = {}
        self.interpreter.args_iter = iter(graph.process_inputs(batch))
        with torch.no_grad(), self.model.precision():
            self._run(self.head)
        self.leaf = self.interpreter.env[self.layer].detach().clone().requires_grad_(True)
        return self.leaf

    def from_layer(self) -> torch.Tensor:
        """The logits, computed from the leaf so that autograd can go back to it."""
        with torch.enable_grad(), self.model.precision():
            self.interpreter.env[self.layer] = self.leaf.clone()
            self._run(self.tail)
        output = self.interpreter.env.pop(self.tail[-1])
        return self.model.module.graph.process_outputs(output)

    def gradients(self, objective: torch.Tensor) -> torch.Tensor:
        """The gradient of ``objective`` (one value per image) with respect to the layer's maps."""
        (result,) = torch.autograd.grad(objective.sum(), self.leaf)
        return result


def upsampled(activations: torch.Tensor, weights: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """The ReLU'd weighted sum of the maps, bilinearly resized to ``size`` as OpenCV resizes it."""
    cam = torch.relu((weights[:, None, None] * activations).sum(dim=0))
    resized = torch.nn.functional.interpolate(cam[None, None], size=size, mode="bilinear", align_corners=False)
    return resized[0, 0].to("cpu", torch.float32).numpy()


def layer_note(layer: Node, cam: np.ndarray) -> tuple[str, ...]:
    """Which layer the map comes from (it sets the map's resolution), and why a blank map is blank.

    The layer is named by its graph node, which the ``layer`` parameter takes, and by the module
    of the user's model that made it, which the user knows.
    """
    channels, height, width = per_image_shape(layer)
    stack = layer.meta.get("nn_module_stack") or {}
    module = list(stack.values())[-1][0] if stack else ""
    named = f"{layer.name} ({module})" if module else layer.name
    notes = [f"layer {named}: {channels} feature maps of {height} x {width}, upsampled to the image"]
    if not np.any(cam > 0):
        notes.append(f"No channel of {layer.name} raises the label's log-odds anywhere: the map is blank, not an "
                     "explanation; try another layer or method.")
    return tuple(notes)


def waiting(height: int, width: int, progress: float, evaluations: int, figures: dict[str, float]) -> Update:
    """An update of a stage before the gradients are in: nothing of the map is known yet."""
    return Update(heatmap=np.full((height, width), np.nan, dtype=np.float32), progress=progress, final=False,
                  evaluations=evaluations, figures=figures)


def class_activation_map(
    model: LoadedModel,
    x: torch.Tensor,
    target: int,
    params: GradCamParams = GradCamParams(),
    cancel: CancelToken | None = None,
    batch_size: int | None = None,
    *,
    weigh: ChannelWeights,
) -> Iterator[Update]:
    """The class activation map of ``x`` ``(channels, height, width)`` for output ``target``.

    ``weigh`` sets the channel weights, Grad-CAM's or Grad-CAM++'s. ``batch_size`` is accepted so
    that every method is called alike, and unused: there is one image, forward and back once.
    The progress counts the operators run, a backward one as two forward ones.
    """
    cancel = cancel or CancelToken()
    channels, height, width = x.shape
    tap = LayerTap(model, chosen_layer(model, params))
    head = tap.share_before_layer()
    backward = 2 * (1 - head)
    total = 1 + backward + MAP_WORK
    activations = tap.to_layer(model_device_input(x, model)[None])
    yield waiting(height, width, head / total, 0, {})
    if cancel.cancelled:
        return
    logits = tap.from_layer()
    # The probability from the logits in hand, by the card's activation as every method takes it.
    score = float(model.probabilities(logits.detach(), forward=lambda batch: batch)[0, target])
    yield waiting(height, width, 1 / total, 1, {"score": score})
    if cancel.cancelled:
        return
    gradients = tap.gradients(log_odds(logits, target, model.card.activation))
    yield waiting(height, width, (1 + backward) / total, 1, {"score": score})
    if cancel.cancelled:
        return
    maps, slopes = (value[0].detach().to(torch.float64) for value in (activations, gradients))
    cam = upsampled(maps, weigh(maps, slopes), (height, width))
    final = same_for_every_channel(cam, channels, 1.0, True, 1, {"score": score})
    yield dataclasses.replace(final, notes=layer_note(tap.layer, cam))


def zero_baseline(x: torch.Tensor, params: GradCamParams) -> torch.Tensor:
    """What the trust figures remove pixels to: zero in model-input space, the other methods' default."""
    return baseline_image(x, 0.0, blur_sigma=1.0)


#: The one parameter both methods take.
LAYER_HINT = {"layer": "The model's layer whose feature maps are weighed (empty: the last before pooling)"}
METHOD = Method("gradcam", "Grad-CAM", GradCamParams, partial(class_activation_map, weigh=grad_cam_weights),
                baseline=zero_baseline, units=UNITS, fixed_score="log-odds", hints=LAYER_HINT)
PLUS_PLUS = Method("gradcampp", "Grad-CAM++", GradCamParams, partial(class_activation_map, weigh=grad_cam_pp_weights),
                   baseline=zero_baseline, units=UNITS, fixed_score="log-odds", hints=LAYER_HINT)
