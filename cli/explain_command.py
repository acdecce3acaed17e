"""``python main.py explain``: the engine without a window, for scripts and batch work.

Prints one JSON line per update as it happens (with ``--json``), and writes the result as an
``.npz`` (the attribution, the exact model input, the heatmap on the image's pixels, the target
and its score) or as a ``.png`` of the overlay.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch

from explain.baselines import parse_baseline
from explain.devices import DEVICE_CHOICES, DeviceError, pick_device
from explain.engine import Update
from explain.methods import CHOICES, IMAGE_OR_VALUE, METHODS, blurred
from explain.model_card import ModelCardError
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_image_grid
from explain.sanity import sanity_check
from explain.trust import trust_figures, verdict
from viewer.bundled import DEMO_MODEL, DEMO_STUDY
from viewer.dicom_files import DicomReadError
from viewer.dicom_image import FrameImage, load_frame
from viewer.dicom_model_input import frame_model_input
from viewer.dicom_series import open_paths
from viewer.heat_colours import blend, heat_levels


class CommandError(Exception):
    """Anything that stops the command; printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py explain", description="Explain a model's finding on a DICOM image.")
    parser.add_argument("path", metavar="PATH", nargs="?", default=str(DEMO_STUDY),
                        help="a DICOM file or folder (its first image); the demo study by default")
    parser.add_argument("--method", choices=sorted(METHODS), default="occlusion")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL, help="a torch.export archive with its .json card")
    parser.add_argument("--target", help="label name or index to explain (default: the card's last label)")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="auto")
    parser.add_argument("--batch-size", type=int, help="fixed batch size (default: tuned while running)")
    parser.add_argument("--out", type=Path, help="write the result: .npz (arrays) or .png (overlay)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line per update")
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
            "target_index": target, **update.figures, **figures}


def trust_of(model: LoadedModel, x: torch.Tensor, target: int, final: Update, removed: torch.Tensor,
             batch_size: int | None) -> tuple[dict[str, float], str]:
    """The trust figures of a finished map, and the verdict in words."""
    trusted = list(trust_figures(model, x, target, final.heatmap, removed, batch_size=batch_size))[-1]
    figures = {**final.figures, **trusted.figures}
    return trusted.figures, verdict(figures, model.card.labels[target])


def sanity_of(model: LoadedModel, final: Update, explain) -> dict[str, float]:
    """The model-randomization check: the same explanation of a randomized model, compared."""
    return list(sanity_check(model, final.heatmap, explain))[-1].figures


def write_result(out: Path, image: FrameImage, x, update: Update, target: int) -> None:
    """Save the final result as arrays (``.npz``) or as the overlay picture (``.png``)."""
    heatmap = to_image_grid(update.heatmap, image.stored.shape[:2])
    if out.suffix.lower() == ".npz":
        np.savez_compressed(out, attribution=update.attribution.astype(np.float32), model_input=x.numpy(),
                            heatmap=heatmap, target=np.int64(target), score=np.float64(update.figures["score"]))
    elif out.suffix.lower() == ".png":
        from skimage.io import imsave

        grey = image.render(image.default_voi(), image.inverted_by_default)
        imsave(out, blend(grey, heatmap, heat_levels(heatmap)), check_contrast=False)
    else:
        raise CommandError(f"--out must end in .npz or .png, not {out.suffix or 'nothing'}")


def run(args: argparse.Namespace) -> int:
    method = METHODS[args.method]
    try:
        params = method.make_params(vars(args))
        device = pick_device(args.device)
        model = load_model(args.model, device)
        target = model.card.label_index(args.target)
    except (DeviceError, ModelLoadError, ModelCardError, ValueError, TypeError) as error:
        raise CommandError(str(error)) from None
    image = first_image(args.path)
    try:
        x = frame_model_input(image, model.card)
    except ValueError as error:
        raise CommandError(str(error)) from None
    started = time.perf_counter()
    final = None
    for update in method.run(model, x, target, params, batch_size=args.batch_size):
        if args.json and not update.final:
            print(json.dumps(update_record(update, time.perf_counter() - started)), flush=True)
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
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(final_record(final, elapsed, model, target, args.method, figures)), flush=True)
    else:
        print(f"{method.title} of '{model.card.labels[target]}' (probability {final.figures['score']:.3f}) "
              f"in {elapsed:.2f} s, {final.evaluations} model evaluations")
        if sentence:
            print(sentence)
    if args.out:
        write_result(args.out, image, x, final, target)
    return 0


def explain_command(argv: Sequence[str]) -> int:
    """Run one explanation headless; one line on stderr and exit 2 when it cannot be done."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
