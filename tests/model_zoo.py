"""The models users bring: MONAI's common medical architectures, exported as users export them.

Each entry is built with random weights (nothing is downloaded), its head calibrated so that its
probabilities move, and exported by :func:`tests.model_factory.export_model`: a dynamic batch
and the in-place operators kept, as ``torch.export`` leaves them. The entries share one image
size and between them cover one and three channels, softmax and sigmoid heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from monai.networks import nets

from explain.model_card import ModelCard
from tests.model_factory import InplaceCnn, card_for, export_model

#: Side of every zoo model's input: small, so that every method runs on every model in seconds.
SIZE = 64
#: Labels of a softmax head (one of them) and of a sigmoid head (each independent).
SOFTMAX_LABELS = ("normal", "finding")
SIGMOID_LABELS = ("effusion", "nodule", "pneumothorax")
#: The spread of each calibrated logit over the calibration inputs: probabilities between about
#: 0.1 and 0.9, far from both float rounding and saturation.
LOGIT_SPREAD = 4.0


class LogitsOnly(torch.nn.Module):
    """MONAI's ViT returns its logits with every block's hidden states; a user exports the logits."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)[0]


def vit(channels: int, labels: int) -> torch.nn.Module:
    """A two-block ViT on 16-pixel patches, with no activation after its head (logits out)."""
    return LogitsOnly(nets.ViT(in_channels=channels, img_size=SIZE, patch_size=16, hidden_size=96, mlp_dim=192,
                               num_layers=2, num_heads=4, spatial_dims=2, classification=True,
                               num_classes=labels, post_activation=None))


@dataclass(frozen=True)
class ZooModel:
    """How to build one zoo model: ``build(channels, labels)``, its input channels and its head."""

    name: str
    build: Callable[[int, int], torch.nn.Module]
    channels: int
    activation: str

    @property
    def labels(self) -> tuple[str, ...]:
        return SOFTMAX_LABELS if self.activation == "softmax" else SIGMOID_LABELS

    def card(self) -> ModelCard:
        return card_for(SIZE, SIZE, self.channels, self.labels, self.activation)


ZOO = {model.name: model for model in (
    ZooModel("inplace-cnn", lambda c, k: InplaceCnn(c, k), 1, "softmax"),
    ZooModel("densenet121", lambda c, k: nets.DenseNet121(spatial_dims=2, in_channels=c, out_channels=k), 1, "sigmoid"),
    ZooModel("resnet18", lambda c, k: nets.resnet18(spatial_dims=2, n_input_channels=c, num_classes=k), 3, "softmax"),
    ZooModel("resnet50", lambda c, k: nets.resnet50(spatial_dims=2, n_input_channels=c, num_classes=k), 1, "softmax"),
    ZooModel("seresnet50", lambda c, k: nets.SEResNet50(spatial_dims=2, in_channels=c, num_classes=k), 3, "sigmoid"),
    ZooModel("efficientnet-b0", lambda c, k: nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2,
                                                                 in_channels=c, num_classes=k), 3, "softmax"),
    ZooModel("vit", vit, 1, "sigmoid"),
)}


def zoo_image(channels: int, seed: int = 0) -> torch.Tensor:
    """The image every zoo model explains: seeded noise, ``(channels, SIZE, SIZE)``."""
    return torch.randn(channels, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def calibration_inputs(channels: int) -> torch.Tensor:
    """Inputs the methods show a model: the zoo image, other noise, and the blank baseline."""
    noise = torch.stack([zoo_image(channels, seed) for seed in range(4)])
    return torch.cat([noise, torch.zeros(1, channels, SIZE, SIZE)])


def calibrate_head(module: torch.nn.Module, inputs: torch.Tensor, spread: float = LOGIT_SPREAD) -> None:
    """Scale and centre the last linear layer so that each logit spans ``spread`` over ``inputs``.

    Random weights leave some heads saturated (ResNet-50's probability is 1.0 on any input) and
    some flat (EfficientNet-B0's is 0.5 to four places): their maps would be float rounding, and
    equality with a reference would prove nothing. The layer must end the model.
    """
    head = [layer for layer in module.modules() if isinstance(layer, torch.nn.Linear)][-1]
    with torch.no_grad():
        logits = module.eval()(inputs)
        low, high = logits.min(dim=0).values, logits.max(dim=0).values
        scale = spread / float((high - low).max())
        head.weight.mul_(scale)
        head.bias.mul_(scale).sub_(scale * (low + high) / 2)


def build(name: str, seed: int = 0) -> torch.nn.Module:
    """The zoo model ``name`` with seeded random weights and its head calibrated."""
    entry = ZOO[name]
    torch.manual_seed(seed)
    module = entry.build(entry.channels, len(entry.labels)).eval()
    calibrate_head(module, calibration_inputs(entry.channels))
    return module


def export_zoo_model(name: str, folder: Path) -> Path:
    """Build and export ``name`` as a user would (dynamic batch, in-place operators kept), with its card."""
    return export_model(build(name), ZOO[name].card(), folder, name=name)
