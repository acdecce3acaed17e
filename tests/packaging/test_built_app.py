"""The one-folder app that ``scripts/build_app`` builds, run from its folder as a user would.

Skipped when ``dist/Lightbox/`` (or the folder ``LIGHTBOX_APP`` names) has not been built:
building takes minutes, so the everyday test run leaves it to ``scripts/build_app``, which builds
and then runs this file. The app runs from a scratch folder, with no Python of ours on its paths
and without a network (where ``unshare`` can take it away), on the demo it carries inside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image

from tests.packaging.running import OFFLINE, anatomy_pixels, heat_pixels, run_program

ROOT = Path(__file__).resolve().parents[2]
#: The folder scripts/build_app made; LIGHTBOX_APP names another (the CUDA flavour's dist/cuda/Lightbox).
APP = Path(os.environ.get("LIGHTBOX_APP", ROOT / "dist" / "Lightbox")).resolve() / "Lightbox"
#: pydicom's own files in the compressed syntaxes whose decoders are native libraries in the app.
COMPRESSED = ("JPGExtended.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_RLE.dcm")

pytestmark = pytest.mark.skipif(not APP.exists(), reason=f"{APP.parent} not built; run scripts/build_app")


def run_app(*args: str, cwd: Path, platform: str = "offscreen", inside: Sequence[str] = OFFLINE,
            timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """The app with a bare environment: no virtual environment, no Python paths, Qt on ``platform``.

    ``inside`` is a command the app runs under: by default one that takes the network away, so
    a start that reaches for it fails here; or an X server's ``xvfb-run``.
    """
    return run_program(APP, *args, cwd=cwd, platform=platform, inside=inside, timeout=timeout)


def test_demo_screenshot_shows_the_radiograph_with_heat_over_it(tmp_path):
    plain, explained = tmp_path / "plain.png", tmp_path / "explained.png"
    result = run_app("--screenshot", str(plain), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_app("--screenshot", str(explained), "--explain", "occlusion", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    before, after = np.asarray(Image.open(plain).convert("RGB")), np.asarray(Image.open(explained).convert("RGB"))
    assert before.shape == after.shape == (900, 1400, 3)
    anatomy = anatomy_pixels(before)
    assert anatomy.mean() > 0.2, "the demo radiograph fills much of the window"
    heat_on_anatomy = anatomy & heat_pixels(after)
    assert heat_on_anatomy.mean() > 0.02, "the explanation colours part of the radiograph"
    assert (heat_pixels(before) & anatomy).sum() == 0, "before explaining, the radiograph is grey"


def test_headless_commands_decode_compressed_files_as_the_source_does(tmp_path):
    corpus = Path(pydicom.__file__).parent / "data" / "test_files"
    paths = [str(corpus / name) for name in COMPRESSED]
    built = run_app("info", "--json", *paths, cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    source = subprocess.run([sys.executable, str(ROOT / "main.py"), "info", "--json", *paths],
                            capture_output=True, text=True, cwd=ROOT)
    document = json.loads(built.stdout)
    assert document["errors"] == [] and len(document["images"]) == len(COMPRESSED)
    assert document == json.loads(source.stdout)


def test_headless_batch_with_trust_sanity_check_and_dicom_exports(tmp_path):
    maps = tmp_path / "maps"
    result = run_app("explain", "--method", "ig", "--steps", "8", "--sanity", "--json", "--format", "npz,pm,sc,html",
                     "--out", str(maps), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout.splitlines()[-1])
    assert record["status"] == "done" and record["target"] == "effusion" and record["score"] > 0.5
    assert {"deletion_auc", "aopc", "randomized_rank_correlation"} <= record.keys()
    saved = np.load(maps / f"{record['name']}.npz")
    assert saved["heatmap"].shape == (1024, 880) and np.isfinite(saved["heatmap"]).all()
    parametric = pydicom.dcmread(maps / f"{record['name']}.pm.dcm")
    assert parametric.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30" and parametric.Rows == 1024
    assert "Secondary Capture" in pydicom.dcmread(maps / f"{record['name']}.sc.dcm").SOPClassUID.name
    assert "Integrated gradients" in (maps / f"{record['name']}.html").read_text()


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="no Xvfb to open an X11 window in")
def test_a_real_x11_window_through_the_bundled_xcb_plugin(tmp_path):
    picture = tmp_path / "x11.png"
    result = run_app("--screenshot", str(picture), cwd=tmp_path, platform="xcb",
                     inside=("xvfb-run", "-a", "-s", "-screen 0 1600x1000x24"))
    assert result.returncode == 0, result.stderr
    assert anatomy_pixels(np.asarray(Image.open(picture).convert("RGB"))).mean() > 0.2
