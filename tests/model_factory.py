"""Small models built and exported in the tests, so every expected answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from explain.model_card import ModelCard


def card_for(height: int, width: int, channels: int = 1, labels: tuple[str, ...] = ("normal", "finding"),
             activation: str = "softmax") -> ModelCard:
    return ModelCard.from_dict({
        "name": "Test model", "labels": list(labels), "activation": activation,
        "input": {"height": height, "width": width, "channels": channels,
                  "mean": [0.5] * channels, "std": [0.25] * channels},
        "window": None,
    })


class SmallCnn(torch.nn.Module):
    """A seeded convolutional classifier: strided convolutions, ReLU, pooling, a linear head."""

    def __init__(self, channels: int = 1, labels: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(channels, 8, 5, stride=2, padding=2), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, labels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TinyDenseNet(torch.nn.Module):
    """DenseNet's shapes in small: a strided stem, padded max pooling, batch norm, dense
    concatenation, an average-pooling transition and a global head."""

    def __init__(self, channels: int = 1, labels: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 5, stride=2, padding=2), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(), torch.nn.MaxPool2d(3, stride=2, padding=1))
        self.layers = torch.nn.ModuleList(
            torch.nn.Sequential(torch.nn.BatchNorm2d(8 + 4 * k), torch.nn.ReLU(), torch.nn.Conv2d(8 + 4 * k, 4, 3, padding=1))
            for k in range(3))
        self.transition = torch.nn.Sequential(torch.nn.Conv2d(20, 10, 1), torch.nn.AvgPool2d(2))
        self.head = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(10, labels))
        for module in self.modules():  # statistics unlike a fresh layer's, so that they matter
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.layers:
            x = torch.cat([x, layer(x)], dim=1)
        return self.head(self.transition(x))


class TinyResNet(torch.nn.Module):
    """Residual blocks: an identity shortcut (two patched operands added) and a strided 1x1
    shortcut, in-place ReLU, a scalar shift and a squeeze-excitation gate that reaches across
    the whole image."""

    def __init__(self, channels: int = 1, labels: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = torch.nn.Conv2d(channels, 8, 3, padding=1)
        self.body = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
                                        torch.nn.Conv2d(8, 8, 3, padding=1))
        self.down = torch.nn.Conv2d(8, 12, 3, stride=2, padding=1)
        self.shortcut = torch.nn.Conv2d(8, 12, 1, stride=2)
        self.gate = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Conv2d(12, 12, 1), torch.nn.Sigmoid())
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(12, labels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.stem(x) - 0.1)
        x = torch.relu(x + self.body(x))
        x = torch.relu(self.down(x) + self.shortcut(x))
        return self.head(x * self.gate(x))


class InplaceCnn(torch.nn.Module):
    """A plain CNN written as MONAI and torchvision write theirs, with in-place operators.

    The ReLU right after the stem's batch norm works in place on the tensor where integrated
    gradients cuts the graph after its affine stem. The residual sum ``out += ...`` overwrites
    the output of a 3 x 3 convolution with a 3 x 3 then 5 x 5 branch added: an occluded window
    reaches further in the branch than in the tensor overwritten, the case where incremental
    inference once pasted boxes into an overwritten activation.
    """

    def __init__(self, channels: int = 1, labels: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(channels, 8, 5, stride=2, padding=2), torch.nn.BatchNorm2d(8),
                                        torch.nn.ReLU(inplace=True))
        self.side = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.branch = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(inplace=True),
                                          torch.nn.Conv2d(8, 8, 5, padding=2))
        self.head = torch.nn.Sequential(torch.nn.ReLU(inplace=True), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                        torch.nn.Linear(8, labels))
        with torch.no_grad():  # statistics unlike a fresh layer's, so that they matter
            self.stem[1].running_mean.uniform_(-0.5, 0.5)
            self.stem[1].running_var.uniform_(0.5, 2.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = self.side(x)
        out += self.branch(x)
        return self.head(out)


class RegionDetector(torch.nn.Module):
    """Says "finding" exactly as much as a known box of the input is bright.

    The logit is the mean of the box plus ``offset``, so hiding any part of the box lowers
    the finding's probability and nothing outside the box matters: the right answer is known.
    A large ``offset`` (20) makes a model sure of itself: its probability rounds to 1 in
    float32 whatever is hidden, while its log-odds still follow the box.
    """

    def __init__(self, box: tuple[int, int, int, int], offset: float = -2.0) -> None:
        super().__init__()
        self.box, self.offset = box, offset

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom, left, right = self.box
        evidence = x[:, :, top:bottom, left:right].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(evidence), 4.0 * evidence + self.offset], dim=1)


class Indifferent(torch.nn.Module):
    """Gives the same probabilities whatever the image: nothing in it can change its mind."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        constant = 0.0 * x.mean(dim=(1, 2, 3))
        return torch.stack([constant, constant + 1.0], dim=1)


def export_model(module: torch.nn.Module, card: ModelCard, folder: Path, name: str = "model",
                 dynamic_batch: bool = True) -> Path:
    """Export with ``torch.export`` and write the card beside it; returns the ``.pt2`` path."""
    spec = card.input
    module = module.eval()
    example = torch.randn(2 if dynamic_batch else 1, spec.channels, spec.height, spec.width)
    shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    program = torch.export.export(module, (example,), dynamic_shapes=shapes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.pt2"
    torch.export.save(program, str(path))
    path.with_suffix(".json").write_text(json.dumps(card.to_dict()))
    return path
