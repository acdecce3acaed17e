"""The JSON card that sits beside a model file and says how to feed it and read it.

A card is what lets a user bring their own model: the labels, the activation that turns the
model's outputs into probabilities, the input size and normalisation, and optionally the
window the model was trained with. It is validated in full before any weight is touched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACTIVATIONS = ("softmax", "sigmoid")


class ModelCardError(ValueError):
    """The card is missing or malformed; the message is one line for the user."""


@dataclass(frozen=True)
class InputSpec:
    """The model's input: size, channels and the per-channel normalisation."""

    height: int
    width: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ModelCard:
    """What a model expects and what its outputs mean."""

    name: str
    labels: tuple[str, ...]
    activation: str
    input: InputSpec
    window: tuple[float, float] | None = None

    def label_index(self, target: str | int | None) -> int:
        """The output index for a label name or index; the last label when none is given.

        The last label is the finding by convention (``["no effusion", "effusion"]``), which is
        what a reader wants explained unless they ask otherwise.
        """
        if target is None:
            return len(self.labels) - 1
        if isinstance(target, int) or str(target).lstrip("-").isdigit():
            index = int(target)
            if not 0 <= index < len(self.labels):
                raise ModelCardError(f"target {index} is out of range: the model has {len(self.labels)} labels")
            return index
        if target not in self.labels:
            raise ModelCardError(f"unknown target {target!r}; the model's labels are {', '.join(self.labels)}")
        return self.labels.index(str(target))

    @classmethod
    def from_dict(cls, data: Any) -> ModelCard:
        """Validate a parsed card; every problem is reported as one plain line."""
        if not isinstance(data, dict):
            raise ModelCardError("the model card must be a JSON object")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
            raise ModelCardError("the model card needs 'labels', a non-empty list of names")
        activation = data.get("activation")
        if activation not in ACTIVATIONS:
            raise ModelCardError(f"the model card's 'activation' must be one of {', '.join(ACTIVATIONS)}")
        if activation == "softmax" and len(labels) < 2:
            raise ModelCardError("a softmax model needs at least two labels")
        spec = data.get("input")
        if not isinstance(spec, dict):
            raise ModelCardError("the model card needs an 'input' object")
        try:
            height, width, channels = (int(spec[key]) for key in ("height", "width", "channels"))
            mean = tuple(float(v) for v in spec.get("mean", [0.0] * channels))
            std = tuple(float(v) for v in spec.get("std", [1.0] * channels))
        except (KeyError, TypeError, ValueError):
            raise ModelCardError("the model card's 'input' needs integer height, width and channels") from None
        if min(height, width, channels) < 1:
            raise ModelCardError("the model card's input size must be positive")
        if len(mean) != channels or len(std) != channels or min(std) <= 0:
            raise ModelCardError("the model card's 'mean' and 'std' need one value per channel, std above 0")
        window = data.get("window")
        if window is not None:
            try:
                center, window_width = (float(v) for v in window)
            except (TypeError, ValueError):
                raise ModelCardError("the model card's 'window' must be [center, width] or null") from None
            if window_width <= 0:
                raise ModelCardError("the model card's window width must be above 0")
            window = (center, window_width)
        return cls(
            name=str(data.get("name") or "Unnamed model"),
            labels=tuple(labels),
            activation=str(activation),
            input=InputSpec(height, width, channels, mean, std),
            window=window,
        )

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Read and validate a card file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise ModelCardError(f"cannot read the model card {Path(path).name}: {error.strerror}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelCardError(f"the model card {Path(path).name} is not valid JSON (line {error.lineno})") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The card as JSON-ready data, the inverse of :meth:`from_dict`."""
        return {
            "name": self.name,
            "labels": list(self.labels),
            "activation": self.activation,
            "input": {
                "height": self.input.height,
                "width": self.input.width,
                "channels": self.input.channels,
                "mean": list(self.input.mean),
                "std": list(self.input.std),
            },
            "window": None if self.window is None else list(self.window),
        }
