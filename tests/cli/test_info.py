"""``python main.py info``: the JSON contract of the design notes, exit codes, no Qt or torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import dicom_factory as factory

ROOT = Path(__file__).resolve().parents[2]


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_info_json_describes_images_and_errors(tmp_path):
    stored = np.array([[0, 1000], [2000, 3000]], dtype=np.uint16)
    ct = factory.write_image(tmp_path / "ct.dcm", stored, modality="CT", slope=1, intercept=-1024, windows=[(40, 400)])
    cine = factory.write_multiframe(tmp_path / "cine.dcm", n_frames=3, rows=16, cols=20)
    junk = factory.write_junk(tmp_path / "junk.dcm")
    result = run_main("info", "--json", str(tmp_path))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    images = {Path(image["path"]).name: image for image in document["images"]}
    assert images["ct.dcm"] == {
        "path": str(ct), "rows": 2, "columns": 2, "frames": 1, "modality": "CT", "photometric": "MONOCHROME2",
        "window": [40.0, 400.0], "min": -1024.0, "max": 1976.0,
    }
    assert images["cine.dcm"]["frames"] == 3 and images["cine.dcm"]["rows"] == 16 and images["cine.dcm"]["window"] is None
    assert str(cine) == images["cine.dcm"]["path"]
    assert document["errors"] == [{"path": str(junk), "error": "not a DICOM file"}]


def test_info_exits_2_when_nothing_was_read(tmp_path):
    factory.write_junk(tmp_path / "junk.dcm")
    truncated = factory.write_truncated(tmp_path / "cut.dcm")
    result = run_main("info", "--json", str(tmp_path))
    assert result.returncode == 2
    errors = {Path(e["path"]).name: e["error"] for e in json.loads(result.stdout)["errors"]}
    assert errors["cut.dcm"].startswith("cannot decode pixels") and Path(truncated).name in errors
    assert "Traceback" not in result.stderr


def test_info_plain_text_lists_each_file(tmp_path):
    factory.write_radiograph(tmp_path / "dx.dcm", rows=32, cols=24, windows=[(2048, 4096)])
    factory.write_non_image(tmp_path / "report.dcm")
    result = run_main("info", str(tmp_path))
    assert result.returncode == 0
    assert "dx.dcm: DX 24x32 x1 MONOCHROME2 W 4096 L 2048" in result.stdout
    assert "report.dcm: error: no image in this DICOM file" in result.stderr


def test_info_imports_neither_qt_nor_torch(tmp_path):
    path = factory.write_image(tmp_path / "a.dcm")
    probe = (
        "import sys, main; main.main(['info', '--json', sys.argv[1]]);"
        "heavy = [m for m in ('PySide6', 'pyqtgraph', 'torch') if m in sys.modules];"
        "sys.stderr.write(repr(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", probe, str(path)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "[]"
