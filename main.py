"""Lightbox: a DICOM viewer that shows why a deep learning model reached its finding.

``python main.py [PATH ...]`` opens the viewer (the demo study when no path is given);
``python main.py info [--json] PATH ...`` checks files without starting Qt or torch.
Each command imports only what it needs, so the headless ones start fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def info_command(argv: Sequence[str]) -> int:
    """Describe each image under the paths; exit 0 if anything was read, 2 if nothing was."""
    parser = argparse.ArgumentParser(prog="main.py info", description="Check DICOM files and folders.")
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files, folders or DICOMDIRs")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    args = parser.parse_args(argv)

    from viewer.dicom_info import inspect_paths

    images, errors = inspect_paths(args.paths)
    if args.json:
        document = {"images": images, "errors": [{"path": str(e.path), "error": e.error} for e in errors]}
        print(json.dumps(document, indent=2))
    else:
        for image in images:
            window = "W/L none" if image["window"] is None else "W {1:g} L {0:g}".format(*image["window"])
            print(
                f"{image['path']}: {image['modality'] or '?'} {image['columns']}x{image['rows']}"
                f" x{image['frames']} {image['photometric']} {window}"
                f" range {image['min']:g}..{image['max']:g}"
            )
        for error in errors:
            print(f"{error.path}: error: {error.error}", file=sys.stderr)
    return 0 if images else 2


def gui_command(argv: Sequence[str]) -> int:
    """Open the viewer on the given paths, or on the demo study."""
    parser = argparse.ArgumentParser(prog="main.py", description="Lightbox DICOM viewer.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or DICOMDIRs to open")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render the window offscreen, save it and exit")
    args = parser.parse_args(argv)

    from viewer.app import run_gui

    return run_gui(args.paths, screenshot=args.screenshot)


COMMANDS = {"info": info_command}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand, or to the GUI when the first word is not one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return gui_command(argv)


if __name__ == "__main__":
    sys.exit(main())
