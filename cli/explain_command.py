"""``python main.py explain``: the engine without a window, for scripts and batch work.

With one image it prints one JSON line per update as it happens (with ``--json``) and writes the
result as an ``.npz`` (the attribution, the exact model input, the heatmap on the image's pixels,
the target and its score) or as a ``.png`` of the overlay. With several paths, or ``--out``
naming a folder, it explains every image under them (see :mod:`cli.batch`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch

from cli.explain_outputs import FORMATS, Explained, OutputError, format_of, write_output
from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from dicom.files import DicomReadError
from dicom.image import FrameImage, load_frame
from dicom.model_input import model_unit_image
from dicom.series import open_paths
from explain.baselines import parse_baseline
from explain.devices import DEVICE_CHOICES, DeviceError, pick_device
from explain.engine import Update
from explain.methods import CHOICES, IMAGE_OR_VALUE, METHODS, Method, blurred
from explain.model_card import ModelCardError
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_model_input
from explain.sanity import sanity_check
from explain.trust import trust_figures, verdict


class CommandError(Exception):
    """Anything that stops the command; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py explain", description="Explain a model's finding on DICOM images.",
                                     epilog="Exit status: 0 when every image was explained (or already was), "
                                            "1 when some failed, 2 when none could be done.")
    parser.add_argument("paths", metavar="PATH", nargs="*",
                        help="DICOM files or folders; one path with a file --out explains its first image, "
                             "several paths or a folder --out explain every image (folders searched recursively); "
                             "the demo study by default")
    parser.add_argument("--method", choices=sorted(METHODS), default="occlusion")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="a torch.export archive with its .json card")
    parser.add_argument("--target", help="label name or index to explain (default: the card's last label)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--batch-size", type=int, help="fixed batch size (default: tuned while running)")
    parser.add_argument("--fast", action="store_true",
                        help="half precision (bfloat16 on the CPU, float16 on a GPU): faster, slightly different maps")
    parser.add_argument("--out", type=Path,
                        help="for one image OUT.npz (arrays), OUT.png (overlay), OUT.pm.dcm (DICOM Parametric Map), "
                             "OUT.sc.dcm (DICOM Secondary Capture) or OUT.html (report); a folder (existing, or a "
                             "name without an ending) for results per image, kept between runs")
    parser.add_argument("--format", type=formats_list, default=["npz"], metavar="F[,F...]",
                        help=f"with a folder --out, what to write per image: {', '.join(FORMATS)} (default: npz); "
                             "pm and sc are DICOM Parametric Map and Secondary Capture, html the key-image report")
    parser.add_argument("--identified", action="store_true",
                        help="keep the patient's name, ID and dates in DICOM exports and reports "
                             "(default: de-identified, PS3.15 basic profile)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: per update for one image, per image for a folder")
    parser.add_argument("--no-trust", action="store_true", help="skip the trust figures (deletion, insertion, AOPC)")
    parser.add_argument("--removal", choices=("baseline", "blur"), default="baseline",
                        help="what the trust figures remove pixels to: the method's baseline, or a blur")
    parser.add_argument("--sanity", action="store_true",
                        help="add the model-randomization sanity check (costs a second explanation)")
    options = parser.add_argument_group("method options (each method takes its own)")
    users: dict[str, list[str]] = {}
    defaults: dict[str, object] = {}
    for method in METHODS.values():
        for field in fields(method.params):
            users.setdefault(field.name, []).append(f"{method.title} {field.default}")
            defaults.setdefault(field.name, field.default)
    for name, used_by in users.items():
        kind = parse_baseline if name in IMAGE_OR_VALUE else type(defaults[name])
        options.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                             choices=CHOICES.get(name), help="default: " + ", ".join(used_by))
    return parser


def formats_list(text: str) -> list[str]:
    """``npz,png`` as a list of known formats, in the order given, each once."""
    chosen = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(FORMATS)}")
    return chosen


@dataclass(frozen=True)
class Setup:
    """What every image of a run shares: the method and its parameters, the model and the target."""

    method: Method
    params: Any
    model: LoadedModel
    target: int

    @property
    def label(self) -> str:
        return self.model.card.labels[self.target]


