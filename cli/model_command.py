"""``main.py model export`` and ``main.py model check``: a user's own model, from ``nn.Module`` to the viewer.

``export`` imports the user's factory (``PACKAGE.MODULE:FACTORY``) and so runs their code, on
their machine, because they asked for it; Lightbox itself never runs code from a model file.
``check`` opens a ``.pt2`` exactly as the viewer does (the archive's safety check included)
and reports in one go what a user wants to know before opening it there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from dicom.bundled import DEMO_STUDY
from dicom.image import FrameCache
from dicom.model_input import model_unit_image
from dicom.series import open_paths
from explain.devices import DeviceError, describe, pick_device
from explain.incremental import IncrementalModel
from explain.model_card import ModelCard, ModelCardError
from explain.model_export import export_with_card
from explain.model_file import LoadedModel, ModelLoadError, load_model
from explain.preprocessing import to_model_input

#: Batch sizes tried for the fastest forward pass; stops early at the first that is slower per image.
BATCHES = (1, 2, 4, 8, 16, 32, 64)
EXPORT_WARNING = ("runs your own code (the factory's module is imported and called) on this machine, "
                  "by your choice; the .pt2 it writes holds no code")


class ModelCommandError(Exception):
    """A one-line reason the command stopped; exit status 2."""


def factory(spec: str) -> torch.nn.Module:
    """Import ``PACKAGE.MODULE:FACTORY`` and call the factory with no arguments."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise ModelCommandError(f"expected PACKAGE.MODULE:FACTORY, not {spec!r}")
    sys.path.insert(0, str(Path.cwd()))  # the user's own package, where they run the command
    try:
        made = getattr(importlib.import_module(module_name), name)()
    except (ImportError, AttributeError) as error:
        raise ModelCommandError(f"cannot make the model from {spec}: {error}") from None
    if not isinstance(made, torch.nn.Module):
        raise ModelCommandError(f"{spec} returned a {type(made).__name__}, not a torch.nn.Module")
    return made


def input_shape(text: str) -> tuple[int, int, int]:
    """``1x224x224`` -> (channels, height, width)."""
    try:
        channels, height, width = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected CHANNELSxHEIGHTxWIDTH such as 1x224x224, not {text!r}") from None
    return channels, height, width


def export(args: argparse.Namespace) -> None:
    channels, height, width = args.input
    try:
        card = ModelCard.from_dict({
            "name": args.name or Path(args.out).stem, "labels": args.labels, "activation": args.activation,
            "input": {"height": height, "width": width, "channels": channels, "mean": args.mean, "std": args.std},
            "window": args.window})
    except ModelCardError as error:
        raise ModelCommandError(str(error)) from None
    module = factory(args.factory)
    if args.weights is not None:
        module.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
    out = export_with_card(module, card, Path(args.out))
    print(f"wrote {out} and {out.with_suffix('.json')}; check it with: main.py model check {out}")


def seconds_per_forward(model: LoadedModel, batch: int, repeats: int = 3) -> float:
    """The best of ``repeats`` timed forward passes at ``batch``, after one to warm up."""
    spec = model.card.input
    x = torch.zeros(batch, spec.channels, spec.height, spec.width, device=model.device)
    timings = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            started = time.perf_counter()
            model.logits(x)
            timings.append(time.perf_counter() - started)
    return min(timings[1:])


def best_batch(model: LoadedModel) -> tuple[int, float]:
    """The batch size with the least time per image, and that time; 1 for a fixed batch."""
    best = (1, seconds_per_forward(model, 1))
    for batch in BATCHES[1:] if model.batched else ():
        per_image = seconds_per_forward(model, batch) / batch
        if per_image >= best[1]:
            break
        best = (batch, per_image)
    return best


