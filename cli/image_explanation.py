"""Explaining one image as every ``main.py explain`` run does, for one image or a whole batch.

The command's options become :class:`~explain.session.ExplanationSettings` once per run (the
model is loaded once); each image then runs the same explanation session as the viewer does, and
its JSON records are made here, so single runs and batches report alike.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from dicom.image import FrameImage
from dicom.model_input import model_unit_image
from explain.devices import DeviceError, pick_device
from explain.engine import Update
from explain.expected_images import check_image
from explain.methods import METHODS
from explain.model_card import ModelCardError
from explain.model_file import ModelLoadError, load_model
from explain.preprocessing import to_model_input
from explain.session import ExplanationRequest, ExplanationSettings, Outcome, run_session
from exports.explained import Explained


class CommandError(Exception):
    """Anything that stops the command; printed as one line, exit status 2."""


def prepare(args: argparse.Namespace) -> ExplanationSettings:
    """Parse the method's parameters and load the model once; CommandError when either is wrong."""
    method = METHODS[args.method]
    try:
        params = method.make_params(vars(args))
        model = replace(load_model(args.model, pick_device(args.device)), fast=args.fast)
        target = model.card.label_index(args.target)
        return ExplanationSettings(method, params, model, target, trust=not args.no_trust, removal=args.removal,
                                   sanity=args.sanity, batch_size=args.batch_size, score=args.score)
    except (DeviceError, ModelLoadError, ModelCardError, ValueError, TypeError) as error:
        raise CommandError(str(error)) from None


def update_record(update: Update, elapsed: float) -> dict:
    """The JSON line for one update of the explanation."""
    return {"progress": round(update.progress, 6), "elapsed": round(elapsed, 4), "final": update.final,
            "evaluations": update.evaluations}


def final_record(outcome: Outcome, elapsed: float) -> dict:
    """The last JSON line: the target, its score, the method's own figures and the trust figures.

    ``score`` is the target's probability; ``explained_score`` what the map is of (the
    probability, or the log-odds), and ``units`` what its values measure.

    ``params`` are the method's parameters as run, defaults included, so a record says how to
    repeat it. ``notes`` holds the method's messages about its map (why it is blank), one line each, joined
    into one string so that the batch summary keeps one column for them; empty when there are none.
    """
    settings = outcome.request.settings
    return {**update_record(outcome.final, elapsed), "method": settings.method.name, "target": settings.label,
            "target_index": settings.target, "explained_score": settings.explained_score, "units": settings.units,
            "params": dataclasses.asdict(settings.params), "fast": settings.model.fast,
            "notes": " ".join(outcome.final.notes),
            **outcome.figures}


def model_input(settings: ExplanationSettings, image: FrameImage) -> torch.Tensor:
    """The exact model input of an image, as the model's card asks; ValueError when it does not fit."""
    card = settings.model.card
    return to_model_input(model_unit_image(image, card.window), card.input)


def image_check(settings: ExplanationSettings, image: FrameImage, force: bool) -> str:
    """Refuse an image outside what the model's card expects unless ``force``; the line to warn with, if any.

    CommandError, with the card's expectations and what the image has, for a mismatch; with
    ``force``, or where the file does not record an attribute, the line comes back to be shown.
    """
    fit = check_image(settings.model.card.expects, image.frame.header)
    if not fit.fits and not force:
        raise CommandError(f"{fit.line()} (--force explains it anyway)")
    return fit.line()


def explain_image(settings: ExplanationSettings, image: FrameImage,
                  on_update: Callable[[Update, float], None] | None = None) -> tuple[Explained, dict]:
    """Explain one image to the end with its figures; the result and its JSON record.

    ValueError when the image does not fit the model; ``on_update`` sees every partial map.
    """
    request = ExplanationRequest(settings, model_input(settings, image))
    started = time.perf_counter()
    outcome = Outcome(request)
    for step in run_session(request):
        if on_update is not None and step.stage == "explanation" and not step.final:
            on_update(step.update, time.perf_counter() - started)
        outcome = outcome.after(step)
    if outcome.final is None:
        raise CommandError("the explanation stopped before it finished")
    return Explained(image, outcome), final_record(outcome, time.perf_counter() - started)