def prepare(args: argparse.Namespace) -> Setup:
    """Parse the method's parameters and load the model once; CommandError when either is wrong."""
    method = METHODS[args.method]
    try:
        params = method.make_params(vars(args))
        model = replace(load_model(args.model, pick_device(args.device)), fast=args.fast)
        target = model.card.label_index(args.target)
    except (DeviceError, ModelLoadError, ModelCardError, ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    return Setup(method, params, model, target)


def first_image(path: str) -> FrameImage:
    """The first frame of the first series under ``path``."""
    collection = open_paths([path])
    series = collection.all_series()
    if not series:
        reason = collection.errors[0].error if collection.errors else "no DICOM image found"
        raise CommandError(f"{path}: {reason}")
    try:
        return load_frame(series[0].frames[0])
    except DicomReadError as error:
        raise CommandError(f"{series[0].frames[0].path}: {error}") from None


def update_record(update: Update, elapsed: float) -> dict:
    """The JSON line for one update of the explanation."""
    return {"progress": round(update.progress, 6), "elapsed": round(elapsed, 4), "final": update.final,
            "evaluations": update.evaluations}


def final_record(update: Update, elapsed: float, model: LoadedModel, target: int, method: str,
                 figures: dict[str, float]) -> dict:
    """The last JSON line: the target, its score, the method's own figures and the trust figures."""
    return {**update_record(update, elapsed), "method": method, "target": model.card.labels[target],
            "target_index": target, "fast": model.fast, **update.figures, **figures}


def trust_of(model: LoadedModel, x: torch.Tensor, target: int, final: Update, removed: torch.Tensor,
             batch_size: int | None) -> tuple[dict[str, float], str]:
    """The trust figures of a finished map, and the verdict in words."""
    exact = replace(model, fast=False)  # a fast map is judged by the exact model
    trusted = list(trust_figures(exact, x, target, final.heatmap, removed, batch_size=batch_size))[-1]
    figures = {**final.figures, **trusted.figures}
    return trusted.figures, verdict(figures, model.card.labels[target])


def sanity_of(model: LoadedModel, final: Update, explain) -> dict[str, float]:
    """The model-randomization check: the same explanation of a randomized model, compared."""
    return list(sanity_check(model, final.heatmap, explain))[-1].figures


@dataclass(frozen=True)
class Outcome:
    """One finished explanation with its figures, its verdict in words and its JSON record."""

    explained: Explained
    record: dict
    sentence: str


def explain_image(setup: Setup, image: FrameImage, args: argparse.Namespace,
                  on_update: Callable[[Update, float], None] | None = None) -> Outcome:
    """Explain one image to the end, then its trust figures (and sanity check) as asked.

    ValueError when the image does not fit the model; ``on_update`` sees every partial map.
    """
    method, params, model, target = setup.method, setup.params, setup.model, setup.target
    x = to_model_input(model_unit_image(image, model.card.window), model.card.input)
    started = time.perf_counter()
    final = None
    for update in method.run(model, x, target, params, batch_size=args.batch_size):
        if on_update is not None and not update.final:
            on_update(update, time.perf_counter() - started)
        final = update
    if final is None or not final.final:
        raise CommandError("the explanation stopped before it finished")
    figures: dict[str, float] = {}
    sentence = ""
    if not args.no_trust:
        removed = blurred(x) if args.removal == "blur" else method.baseline(x, params)
        figures, sentence = trust_of(model, x, target, final, removed, args.batch_size)
    if args.sanity:
        figures.update(sanity_of(model, final, lambda m, cancel: method.run(m, x, target, params, cancel=cancel)))
    record = final_record(final, time.perf_counter() - started, model, target, method.name, figures)
    explained = Explained(image, x, final, target, method.name, model.card.name, model.card.labels[target],
                          figures, sentence)
    return Outcome(explained, record, sentence)


def is_folder_out(out: Path | None) -> bool:
    """A folder ``--out`` is one that exists as a folder, or a name with no file ending."""
    return out is not None and (out.is_dir() or not out.suffix)


def run(args: argparse.Namespace) -> int:
    """Explain one image, or hand several to the batch runner."""
    if is_folder_out(args.out):
        from cli.batch import run_batch

        return run_batch(args, prepare(args))
    if len(args.paths) > 1:
        raise CommandError("several paths need a folder --out to hold one result per image")
    fmt = None
    if args.out:
        try:
            fmt = format_of(args.out)
        except ValueError as error:
            raise CommandError(str(error)) from None
    setup = prepare(args)
    image = first_image(args.paths[0] if args.paths else str(DEMO_STUDY))

    def print_update(update: Update, elapsed: float) -> None:
        print(json.dumps(update_record(update, elapsed)), flush=True)

    try:
        outcome = explain_image(setup, image, args, print_update if args.json else None)
    except ValueError as error:
        raise CommandError(str(error)) from None
    record = outcome.record
    if args.json:
        print(json.dumps(record), flush=True)
    else:
        print(f"{setup.method.title} of '{setup.label}' (probability {record['score']:.3f}) "
              f"in {record['elapsed']:.2f} s, {record['evaluations']} model evaluations")
        if outcome.sentence:
            print(outcome.sentence)
    if args.out and fmt:
        try:
            write_output(args.out, fmt, outcome.explained, deidentify=not args.identified)
        except OutputError as error:
            raise CommandError(str(error)) from None
    return 0


def explain_command(argv: Sequence[str]) -> int:
    """Run the explain command; one line on stderr and exit 2 when it cannot be done."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
