"""Text in a program that torch would turn into code: shape expressions and guards.

torch parses every shape expression with sympy, whose parser hands the text to Python's
``eval``, and ``ExportedProgram.module()`` compiles the program's guards into a function run on
every input. An archive with a pickle in it is refused (tests/explain/test_model_file.py); these
are the same attack without one.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import sympy
import torch
from torch.utils._sympy.functions import FloorDiv

from explain.model_archive import load_program, plain_expression
from explain.model_file import ModelLoadError, load_model
from tests.model_factory import SmallCnn, card_for, export_model

CPU = torch.device("cpu")


@pytest.fixture()
def model_path(tmp_path: Path) -> Path:
    return export_model(SmallCnn(), card_for(32, 32), tmp_path)


def rewrite_program(path: Path, change) -> None:
    """Rewrite the program's JSON through ``change(program) -> program``, every other member as it was."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            if "/models/" in info.filename and info.filename.endswith(".json"):
                data = json.dumps(change(json.loads(data))).encode()
            target.writestr(info, data)


def leaves_evidence(evidence: Path) -> str:
    """Python that, if ever run, leaves a file behind."""
    return f"__import__('pathlib').Path({str(evidence)!r}).touch() is None"


def first_expression(program: dict) -> dict:
    """The first ``{"expr_str": ...}`` object in the program (the batch dimension's symbol)."""
    stack = [program]
    while stack:
        item = stack.pop(0)
        if isinstance(item, dict):
            if "expr_str" in item:
                return item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    raise AssertionError("the program has no shape expression")


def expression(text_for):
    def change(program: dict) -> dict:
        holder = first_expression(program)
        holder["expr_str"] = text_for(holder["expr_str"])
        return program
    return change


@pytest.mark.parametrize("hostile", [
    lambda original, evidence: f"{original} if {leaves_evidence(evidence)} else 0",
    lambda original, evidence: [f"({leaves_evidence(evidence)})"],
    lambda original, evidence: f"Symbol('s0').__class__.__init__.__globals__ and {leaves_evidence(evidence)}",
], ids=["code beside the symbol", "a list where text belongs", "attribute access"])
def test_a_shape_expression_that_is_code_is_refused_and_never_runs(model_path, tmp_path, hostile):
    evidence = tmp_path / "ran.txt"
    rewrite_program(model_path, expression(lambda original: hostile(original, evidence)))
    with pytest.raises(ModelLoadError, match="shape expression that is not arithmetic.*refused") as refused:
        load_model(model_path, CPU)
    assert "\n" not in str(refused.value)
    assert not evidence.exists()


def test_guards_stay_text_and_never_run(model_path, tmp_path):
    evidence = tmp_path / "ran.txt"

    def add_guard(program: dict) -> dict:
        program["guards_code"] = [leaves_evidence(evidence)]
        return program

    rewrite_program(model_path, add_guard)
    model = load_model(model_path, CPU)
    model.probabilities(torch.zeros(3, 1, 32, 32))
    assert not evidence.exists()


def test_the_input_shape_is_still_checked_without_the_guards(model_path):
    model = load_model(model_path, CPU)
    with pytest.raises(Exception, match="4096"):
        model.module(torch.zeros(4097, 1, 32, 32))


@pytest.mark.parametrize("expr", [
    sympy.Symbol("s77", positive=True, integer=True),
    2 * sympy.Symbol("s0", integer=True) + 1,
    FloorDiv(sympy.Symbol("s0", integer=True), 2),
    sympy.Max(sympy.Symbol("s1", integer=True), sympy.Rational(1, 2)),
    sympy.Float(1.5),
    sympy.oo,
])
def test_what_torch_prints_is_arithmetic(expr):
    assert plain_expression(sympy.srepr(expr))


@pytest.mark.parametrize("text", [
    "__import__('os')", "Symbol('s0').name", "Symbol('s0')[0]", "lambda: 0", "getattr(Symbol, 'x')",
    "Symbol(open('x'))", "Symbol('s0', positive=print)", "eval('1')", "Symbol('a b; c')", "[Symbol('s0')]",
    "sympify('1')", "Integer(1) if x else 0",
])
def test_anything_else_is_not(text):
    assert not plain_expression(text)


def test_a_good_program_loads_the_same_with_the_deserializers_answers_remembered(model_path):
    program = load_program(model_path)
    plain = torch.export.load(str(model_path))
    assert str(program.graph) == str(plain.graph)
    assert program.range_constraints.keys() == plain.range_constraints.keys()
