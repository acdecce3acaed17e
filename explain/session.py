"""One explanation from request to verdict: the method's map, then its trust figures, then the sanity check.

The command line and the viewer's worker both run :func:`run_session` on an
:class:`ExplanationRequest`, so they offer the same options and give the same figures; only
what they do with each :class:`Step` differs. Folding the steps into an :class:`Outcome`
(:meth:`Outcome.after`) gives the finished explanation that outputs and exports are made from.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import CancelToken, Update
from explain.method import Method
from explain.model_file import LoadedModel
from explain.sanity import sanity_check
from explain.trust import TrustUpdate, trust_figures, verdict

#: What the trust figures remove pixels to: the method's own baseline, or a broad blur of the input.
REMOVALS = ("baseline", "blur")


@dataclass(frozen=True, eq=False)
class ExplanationSettings:
    """What the user chose, shared by every image explained alike (one batch, one click).

    ``model.fast`` selects half precision for the map; the trust figures always judge it with
    the exact model. ``batch_size`` None lets the engine tune it.
    """

    method: Method
    params: Any
    model: LoadedModel
    target: int
    trust: bool = True
    removal: str = "baseline"
    sanity: bool = False
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.removal not in REMOVALS:
            raise ValueError(f"removal must be one of {', '.join(REMOVALS)}, not {self.removal!r}")
        if not 0 <= self.target < len(self.model.card.labels):
            raise ValueError(f"target {self.target} is not one of the model's {len(self.model.card.labels)} labels")

    @property
    def label(self) -> str:
        return self.model.card.labels[self.target]


@dataclass(frozen=True, eq=False)
class ExplanationRequest:
    """The settings and the exact model input ``(channels, height, width)`` of one image."""

    settings: ExplanationSettings
    model_input: torch.Tensor

    def explain(self, model: LoadedModel | None = None, cancel: CancelToken | None = None) -> Iterator[Update]:
        """The method's updates on this input, with the request's model or another (a randomized copy)."""
        s = self.settings
        return s.method.explain(model or s.model, self.model_input, s.target, s.params, cancel, s.batch_size)

    def removed(self) -> torch.Tensor:
        """What a pixel removed by the trust figures becomes."""
        x = self.model_input
        if self.settings.removal == "blur":
            return baseline_image(x, "blur", blur_sigma=broad_blur_sigma(x))
        return self.settings.method.baseline(x, self.settings.params)


@dataclass(frozen=True)
class Probabilities:
    """The model's probability of each label for one input: a single, final update."""

    values: tuple[float, ...]
    progress: float = 1.0
    final: bool = True


@dataclass(frozen=True, eq=False)
class Step:
    """One update of a session, tagged with its stage.

    The stages are ``explanation``, ``trust`` and ``sanity``, in that order; the viewer's
    ``probabilities`` of the image on show are a one-step session of their own.
    """

    stage: str
    update: Update | TrustUpdate | Probabilities

    @property
    def final(self) -> bool:
        return self.update.final

    @property
    def progress(self) -> float:
        return self.update.progress


@dataclass(frozen=True, eq=False)
class Outcome:
    """What a session has finished so far: the final map, then its figures and verdict.

    ``trust`` and ``sanity`` hold only their own stage's figures; :attr:`figures` holds every
    figure, the method's own (its score, fit or gap) first.
    """

    request: ExplanationRequest
    final: Update | None = None
    trust: Mapping[str, float] = field(default_factory=dict)
    curves: Mapping[str, np.ndarray] = field(default_factory=dict)
    verdict: str = ""
    sanity: Mapping[str, float] = field(default_factory=dict)

    def after(self, step: Step) -> Outcome:
        """This outcome with a finished stage added; a partial step changes nothing."""
        if not step.final:
            return self
        if step.stage == "explanation":
            return Outcome(self.request, final=step.update)
        if step.stage == "trust":
            figures = {**self.final.figures, **step.update.figures}
            return replace(self, trust=dict(step.update.figures), curves=dict(step.update.curves),
                           verdict=verdict(figures, self.request.settings.label))
        return replace(self, sanity=dict(step.update.figures))

    @property
    def figures(self) -> dict[str, float]:
        return {**(self.final.figures if self.final else {}), **self.trust, **self.sanity}

    @property
    def score(self) -> float:
        return float(self.final.figures["score"])


def run_session(request: ExplanationRequest, cancel: CancelToken | None = None) -> Iterator[Step]:
    """Every step of the explanation, then its trust figures and sanity check as the settings ask.

    Stops quietly when cancelled; a later stage starts only after the earlier one finished.
    """
    final = None
    for update in request.explain(cancel=cancel):
        final = update
        yield Step("explanation", update)
    if final is None or not final.final:
        return
    if request.settings.trust:
        yield from trust_steps(request, final, cancel)
    if request.settings.sanity:
        yield from sanity_steps(request, final, cancel)


def trust_steps(request: ExplanationRequest, final: Update, cancel: CancelToken | None = None) -> Iterator[Step]:
    """Deletion, insertion and AOPC of a finished map, judged by the exact model."""
    s = request.settings
    exact = replace(s.model, fast=False)
    for update in trust_figures(exact, request.model_input, s.target, final.heatmap, request.removed(),
                                cancel=cancel, batch_size=s.batch_size):
        yield Step("trust", update)


def sanity_steps(request: ExplanationRequest, final: Update, cancel: CancelToken | None = None) -> Iterator[Step]:
    """The model-randomization check: the same explanation of a randomized model, compared."""
    for update in sanity_check(request.settings.model, final.heatmap,
                               lambda model, token: request.explain(model, token), cancel):
        yield Step("sanity", update)


def finish(request: ExplanationRequest, cancel: CancelToken | None = None) -> Outcome:
    """Run a session to its end; the outcome has no final map if it was cancelled."""
    outcome = Outcome(request)
    for step in run_session(request, cancel):
        outcome = outcome.after(step)
    return outcome


def probability_steps(model: LoadedModel, model_input: torch.Tensor) -> Iterator[Step]:
    """The label probabilities of one input, as the only step of a session."""
    with torch.inference_mode():
        values = model.probabilities(model_input.to(model.device)[None])[0]
    yield Step("probabilities", Probabilities(tuple(float(v) for v in values.cpu())))