def demo_probabilities(model: LoadedModel) -> dict[str, float]:
    """The model's probabilities on the bundled demo radiograph, preprocessed as the viewer does."""
    image = FrameCache().get(open_paths([DEMO_STUDY]).all_series()[0].frames[0])
    x = to_model_input(model_unit_image(image, model.card.window), model.card.input)
    with torch.inference_mode():
        probabilities = model.probabilities(x[None].to(model.device))[0]
    return {label: round(float(p), 4) for label, p in zip(model.card.labels, probabilities)}


def check(args: argparse.Namespace) -> dict:
    try:
        model = load_model(Path(args.model), pick_device(args.device))
    except (ModelLoadError, DeviceError) as error:
        raise ModelCommandError(str(error)) from None
    spec = model.card.input
    with torch.inference_mode():
        shape = tuple(model.logits(torch.zeros(1, spec.channels, spec.height, spec.width, device=model.device)).shape)
    batch, per_image = best_batch(model)
    return {
        "card": model.card.to_dict(),
        "safety": "passed: plain weights and a graph, nothing in the archive runs code when loaded",
        "device": describe(model.device),
        "output_shape": list(shape),
        "dynamic_batch": model.batched,
        "demo_probabilities": demo_probabilities(model),
        "seconds_per_forward_batch_1": round(seconds_per_forward(model, 1), 5),
        "best_batch": batch,
        "seconds_per_image_at_best_batch": round(per_image, 5),
        "incremental_inference": IncrementalModel.supports(model.module),
    }


def report_lines(report: dict) -> list[str]:
    card = report["card"]
    spec = card["input"]
    return [
        f"card: {card['name']}, {card['activation']} over {', '.join(card['labels'])}; input {spec['channels']}x"
        f"{spec['height']}x{spec['width']}, mean {spec['mean']}, std {spec['std']}",
        f"safety check: {report['safety']}",
        f"output shape: {tuple(report['output_shape'])} on {report['device']}; "
        f"batch {'dynamic' if report['dynamic_batch'] else 'fixed at 1 (re-export with a dynamic batch: much faster)'}",
        "demo study: " + ", ".join(f"{label} {p:.3f}" for label, p in report["demo_probabilities"].items()),
        f"forward: {report['seconds_per_forward_batch_1']:.4f} s at batch 1, "
        f"{report['seconds_per_image_at_best_batch']:.4f} s per image at batch {report['best_batch']}",
        "incremental inference (faster occlusion): "
        + ("applies" if report["incremental_inference"] else "does not apply; occlusion runs whole images"),
    ]


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="main.py model", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = main.add_subparsers(dest="command", required=True)
    out = commands.add_parser("export", help=f"export a trained nn.Module with its card; {EXPORT_WARNING}",
                              description=f"Export a trained nn.Module with a dynamic batch and write its card. "
                                          f"This {EXPORT_WARNING}.")
    out.add_argument("factory", metavar="PACKAGE.MODULE:FACTORY", help="a function that returns the untrained module")
    out.add_argument("--weights", type=Path, help="a state_dict saved with torch.save (read weights-only)")
    out.add_argument("--labels", nargs="+", required=True)
    out.add_argument("--input", type=input_shape, required=True, metavar="CxHxW", help="e.g. 1x224x224")
    out.add_argument("--mean", type=float, nargs="+", required=True)
    out.add_argument("--std", type=float, nargs="+", required=True)
    out.add_argument("--activation", choices=("sigmoid", "softmax"), required=True)
    out.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"), help="a fixed window, else the file's")
    out.add_argument("--name", help="the name the viewer shows (default: the file's)")
    out.add_argument("--out", required=True, metavar="NAME.pt2")
    checked = commands.add_parser("check", help="one report on a .pt2 and its card, before opening it in the viewer")
    checked.add_argument("model", metavar="NAME.pt2")
    checked.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    checked.add_argument("--json", action="store_true", help="the report as one JSON object")
    return main


def model_command(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "export":
            export(args)
        else:
            report = check(args)
            print(json.dumps(report) if args.json else "\n".join(report_lines(report)))
    except ModelCommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
