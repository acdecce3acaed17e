"""Lightbox: a DICOM viewer that shows why a deep learning model reached its finding.

``python main.py [PATH ...]`` opens the viewer (the demo study when no path is given);
``python main.py info [--json] PATH ...`` checks files without starting Qt or torch;
``python main.py explain PATH --method M`` explains a model's finding without a window.
``python main.py pacs query|verify NODE`` searches or checks a PACS.
Each command imports only what it needs, so the headless ones start fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from cli import interrupt
from explain.heap import keep_freed_memory


def gui_command(argv: Sequence[str]) -> int:
    """Open the viewer on the given paths, or on the demo study."""
    parser = argparse.ArgumentParser(prog="main.py", description="Lightbox DICOM viewer.")
    parser.add_argument("paths", nargs="*", metavar="PATH", help="files, folders or DICOMDIRs to open")
    parser.add_argument("--screenshot", metavar="OUT.png", help="render the window offscreen, save it and exit")
    parser.add_argument("--explain", metavar="METHOD", help="with --screenshot: run this method to the end first")
    parser.add_argument("--model", type=Path, help="a torch.export model (.pt2) with its card; the demo by default")
    args = parser.parse_args(argv)
    # Qt aborts the process when its platform plugin lacks a system library: name them all first.
    from viewer.system_libraries import install_line, missing_packages, uses_xcb

    offscreen = args.screenshot is not None and "QT_QPA_PLATFORM" not in os.environ
    missing = missing_packages(xcb=not offscreen and uses_xcb())
    if missing:
        print(install_line(missing), file=sys.stderr)
        return 1

    from viewer.app import run_gui

    return run_gui(args.paths, screenshot=args.screenshot, explain=args.explain, model=args.model)


#: The exit status of a command stopped with Ctrl-C, as a shell reports a process ended by SIGINT.
INTERRUPTED = 130
#: Subcommands and the module that runs each; imported only when asked for.
COMMANDS = {"info": "cli.info_command", "explain": "cli.explain_command", "pacs": "cli.pacs_command",
            "model": "cli.model_command"}


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch to a subcommand, or to the GUI when the first word is not one."""
    argv = list(sys.argv[1:] if argv is None else argv)
    keep_freed_memory()
    if argv and argv[0] in COMMANDS:
        interrupt.install()
        module = importlib.import_module(COMMANDS[argv[0]])
        try:
            return getattr(module, f"{argv[0]}_command")(argv[1:])
        except KeyboardInterrupt:
            # Ctrl-C is the user's choice, not a failure to explain: what was written is whole
            # (results are renamed into place, records last), so one line says how to go on.
            print(f"{argv[0]}: interrupted; what was finished is kept, and the same command resumes a folder run",
                  file=sys.stderr)
            return INTERRUPTED
    return gui_command(argv)


#: Commands that end their process without tearing the interpreter down (see :func:`exit_now`).
QUICK_EXIT = ("explain",)


def exit_now(status: int) -> NoReturn:
    """End the process at once, its output flushed, skipping the interpreter's teardown.

    After an explanation the teardown (freeing the model, its activations and torch's modules,
    one object at a time) took about a second of a 20-second DenseNet-121 run, 5% of the
    command's time, for nothing the user gets: every result is written, closed and renamed into
    place before the command returns, and the one background service (Ray) is shut down by it.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    status = main()
    if sys.argv[1:2] and sys.argv[1] in QUICK_EXIT:
        exit_now(status)
    sys.exit(status)
