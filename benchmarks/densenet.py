"""DenseNet-121 (Huang et al. 2017), the architecture of CheXNet-style chest X-ray classifiers.

Built here with random (seeded) weights for the speed benchmark: one grey channel at 224 x 224,
growth rate 32, blocks of 6, 12, 24 and 16 layers, each layer a 1x1 bottleneck to 128 channels
then a 3x3 convolution, every layer pre-activated by batch norm and ReLU; transitions halve the
channels and the resolution. 7.0 M parameters, 2.9 GMAC per image.

``export_densenet(..., architecture="monai")`` exports MONAI's own
``monai.networks.nets.DenseNet121(spatial_dims=2, in_channels=1, out_channels=2)`` instead, as
its users export it: seeded random weights, the module unchanged (in-place ReLUs, its own
``features``/``class_layers`` layout, stem ``conv0``/``norm0``/``relu0``/``pool0``).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

GROWTH = 32
BOTTLENECK = 4 * GROWTH
BLOCKS = (6, 12, 24, 16)
STEM = 64
#: The DenseNets ``export_densenet`` can build: the one here, or MONAI's as its users export it.
ARCHITECTURES = ("ours", "monai")
NAMES = {"ours": "DenseNet-121 (random weights)", "monai": "MONAI DenseNet121 (random weights)"}
CARD = {"name": NAMES["ours"], "labels": ["no finding", "finding"], "activation": "softmax",
        "input": {"height": 224, "width": 224, "channels": 1, "mean": [0.5], "std": [0.25]}, "window": None}


def norm_relu_conv(inputs: int, outputs: int, kernel: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(inputs), nn.ReLU(), nn.Conv2d(inputs, outputs, kernel, padding=kernel // 2, bias=False)]


class DenseLayer(nn.Module):
    """Adds ``GROWTH`` new channels computed from all the channels before it."""

    def __init__(self, inputs: int) -> None:
        super().__init__()
        self.new = nn.Sequential(*norm_relu_conv(inputs, BOTTLENECK, 1), *norm_relu_conv(BOTTLENECK, GROWTH, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.new(x)], dim=1)


class DenseNet121(nn.Module):
    def __init__(self, channels: int = 1, labels: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = [nn.Conv2d(channels, STEM, 7, stride=2, padding=3, bias=False),
                                   nn.BatchNorm2d(STEM), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1)]
        width = STEM
        for index, depth in enumerate(BLOCKS):
            for _ in range(depth):
                layers.append(DenseLayer(width))
                width += GROWTH
            if index < len(BLOCKS) - 1:
                layers += [*norm_relu_conv(width, width // 2, 1), nn.AvgPool2d(2, stride=2)]
                width //= 2
        layers += [nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, labels)]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def monai_densenet121(seed: int = 0) -> nn.Module:
    """MONAI's DenseNet-121 for one grey channel and two labels, seeded random weights, as is."""
    from monai.networks.nets import DenseNet121 as MonaiDenseNet121

    torch.manual_seed(seed)
    return MonaiDenseNet121(spatial_dims=2, in_channels=1, out_channels=2)


def export_densenet(folder: Path, name: str = "densenet121", architecture: str = "ours") -> Path:
    """Export with a free batch dimension and write the card beside it; returns the ``.pt2``.

    ``architecture`` is ``"ours"`` (``DenseNet121`` above) or ``"monai"`` (MONAI's, unchanged)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, not {architecture!r}")
    model = (DenseNet121() if architecture == "ours" else monai_densenet121()).eval()
    example = torch.randn(2, 1, 224, 224)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt2"
    torch.export.save(program, str(path))
    path.with_suffix(".json").write_text(json.dumps({**CARD, "name": NAMES[architecture]}))
    return path
