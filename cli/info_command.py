"""``python main.py info``: a check of files and folders that needs neither Qt nor torch."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from dicom.errors import printable
from dicom.info import inspect_paths


def info_command(argv: Sequence[str]) -> int:
    """Describe each image under the paths; exit 0 if anything was read, 2 if nothing was."""
    parser = argparse.ArgumentParser(prog="main.py info", description="Check DICOM files and folders.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)
    images, errors = inspect_paths(args.paths)
    if args.json:
        document = {"images": images, "errors": [{"path": str(e.path), "error": e.error} for e in errors]}
        print(json.dumps(document, indent=2))
    else:
        for image in images:
            window = "W/L none" if image["window"] is None else "W {1:g} L {0:g}".format(*image["window"])
            known = image["min"] is not None and image["max"] is not None
            values = f"range {image['min']:g}..{image['max']:g}" if known else "range not finite"
            print(
                f"{printable(image['path'])}: {printable(image['modality']) or '?'} {image['columns']}x{image['rows']}"
                f" x{image['frames']} {printable(image['photometric'])} {window} {values}"
            )
        for error in errors:
            print(f"{printable(str(error.path))}: error: {printable(error.error)}", file=sys.stderr)
    return 0 if images else 2
