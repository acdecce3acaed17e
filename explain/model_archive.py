"""Opening a ``torch.export`` archive so that nothing in it can run code.

A ``.pt2`` file is a zip archive: a JSON graph, raw tensor bytes and, in places, pickles, some of
which torch's loader unpickles in full. Predicting which members it will unpickle failed: torch
reads names regardless of case, picks another copy of a repeated name, joins folders and names
its own way, and falls back from the safe unpickler to the full one. So the archive is judged
the way torch sees it, and safety is enforced where unpickling happens:

- the member list comes from torch's own reader, and must be what ``torch.export.save`` writes:
  no names that differ only in case, no repeated names, no absolute or ``..`` paths, no members
  the format does not explain, no compressed members (a zip bomb);
- the archive is loaded in a scope where every ``torch.load`` is ``weights_only=True`` and any
  full unpickle raises; a file that asks for one is refused, even where torch would have caught
  the refusal and tried another way.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import torch


class UnsafeArchive(Exception):
    """The archive is not what ``torch.export.save`` writes, or would run code; one line."""


#: Every member ``torch.export.save`` writes for a plain exported program, relative to the
#: archive's root folder. Native code (AOTInductor, ExecuTorch, MTIA) and external weights are not
#: plain programs and are refused with everything else not listed here.
MEMBER = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/[\w.-]+\.json|data/weights/[\w.-]+|data/constants/[\w.-]+|data/sample_inputs/[\w.-]+\.pt"
    r"|extra/[\w.-]+"
)
#: Constants that exist only as Python objects, restored by unpickling in full.
PYTHON_OBJECT_PREFIXES = ("custom_obj_", "opaque_obj_")
REFUSED = "it holds a pickle that is not plain weights (it would run code when loaded); refused"


def member_problem(name: str) -> str | None:
    """Why a member name is unacceptable, or None; the name as torch's reader gives it."""
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\0" in name or any(p in ("", ".", "..") for p in parts):
        return f"a member with an absolute or relative path ({name[:60]!r})"
    if not MEMBER.fullmatch(name):
        return f"a member the torch.export format does not explain ({name[:60]!r})"
    if parts[-1].startswith(PYTHON_OBJECT_PREFIXES):
        return "Python objects that would run code when loaded"
    return None


def check_members(path: Path) -> None:
    """Refuse an archive whose members, as torch's reader lists them, are not a plain export."""
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        names = reader.get_all_records()
        total = sum(reader.get_record_size(name) for name in names)
    except Exception:  # noqa: BLE001 - the native reader raises its own kinds for damaged files
        raise UnsafeArchive("it is not a torch.export archive (.pt2)") from None
    if not any(name.startswith("models/") and name.endswith(".json") for name in names):
        raise UnsafeArchive("it holds no exported program; save it with torch.export.save")
    folded = [name.casefold() for name in names]
    if len(set(folded)) != len(folded):
        repeated = sorted({name for name, key in zip(names, folded) if folded.count(key) > 1})[0]
        raise UnsafeArchive(f"it names a member more than once, or twice in different case ({repeated[:60]!r}); refused")
    for name in names:
        problem = member_problem(name)
        if problem:
            raise UnsafeArchive(f"it holds {problem}; refused")
    if total > os.path.getsize(path):
        raise UnsafeArchive("its members are compressed, which torch.export.save never does (a zip bomb?); refused")


@contextmanager
def weights_only_unpickling() -> Iterator[list[str]]:
    """A scope in which torch may unpickle only plain weights; yields the refusals made in it.

    ``torch.load`` is always called with ``weights_only=True``, whatever its caller asked; the
    full unpickler (``pickle``'s and torch's own for script objects) raises. Refusals are kept,
    so a loader that catches one and carries on still has its file refused afterwards.
    """
    refusals: list[str] = []
    safe_load = torch.load

    def weights_only_load(f: Any, map_location: Any = None, pickle_module: Any = None, **options: Any) -> Any:
        options["weights_only"] = True
        options.pop("pickle_module", None)
        try:
            return safe_load(f, map_location=map_location, **options)
        except Exception as error:  # noqa: BLE001 - any refusal by the safe unpickler means unsafe
            refusals.append(REFUSED)
            raise UnsafeArchive(REFUSED) from error

    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        refusals.append(REFUSED)
        raise UnsafeArchive(REFUSED)

    replacements: list[tuple[Any, str, Callable[..., Any]]] = [
        (torch, "load", weights_only_load), (torch.serialization, "load", weights_only_load),
        (pickle, "loads", refuse), (pickle, "load", refuse),
        (torch._C, "_pickle_load_obj", refuse),
    ]
    with ExitStack() as stack:
        for owner, name, replacement in replacements:
            stack.enter_context(mock.patch.object(owner, name, replacement))
        yield refusals


def load_program(path: Path) -> torch.export.ExportedProgram:
    """The exported program in ``path``, loaded without running code; UnsafeArchive if it cannot be."""
    check_members(path)
    # torch's warnings about what a file asks of its unpicklers would spill lines past the refusal.
    with weights_only_unpickling() as refusals, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            program = torch.export.load(str(path))
        except UnsafeArchive:
            raise
        except Exception as error:  # noqa: BLE001 - a damaged archive may raise anything
            if refusals:
                raise UnsafeArchive(refusals[0]) from None
            raise UnsafeArchive(f"it cannot be loaded: {str(error).strip().splitlines()[0][:160]}") from None
    if refusals:
        raise UnsafeArchive(refusals[0])
    return program
