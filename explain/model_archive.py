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
  the refusal and tried another way;
- the program's text holds two kinds of string that torch turns into code: shape expressions,
  which it parses with sympy (whose parser runs them through Python's ``eval``), and guards,
  which ``ExportedProgram.module()`` compiles into a function called on every input. Every
  shape expression must be sympy's printed form of arithmetic on symbols (:func:`plain_expression`),
  and the guards are never compiled (:mod:`explain.model_file` asks for the module without them;
  the input's shape is still checked against the program's ranges).

torch's own verifier, which runs as the program loads, stays: it is what refuses a graph that
calls anything but ATen operators, and it costs a hundredth of a second.
"""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import typing
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
#: What a shape expression may call, as sympy prints it (``srepr``): its numbers, symbols, arithmetic,
#: comparisons and logic, and torch's shape functions (``torch.utils._sympy.functions``, the names
#: torch's deserializer gives sympy).
EXPRESSION_CALLS = frozenset({
    "Symbol", "Dummy", "Integer", "Float", "Rational", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "floor",
    "ceiling", "Equality", "Unequality", "StrictLessThan", "LessThan", "StrictGreaterThan", "GreaterThan", "And", "Or",
    "Not", "Piecewise", "ExprCondPair",
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv", "LShift",
    "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv", "IsNonOverlappingAndDenseIndicator",
    "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat", "Identity",
})
#: Names that stand alone in a printed expression: sympy's constants, and symbols such as ``s0``.
EXPRESSION_NAME = re.compile(r"oo|zoo|nan|true|false|[a-z]+\d+")
#: A string argument (a symbol's name, a float's digits): text that names, never code.
EXPRESSION_TEXT = re.compile(r"[\w.+-]{1,64}")
ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.USub, ast.UAdd, ast.Not)


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
    """Refuse an archive whose members, as torch's reader lists them, are not a plain export,
    or whose program holds a shape expression that is more than arithmetic (:func:`plain_expression`)."""
    try:
        reader = torch._C.PyTorchFileReader(str(path))
        names = reader.get_all_records()
        total = sum(reader.get_record_size(name) for name in names)
    except Exception:  # noqa: BLE001 - the native reader raises its own kinds for damaged files
        raise UnsafeArchive("it is not a torch.export archive (.pt2)") from None
    programs = [name for name in names if name.startswith("models/") and name.endswith(".json")]
    if not programs:
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
    for name in programs:
        check_expressions(reader.get_record(name))


def check_expressions(program_json: bytes) -> None:
    """Refuse a program whose shape expressions (every ``expr_str``) are not plain arithmetic."""
    try:
        program = json.loads(program_json)
    except ValueError:
        raise UnsafeArchive("its program is not JSON; refused") from None
    for text in expression_strings(program):
        if not isinstance(text, str) or not plain_expression(text):
            shown = text[:60] if isinstance(text, str) else type(text).__name__
            raise UnsafeArchive(f"it holds a shape expression that is not arithmetic ({shown!r}), which would run "
                                "as code when loaded; refused")


def expression_strings(value: Any) -> Iterator[Any]:
    """Every value stored under ``expr_str`` in a JSON document, wherever it lies."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "expr_str" in item:
                yield item["expr_str"]
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def plain_expression(text: str) -> bool:
    """Whether ``text`` is sympy's printed form of arithmetic on symbols, and nothing else.

    It is judged as Python's parser reads it, the way sympy's parser hands it to ``eval``: only
    calls of :data:`EXPRESSION_CALLS` by name, numbers, sympy's constants and symbol names,
    arithmetic, and name-like strings as arguments. No attribute, subscript, lambda or other call.
    """
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, ValueError):
        return False
    return plain_node(tree.body)


def plain_node(node: ast.AST) -> bool:
    """:func:`plain_expression` for one node of the parsed text."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) or (isinstance(node.value, str)
                                                       and EXPRESSION_TEXT.fullmatch(node.value) is not None)
    if isinstance(node, ast.Name):
        return EXPRESSION_NAME.fullmatch(node.id) is not None
    if isinstance(node, ast.UnaryOp):
        return isinstance(node.op, ARITHMETIC) and plain_node(node.operand)
    if isinstance(node, ast.BinOp):
        return isinstance(node.op, ARITHMETIC) and plain_node(node.left) and plain_node(node.right)
    if isinstance(node, ast.Call):
        return (isinstance(node.func, ast.Name) and node.func.id in EXPRESSION_CALLS
                and all(plain_node(argument) for argument in node.args)
                and all(keyword.arg is not None and isinstance(keyword.value, ast.Constant)
                        and isinstance(keyword.value.value, (bool, int)) for keyword in node.keywords))
    return False


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


@contextmanager
def remembered_answers() -> Iterator[None]:
    """A scope in which two questions torch's deserializer asks over and over are answered once.

    It turns the program's JSON into its schema's dataclasses, asking ``typing.get_type_hints``
    of a class afresh for every object (DenseNet-121 has 66,000 of them), and it parses each
    node's shape with ``sympy.sympify``, the same few expressions for every node. Neither answer
    can change while the program loads, and together they were a third of the load. Answers are
    kept per question, namespaces included; the cache holds the namespaces, so an identity cannot
    be reused for another while the scope lasts.
    """
    import sympy  # torch.export's deserializer imports it anyway

    hints, parse = typing.get_type_hints, sympy.sympify
    answers: dict[tuple, tuple[Any, Any]] = {}

    def remembered(key: tuple, holds: Any, answer: Callable[[], Any]) -> Any:
        try:
            hash(key)
        except TypeError:
            return answer()
        if key not in answers:
            answers[key] = (holds, answer())
        return answers[key][1]

    def get_type_hints(obj: Any, globalns: Any = None, localns: Any = None, include_extras: bool = False) -> Any:
        return remembered(("hints", obj, id(globalns), id(localns), include_extras), (globalns, localns),
                          lambda: hints(obj, globalns, localns, include_extras))

    def sympify(a: Any, locals: Any = None, **options: Any) -> Any:  # noqa: A002 - sympy's own keyword
        if not isinstance(a, str) or options:
            return parse(a, locals=locals, **options)
        names = tuple(sorted((locals or {}).items(), key=lambda item: item[0]))
        return remembered(("sympify", a, names), None, lambda: parse(a, locals=locals))

    with mock.patch.object(typing, "get_type_hints", get_type_hints), mock.patch.object(sympy, "sympify", sympify):
        yield


def load_program(path: Path) -> torch.export.ExportedProgram:
    """The exported program in ``path``, loaded without running code; UnsafeArchive if it cannot be.

    Its guards are still text: compile them into a module only for a program from a trusted
    source (:mod:`explain.model_file` never does).
    """
    check_members(path)
    # torch's warnings about what a file asks of its unpicklers would spill lines past the refusal.
    with weights_only_unpickling() as refusals, remembered_answers(), warnings.catch_warnings():
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
