"""Loading a user's model: a ``torch.export`` archive (``NAME.pt2``) with its card (``NAME.json``).

The card is validated first, then the archive is opened so that nothing in it can run code
(:mod:`explain.model_archive`), and the program is checked against the card on a blank input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from explain.in_place import functionalize
from explain.model_archive import UnsafeArchive, load_program
from explain.model_card import ModelCard, ModelCardError

#: What a method may explain of the target: its probability, or its log-odds ``log(p / (1 - p))``.
SCORES = ("probability", "log-odds")


class ModelLoadError(Exception):
    """The model cannot be used; the message is one plain line for the user."""


def card_path(model_path: Path) -> Path:
    """The card lies beside the model, with the same name."""
    return Path(model_path).with_suffix(".json")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A checked model on a device, and the card that says how to use it.

    ``fast`` runs the model in half precision (bfloat16 on the CPU, float16 on a GPU): several
    times faster where the hardware has the instructions, at the price of maps that differ
    slightly from the exact ones. It is off unless asked for. ``score`` is what the methods
    explain of the target (:meth:`target_scores`): its probability, or its log-odds (one of
    :data:`SCORES`), which shows what drives a model whose probability is saturated at 0 or 1.
    """

    card: ModelCard
    module: torch.nn.Module
    device: torch.device
    batched: bool
    path: Path | None = None
    fast: bool = False
    score: str = "probability"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, not {self.score!r}")

    def precision(self) -> contextlib.AbstractContextManager:
        """The context the model runs in: autocast to half precision in fast mode."""
        if not self.fast:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.device.type == "cpu" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def logits(self, batch: torch.Tensor, forward: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
        """The model's outputs ``(N, labels)`` in float32 for a batch already on its device.

        ``forward`` stands in for the module where the batch is described another way (the
        occluded copies of incremental inference).
        """
        with self.precision():
            return (forward or self.module)(batch).float()

    def probabilities(self, batch: torch.Tensor, forward: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
        """Probabilities ``(N, labels)``, by the card's activation."""
        logits = self.logits(batch, forward)
        if self.card.activation == "softmax":
            return torch.softmax(logits, dim=1)
        return torch.sigmoid(logits)

    def target_scores(self, batch: torch.Tensor, target: int,
                      forward: Callable[[Any], torch.Tensor] | None = None) -> torch.Tensor:
        """What the methods explain of the target, per input: its probability or its log-odds, as ``score`` says."""
        if self.score == "log-odds":
            return log_odds(self.logits(batch, forward), target, self.card.activation)
        return self.probabilities(batch, forward)[:, target]


def log_odds(logits: torch.Tensor, target: int, activation: str) -> torch.Tensor:
    """``log(p / (1 - p))`` of the target's probability per row, from the logits without forming p.

    It rises and falls with the probability but does not saturate: a confident model rounds p
    to 1.0 in float32, and every change of it, and every map of it, to exactly zero. For a
    sigmoid head it is the logit; for a softmax head the target's logit less the log-sum-exp of
    the others.
    """
    logits = logits.float()
    if activation != "softmax":
        return logits[:, target]
    others = torch.cat([logits[:, :target], logits[:, target + 1:]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def batch_is_free(program: torch.export.ExportedProgram) -> bool:
    """Whether the program was exported with a dynamic batch dimension.

    Exported programs fix every dimension not declared dynamic; a model exported with a batch
    of one is still usable, one image at a time. Read from the graph rather than tried, as a
    first forward pass at a new batch size costs a large CNN a second of setting up kernels.
    """
    inputs = set(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in inputs:
            value = node.meta.get("val")
            return isinstance(value, torch.Tensor) and value.dim() > 0 and isinstance(value.shape[0], torch.SymInt)
    return False


def _check_outputs(module: torch.nn.Module, card: ModelCard, device: torch.device) -> None:
    """Run the model on a blank input: one label per output, as the card says."""
    spec = card.input
    shape = (spec.channels, spec.height, spec.width)
    try:
        with torch.inference_mode():
            single = module(torch.zeros((1, *shape), device=device))
    except Exception as error:  # noqa: BLE001 - the user's graph may raise anything
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"the model does not accept a {shape} input as its card says: {first_line[:160]}") from None
    if not isinstance(single, torch.Tensor) or tuple(single.shape) != (1, len(card.labels)):
        got = tuple(single.shape) if isinstance(single, torch.Tensor) else type(single).__name__
        raise ModelLoadError(f"the model gives outputs of shape {got}; its card names {len(card.labels)} labels")


def load_model(path: Path, device: torch.device, card: ModelCard | None = None) -> LoadedModel:
    """Check, load and validate a model; ``ModelLoadError`` with one line when it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"no model file at {path}")
    try:
        card = card or ModelCard.read(card_path(path))
    except ModelCardError as error:
        raise ModelLoadError(str(error)) from None
    try:
        program = load_program(path)
    except UnsafeArchive as error:
        raise ModelLoadError(f"{path.name}: {error}") from None
    try:
        # The archive's own guard text is dropped: torch would compile it into a function and run
        # it on every input (explain/model_archive.py). The guards torch writes itself from the
        # program's checked ranges stay, so the input's shape is checked all the same; the
        # range check that ``check_guards=False`` falls back to mistook a dynamic batch for a
        # fixed one on MONAI's ViT once another batch size had run.
        program._guards_code = []
        module = program.module().to(device)
        # A graph that writes its own input in place would change the caller's tensor: such
        # writes become out of place. The others stay, as they reuse memory (explain/in_place.py).
        functionalize(module, inputs_only=True)
        # Explanations differentiate with respect to the input only: autograd need record
        # nothing for the weights.
        module.requires_grad_(False)
        # Convolution weights channels-last: oneDNN's and cuDNN's fastest layout for images.
        module.to(memory_format=torch.channels_last)
    except Exception as error:  # noqa: BLE001 - a damaged archive may raise anything
        raise ModelLoadError(f"cannot load {path.name}: {str(error).strip().splitlines()[0][:160]}") from None
    _check_outputs(module, card, device)
    return LoadedModel(card, module, device, batch_is_free(program), path)
