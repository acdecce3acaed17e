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
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from cli.explain_outputs import FORMATS, OutputError, format_of, write_output
from cli.image_explanation import CommandError, explain_image, image_check, model_input, prepare, update_record
from cli.pacs_explain import add_pacs_options, check_pacs_options, retrieve_studies, send_batch, send_explained
from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from dicom.files import DicomReadError
from dicom.image import FrameImage, load_frame
from dicom.series import open_paths
from explain.baselines import parse_baseline
from explain.devices import DEVICE_CHOICES
from explain.engine import Update
from explain.methods import METHODS
from explain.model_file import SCORES
from explain.session import REMOVALS, ExplanationRequest, ExplanationSettings, saturation_warning


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
    parser.add_argument("--score", choices=SCORES, default="probability",
                        help="what to explain of the target: its probability, or its log-odds, which still shows "
                             "what drives a model whose probability is saturated near 0 or 1 (default: probability)")
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
    parser.add_argument("--removal", choices=REMOVALS, default="baseline",
                        help="what the trust figures remove pixels to: the method's baseline, or a blur")
    parser.add_argument("--sanity", action="store_true",
                        help="add the model-randomization sanity check (costs a second explanation)")
    parser.add_argument("--force", action="store_true",
                        help="explain images outside what the model's card expects (modality, body part, view, "
                             "photometric, size) instead of refusing them; a warning says what differs")
    parser.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                        help="with a folder --out, explain on a Ray cluster: a local one started for the run, or "
                             "the one at ADDRESS (see `ray start --head`); the folder must be on storage every node "
                             "sees. Needs the cluster extra: pip install -e '.[cluster]'")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="with --ray, how many workers (default: one per GPU in the cluster, else one per "
                             "4 CPU cores)")
    options = parser.add_argument_group("method options (each method takes its own)")
    users: dict[str, list[str]] = {}
    defaults: dict[str, object] = {}
    image_or_value = {name for method in METHODS.values() for name in method.image_or_value}
    choices = {name: values for method in METHODS.values() for name, values in method.choices.items()}
    for method in METHODS.values():
        for field in fields(method.params):
            users.setdefault(field.name, []).append(f"{method.title} {field.default}")
            defaults.setdefault(field.name, field.default)
    for name, used_by in users.items():
        kind = parse_baseline if name in image_or_value else type(defaults[name])
        options.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                             choices=choices.get(name), help="default: " + ", ".join(used_by))
    add_pacs_options(parser)
    return parser


def formats_list(text: str) -> list[str]:
    """``npz,png`` as a list of known formats, in the order given, each once."""
    chosen = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in FORMATS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"unknown format {', '.join(unknown) or text!r}; choose from "
                                         f"{', '.join(FORMATS)}")
    return chosen


def positive_int(text: str) -> int:
    """A count of at least one."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


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


def is_folder_out(out: Path | None) -> bool:
    """A folder ``--out`` is one that exists as a folder, or a name with no file ending."""
    return out is not None and (out.is_dir() or not out.suffix)


def run(args: argparse.Namespace) -> int:
    """Explain one image, or hand several to the batch runner; from and to a PACS when asked."""
    folder_out = is_folder_out(args.out)
    check_pacs_options(args, folder_out)
    if args.ray is not None and not folder_out:
        raise CommandError("--ray needs a folder --out to hold one result per image")
    if args.pacs:
        args.paths = retrieve_studies(args)
    if folder_out:
        if args.ray is None:
            from cli.batch import run_batch

            status = run_batch(args, prepare(args))
        else:
            from cli.ray_batch import run_ray_batch

            status = run_ray_batch(args)
        return max(status, 1) if args.send and send_batch(args, Path(args.out)) else status
    if len(args.paths) > 1:
        raise CommandError("several paths need a folder --out to hold one result per image")
    fmt = None
    if args.out:
        try:
            fmt = format_of(args.out)
        except ValueError as error:
            raise CommandError(str(error)) from None
    settings = prepare(args)
    image = first_image(args.paths[0] if args.paths else str(DEMO_STUDY))
    note = image_check(settings, image, args.force)
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    warn_if_saturated(settings, image)

    def print_update(update: Update, elapsed: float) -> None:
        print(json.dumps(update_record(update, elapsed)), flush=True)

    try:
        explained, record = explain_image(settings, image, print_update if args.json else None)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if args.json:
        print(json.dumps(record), flush=True)
    else:
        print(f"{settings.method.title} of '{settings.label}' (probability {record['score']:.3f}{settings.score_aside}) "
              f"in {record['elapsed']:.2f} s, {record['evaluations']} model evaluations")
        for note in explained.outcome.final.notes:
            print(f"note: {note}")
        if explained.outcome.verdict:
            print(explained.outcome.verdict)
    if args.out and fmt:
        try:
            write_output(args.out, fmt, explained, deidentify=not args.identified)
        except OutputError as error:
            raise CommandError(str(error)) from None
    return 1 if args.send and send_explained(args, explained) else 0


def warn_if_saturated(settings: ExplanationSettings, image: FrameImage) -> None:
    """Say on stderr, before the work starts, that the map of a saturated probability will be blank."""
    try:
        note = saturation_warning(ExplanationRequest(settings, model_input(settings, image)))
    except ValueError as error:
        raise CommandError(str(error)) from None
    if note:
        print(f"warning: {note}", file=sys.stderr, flush=True)


def explain_command(argv: Sequence[str]) -> int:
    """Run the explain command; one line on stderr and exit 2 when it cannot be done."""
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CommandError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
