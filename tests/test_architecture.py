"""The layering the design promises, checked by import-linter's contracts in pyproject.toml.

``dicom`` needs neither Qt nor torch, the engine neither Qt nor DICOM, the exports no Qt, the
PACS layer neither Qt nor torch nor our other packages, the command line never the viewer, and no package's modules import each other in a circle. Indirect
imports count: a module that imports another that imports Qt imports Qt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dicom", "explain", "exports", "pacs", "viewer", "cli")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the packages under ``root``, which come first on the import path."""
    environment = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports")), "--no-cache"], cwd=root,
                          capture_output=True, text=True, env=environment, timeout=120)


def test_every_import_contract_is_kept():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_an_indirect_import_of_the_viewer_breaks_the_command_lines_contract(tmp_path):
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    trust_text = tmp_path / "exports" / "trust_text.py"  # the command line reaches it through exports.explained
    trust_text.write_text(trust_text.read_text() + "\nimport viewer.trust_panel  # noqa\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "The command line never imports the viewer BROKEN" in result.stdout
    assert "Exports need no Qt BROKEN" in result.stdout
