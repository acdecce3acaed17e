"""The JSON card that sits beside a model file and says how to feed it and read it.

A card is what lets a user bring their own model: the labels, the activation that turns the
model's outputs into probabilities, the input size and normalisation, and optionally the
window the model was trained with and the graph node Grad-CAM should explain. It is validated
in full before any weight is touched.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from explain.expected_images import LISTED, MINIMA, ExpectedImages

ACTIVATIONS = ("softmax", "sigmoid")
#: A card is a few hundred bytes; anything near this is not a card.
MAX_CARD_BYTES = 1 << 20
#: Input sides and channels a model can sensibly take; larger claims are mistakes or attacks.
MAX_SIDE = 4096
MAX_CHANNELS = 16
MAX_LABELS = 1000
MAX_TEXT = 200
#: Largest magnitude of a normalisation value or window; beyond it float32 arithmetic misleads.
MAX_VALUE = 1e7
#: A DICOM code string (Modality, Body Part Examined, ...) has at most 16 characters.
MAX_CODE = 16
#: Values one ``expects`` list may name; a card listing more is mistaken.
MAX_EXPECTED = 64
#: Rows and Columns are 16-bit in DICOM.
MAX_ROWS = 65535


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
    #: The exported graph's node whose feature maps Grad-CAM weighs; None lets it find one.
    gradcam_layer: str | None = None
    #: The images the model was made for; None accepts any (see :mod:`explain.expected_images`).
    expects: ExpectedImages | None = None

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
        """Validate a parsed card; every problem is reported as one plain line.

        Every field has a type, a finite range and a size limit, so a card cannot smuggle a NaN
        into the model's input or claim an input too large to allocate.
        """
        if not isinstance(data, dict):
            raise ModelCardError("the model card must be a JSON object")
        labels = data.get("labels")
        if (not isinstance(labels, list) or not 0 < len(labels) <= MAX_LABELS
                or not all(isinstance(x, str) and 0 < len(x) <= MAX_TEXT for x in labels)):
            raise ModelCardError(f"the model card needs 'labels', a non-empty list of at most {MAX_LABELS} names "
                                 f"of at most {MAX_TEXT} characters")
        if len(set(labels)) != len(labels):
            raise ModelCardError("the model card's labels must be different from each other")
        activation = data.get("activation")
        if activation not in ACTIVATIONS:
            raise ModelCardError(f"the model card's 'activation' must be one of {', '.join(ACTIVATIONS)}")
        if activation == "softmax" and len(labels) < 2:
            raise ModelCardError("a softmax model needs at least two labels")
        name = data.get("name") or "Unnamed model"
        if not isinstance(name, str) or len(name) > MAX_TEXT:
            raise ModelCardError(f"the model card's 'name' must be text of at most {MAX_TEXT} characters")
        return cls(name=name, labels=tuple(labels), activation=str(activation), input=input_spec(data.get("input")),
                   window=card_window(data.get("window")), gradcam_layer=gradcam_layer(data.get("gradcam_layer")),
                   expects=expected_images(data.get("expects")))

    @classmethod
    def read(cls, path: Path) -> ModelCard:
        """Read and validate a card file: a regular file of modest size, plain JSON."""
        return cls.from_dict(parse_card(read_card_text(Path(path)), Path(path).name))

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
            # Only when set, so that the cards written before it existed read back as they were.
            **({} if self.gradcam_layer is None else {"gradcam_layer": self.gradcam_layer}),
            **({} if self.expects is None else {"expects": self.expects.to_dict()}),
        }


def finite_number(value: Any, what: str) -> float:
    """A JSON number that is finite and of sensible size; never a bool, a string or NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelCardError(f"the model card's {what} must be a number")
    number = float(value) if abs(value) < 1e308 else math.inf
    if not math.isfinite(number) or abs(number) > MAX_VALUE:
        raise ModelCardError(f"the model card's {what} must be a finite number of at most {MAX_VALUE:g} in size")
    return number


