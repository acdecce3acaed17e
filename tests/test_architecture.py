"""The layering the design promises, checked on the source: the engine never touches Qt."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QT = ("PySide6", "pyqtgraph", "shiboken6")


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every top-level module each file of a package imports, at any depth of the file."""
    found = {}
    for path in (ROOT / package).rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_engine_imports_neither_qt_nor_the_viewer():
    for path, names in imported_modules("explain").items():
        offending = {n for n in names if n.split(".")[0] in (*QT, "viewer", "cli")}
        assert not offending, f"{path} imports {sorted(offending)}"


def test_the_dicom_layer_and_the_command_line_stay_headless():
    files = {**imported_modules("cli"), **{k: v for k, v in imported_modules("viewer").items()
                                          if Path(k).name.startswith(("dicom", "heat_colours", "bundled", "trust_text",
                                                                      "key_image_report"))}}
    for path, names in files.items():
        offending = {n for n in names if n.split(".")[0] in QT}
        assert not offending, f"{path} imports {sorted(offending)}"
