"""One explanation from request to verdict: the method's map, then its trust figures, then the sanity check.

The command line and the viewer's worker both run :func:`run_session` on an
:class:`ExplanationRequest`, so they offer the same options and give the same figures; only
what they do with each :class:`Step` differs. Folding the steps into an :class:`Outcome`
(:meth:`Outcome.after`) gives the finished explanation that outputs and exports are made from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from explain.baselines import baseline_image, broad_blur_sigma
from explain.engine import CancelToken, Update
from explain.method import Method
from explain.model_file import SCORES, LoadedModel
from explain.sanity import sanity_check
from explain.trust import TrustUpdate, trust_figures, verdict

#: What the trust figures remove pixels to: the method's own baseline, or a broad blur of the input.
REMOVALS = ("baseline", "blur")
#: A probability this close to 0 or 1 is saturated: perturbing the image barely moves it, and a
#: map of it is all but empty, while its log-odds still move.
SATURATION = 1e-3


def explained_score(method: Method, score: str) -> str:
    """What a method's map is of when ``score`` is chosen: that score, or the one the method always explains."""
    return method.fixed_score or score


def saturation_note(probability: float, score: str) -> str:
    """One line saying why a map of this probability would be blank, and what to do; empty when it would not be.

    The viewer shows it before a run, from the image's probabilities, and every map of a
    saturated probability carries it. The score is never switched behind the reader's back: a
    map's units would then change from one image to the next.
    """
    if score != "probability" or SATURATION < probability < 1 - SATURATION:
        return ""
    return (f"probability saturated at {probability:.3f}: explaining the log-odds would show what drives it "
            "(score: log-odds)")


@dataclass(frozen=True, eq=False)
class ExplanationSettings:
    """What the user chose, shared by every image explained alike (one batch, one click).

    ``model.fast`` selects half precision for the map; the trust figures always judge it with
    the exact model, on the probability. ``batch_size`` None lets the engine tune it. ``score``
    is what the method explains of the target (one of :data:`~explain.model_file.SCORES`): its
    probability, or its log-odds for a model whose probability is saturated.
    """

    method: Method
    params: Any
    model: LoadedModel
    target: int
    trust: bool = True
    removal: str = "baseline"
    sanity: bool = False
    batch_size: int | None = None
    score: str = "probability"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, not {self.score!r}")
        if self.removal not in REMOVALS:
            raise ValueError(f"removal must be one of {', '.join(REMOVALS)}, not {self.removal!r}")
        if not 0 <= self.target < len(self.model.card.labels):
            raise ValueError(f"target {self.target} is not one of the model's {len(self.model.card.labels)} labels")

    @property
    def label(self) -> str:
        return self.model.card.labels[self.target]

    @property
    def explained_score(self) -> str:
        return explained_score(self.method, self.score)

    @property
    def units(self) -> str:
        """What the map measures, naming the score explained."""
        return self.method.units_for(self.explained_score)

    @property
    def score_aside(self) -> str:
        """``, its log-odds explained``, said beside the probability where the map is of another score."""
        return "" if self.explained_score == "probability" else f", its {self.explained_score} explained"


@dataclass(frozen=True, eq=False)
class ExplanationRequest:
    """The settings and the exact model input ``(channels, height, width)`` of one image."""

    settings: ExplanationSettings
    model_input: torch.Tensor

    def explain(self, model: LoadedModel | None = None, cancel: CancelToken | None = None) -> Iterator[Update]:
        """The method's updates on this input, with the request's model or another (a randomized copy)."""
        s = self.settings
        model = replace(model or s.model, score=s.score)
        return s.method.explain(model, self.model_input, s.target, s.params, cancel, s.batch_size)

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
        final = reported(update, request.settings)
        yield Step("explanation", final)
    if final is None or not final.final:
        return
    if request.settings.trust:
        yield from trust_steps(request, final, cancel)
    if request.settings.sanity:
        yield from sanity_steps(request, final, cancel)


def reported(update: Update, settings: ExplanationSettings) -> Update:
    """A method's update as every reader gets it: its ``score`` figure the probability, and a note if saturated.

    A map of the log-odds keeps that score as ``score_log_odds``; the method's other figures
    (integrated gradients' ``baseline_score``) stay in the units of the score explained.
    """
    figures = dict(update.figures)
    if "score" not in figures:
        return update
    if settings.explained_score == "log-odds" and settings.method.fixed_score is None:
        figures["score_log_odds"] = figures["score"]
        figures["score"] = 0.5 * (1 + math.tanh(figures["score"] / 2))  # the logistic function, without overflow
    note = saturation_note(figures["score"], settings.explained_score)
    notes = update.notes if not note or note in update.notes else (*update.notes, note)
    return replace(update, figures=figures, notes=notes)


def trust_steps(request: ExplanationRequest, final: Update, cancel: CancelToken | None = None) -> Iterator[Step]:
    """Deletion, insertion and AOPC of a finished map, judged by the exact model on the probability."""
    s = request.settings
    exact = replace(s.model, fast=False, score="probability")
    for update in trust_figures(exact, request.model_input, s.target, final.heatmap, request.removed(),
                                cancel=cancel, batch_size=s.batch_size, score=exact_probability(s, final)):
        yield Step("trust", update)


def exact_probability(settings: ExplanationSettings, final: Update) -> float | None:
    """The image's probability as the trust figures would score it, where the explanation already has.

    A method's ``score`` is the target's probability by the same model on the same input, unless
    it ran in half precision or explained another score (a probability from the log-odds is
    rounded differently): the trust figures then score the image themselves.
    """
    if settings.model.fast or settings.explained_score != "probability" or "score" not in final.figures:
        return None
    return float(final.figures["score"])


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


def saturation_warning(request: ExplanationRequest) -> str:
    """:func:`saturation_note` for a request, from one forward pass before any work is done."""
    settings = request.settings
    if settings.explained_score != "probability":
        return ""
    (step,) = probability_steps(settings.model, request.model_input)
    return saturation_note(step.update.values[settings.target], settings.explained_score)