def whole_number(value: Any, what: str, high: int) -> int:
    """A whole JSON number between 1 and ``high``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= high or value != int(value):
        raise ModelCardError(f"the model card's input {what} must be a whole number from 1 to {high}")
    return int(value)


def numbers_per_channel(value: Any, what: str, channels: int, default: float) -> tuple[float, ...]:
    """One finite number per channel, or the default for every channel when absent."""
    if value is None:
        return (default,) * channels
    if not isinstance(value, list) or len(value) != channels:
        raise ModelCardError(f"the model card's '{what}' needs one value per channel ({channels})")
    return tuple(finite_number(v, f"'{what}'") for v in value)


def input_spec(spec: Any) -> InputSpec:
    """The card's ``input`` object: its size, channels and normalisation, all checked."""
    if not isinstance(spec, dict) or not all(key in spec for key in ("height", "width", "channels")):
        raise ModelCardError("the model card's 'input' needs integer height, width and channels")
    height = whole_number(spec["height"], "height", MAX_SIDE)
    width = whole_number(spec["width"], "width", MAX_SIDE)
    channels = whole_number(spec["channels"], "channels", MAX_CHANNELS)
    mean = numbers_per_channel(spec.get("mean"), "mean", channels, 0.0)
    std = numbers_per_channel(spec.get("std"), "std", channels, 1.0)
    if min(std) <= 0:
        raise ModelCardError("the model card's 'mean' and 'std' need one value per channel, std above 0")
    return InputSpec(height, width, channels, mean, std)


def card_window(window: Any) -> tuple[float, float] | None:
    """The optional ``[center, width]`` the model was trained with."""
    if window is None:
        return None
    if not isinstance(window, list) or len(window) != 2:
        raise ModelCardError("the model card's 'window' must be [center, width] or null")
    center, width = (finite_number(v, "window") for v in window)
    if width <= 0:
        raise ModelCardError("the model card's window width must be above 0")
    return center, width


def gradcam_layer(name: Any) -> str | None:
    """The optional ``gradcam_layer``: a node name of the exported graph, checked against it when used."""
    if name is None:
        return None
    if not isinstance(name, str) or not 0 < len(name) <= MAX_TEXT:
        raise ModelCardError(f"the model card's 'gradcam_layer' must be a node name of at most {MAX_TEXT} "
                             "characters, or null")
    return name


def expected_images(value: Any) -> ExpectedImages | None:
    """The optional ``expects`` object; an unknown key is refused, since a misspelt one would check nothing."""
    if value is None:
        return None
    keys = [name for name, _, _ in LISTED] + [name for name, _, _ in MINIMA]
    if not isinstance(value, dict) or not set(value) <= set(keys):
        raise ModelCardError(f"the model card's 'expects' must be an object with any of {', '.join(keys)}")
    listed = {name: code_strings(value[name], name) for name, _, _ in LISTED if name in value}
    minima = {name: least_size(value[name], name) for name, _, _ in MINIMA if name in value}
    return ExpectedImages(**listed, **minima)


def code_strings(value: Any, name: str) -> tuple[str, ...]:
    """A non-empty list of DICOM code strings, kept upper-case as the comparison reads them."""
    if (not isinstance(value, list) or not 0 < len(value) <= MAX_EXPECTED
            or not all(isinstance(v, str) and 0 < len(v.strip()) <= MAX_CODE for v in value)):
        raise ModelCardError(f"the model card's expects '{name}' must be a list of 1 to {MAX_EXPECTED} values "
                             f"of 1 to {MAX_CODE} characters")
    return tuple(dict.fromkeys(v.strip().upper() for v in value))


def least_size(value: Any, name: str) -> int:
    """A smallest number of rows or columns: a whole number that DICOM can hold."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= MAX_ROWS or value != int(value):
        raise ModelCardError(f"the model card's expects '{name}' must be a whole number from 1 to {MAX_ROWS}")
    return int(value)


def read_card_text(path: Path) -> str:
    """The card's text, read only from a regular file and never more than :data:`MAX_CARD_BYTES`.

    A card that is a FIFO or a link to an endless device would otherwise be read forever.
    """
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ModelCardError(f"the model card {path.name} is not a regular file")
        with open(path, "rb") as file:
            data = file.read(MAX_CARD_BYTES + 1)
    except OSError as error:
        raise ModelCardError(f"cannot read the model card {path.name}: {error.strerror}") from None
    if len(data) > MAX_CARD_BYTES:
        raise ModelCardError(f"the model card {path.name} is larger than {MAX_CARD_BYTES // 1024} KiB; "
                             "a card is a small JSON file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ModelCardError(f"the model card {path.name} is not UTF-8 text") from None


def parse_card(text: str, name: str) -> Any:
    """Plain JSON: no NaN or Infinity literals, no nesting deep enough to exhaust the stack."""
    def refuse_constant(constant: str) -> None:
        raise ModelCardError(f"the model card {name} holds {constant}, which is not a number")

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as error:
        raise ModelCardError(f"the model card {name} is not valid JSON (line {error.lineno})") from None
    except RecursionError:
        raise ModelCardError(f"the model card {name} is nested too deeply to be a card") from None
