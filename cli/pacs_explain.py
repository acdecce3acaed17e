"""``main.py explain --pacs NODE --study UID ... --send NODE``: explain from and to the PACS.

``--pacs`` retrieves the studies into the retrieve cache and hands their series folders to the
batch command (all but the series of maps Lightbox itself sent back earlier), which keeps its resumable semantics: a second run retrieves only what is missing
from the cache (instances already there are kept) and explains only what is not done.
``--send`` sends each image's Parametric Map and Secondary Capture, identified, so that they
join the patient's own study where a radiologist looks for them.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from cli.explain_outputs import FORMATS, write_output
from cli.image_explanation import CommandError
from cli.pacs_command import add_node_options, client_for
from exports.explained import Explained
from pacs.cache import Cache
from pacs.errors import PacsError
from pacs.nodes import load_settings

#: What ``--send`` sends of each image.
SENT_FORMATS = ("pm", "sc")


def add_pacs_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("PACS")
    group.add_argument("--pacs", metavar="NODE", help="retrieve the --study studies from this PACS and explain "
                                                      "every image of them (needs a folder --out)")
    group.add_argument("--study", action="append", default=[], metavar="UID", help="a Study Instance UID; repeat")
    group.add_argument("--send", metavar="NODE", help="send the Parametric Map and Secondary Capture of each image, "
                                                      "identified, into the patient's own study on this PACS")
    group.add_argument("--cache", type=Path, help="the retrieve cache folder (default: the PACS settings')")
    add_node_options(group)


def check_pacs_options(args: argparse.Namespace, folder_out: bool) -> None:
    """Refuse option mixes that cannot work, before any work is done; make --send's outputs asked for."""
    if args.pacs and not args.study:
        raise CommandError("--pacs needs at least one --study UID")
    if args.study and not args.pacs:
        raise CommandError("--study needs --pacs NODE to retrieve it from")
    if args.pacs and args.paths:
        raise CommandError("give either paths or --pacs, not both")
    if args.pacs and not folder_out:
        raise CommandError("--pacs needs a folder --out to hold one result per image")
    if args.send:
        args.identified = True
        if folder_out:
            args.format = list(dict.fromkeys([*args.format, *SENT_FORMATS]))


def retrieve_studies(args: argparse.Namespace) -> list[str]:
    """Retrieve each ``--study`` into the cache; their folders. CommandError with one line when one fails."""
    settings = load_settings()
    cache = Cache(args.cache or settings.cache_path(), settings.cache_limit_mb << 20)
    client = client_for(args.pacs, args)
    folders = []
    for uid in args.study:
        try:
            result = client.retrieve(cache, uid)
        except PacsError as error:
            raise CommandError(str(error)) from None
        print(f"retrieved {result.kept} instances of study {uid} ({result.method})", file=sys.stderr, flush=True)
        series = [folder for folder in sorted(cache.study_folder(uid).glob("*/")) if not made_by_us(folder)]
        if not series:
            raise CommandError(f"{args.pacs} holds no image of study {uid} to explain")
        folders += [str(folder) for folder in series]
    return folders


def made_by_us(series: Path) -> bool:
    """Whether a retrieved series holds our own maps, sent back by an earlier run: they are not explained."""
    from pydicom import dcmread

    from exports.dicom_objects import MANUFACTURER

    first = next(series.glob("*.dcm"), None)
    try:
        return first is not None and dcmread(first, stop_before_pixels=True).get("Manufacturer") == MANUFACTURER
    except Exception:  # unreadable: the batch reports it
        return False


def send_files(args: argparse.Namespace, paths: list[Path]) -> int:
    """Send the files to ``--send``, one line each on stderr; how many failed."""
    if not paths:
        return 0
    try:
        results = client_for(args.send, args).send(paths)
    except PacsError as error:
        print(f"error: sending to {args.send}: {error}", file=sys.stderr)
        return len(paths)
    for result in results:
        print(f"{'sent' if result.ok else 'not sent'}: {Path(result.path).name}: {result.message}", file=sys.stderr)
    return sum(not result.ok for result in results)


def send_explained(args: argparse.Namespace, explained: Explained) -> int:
    """Send one explanation's Parametric Map and Secondary Capture, identified; how many failed."""
    with tempfile.TemporaryDirectory(prefix="lightbox-send-") as folder:
        paths = [Path(folder) / f"explanation{FORMATS[fmt][0]}" for fmt in SENT_FORMATS]
        for fmt, path in zip(SENT_FORMATS, paths):
            write_output(path, fmt, explained, deidentify=False)
        return send_files(args, paths)


def send_batch(args: argparse.Namespace, folder: Path) -> int:
    """Send the Parametric Maps and Secondary Captures of the images the summary lists as done; how many failed."""
    try:
        with open(folder / "summary.csv", newline="") as file:
            names = [row["name"] for row in csv.DictReader(file) if row["status"] in ("done", "skipped")]
    except OSError as error:
        print(f"error: cannot read the summary to send from: {error.strerror or error}", file=sys.stderr)
        return 1
    return send_files(args, [folder / f"{name}{FORMATS[fmt][0]}" for name in names for fmt in SENT_FORMATS])
