"""Starting the application and taking screenshots, as ``main.py --screenshot`` does."""

from __future__ import annotations

import sys

from PySide6.QtGui import QImage
from PySide6.QtWidgets import QWidget

from tests.dicom_factory import write_ct_series
from viewer.app import DEMO_STUDY, SCREENSHOT_SIZE, run_gui


def test_screenshot_of_a_series(tmp_path, qapp, qt_settings):
    write_ct_series(tmp_path / "ct", 4)
    out = tmp_path / "shot.png"
    assert run_gui([str(tmp_path / "ct")], screenshot=str(out)) == 0
    image = QImage(str(out))
    assert (image.width(), image.height()) == SCREENSHOT_SIZE
    assert qapp.applicationName() == "Lightbox" and qapp.organizationName() == "Lightbox"


def test_screenshot_without_paths_shows_the_demo_study(tmp_path, qt_settings):
    out = tmp_path / "demo.png"
    assert DEMO_STUDY.exists()
    assert run_gui([], screenshot=str(out)) == 0
    assert QImage(str(out)).width() == SCREENSHOT_SIZE[0]


def test_screenshot_with_an_unusable_model_says_so_and_exits(tmp_path, qt_settings, capsys):
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"not an archive")
    out = tmp_path / "shot.png"
    assert run_gui([], screenshot=str(out), explain="occlusion", model=broken) == 1
    assert "did not finish" in capsys.readouterr().err and out.exists()


def test_screenshot_with_an_unknown_method_names_the_known_ones(tmp_path, qt_settings, capsys):
    out = tmp_path / "shot.png"
    assert run_gui([], screenshot=str(out), explain="integrated_gradients") == 1
    error = capsys.readouterr().err
    assert "no method 'integrated_gradients'" in error and "occlusion, ig, lime, perturbation" in error
    assert "Traceback" not in error and out.exists()


def test_qt_binding_keeps_its_references_to_none(qapp):
    """PySide6 6.12.0 on Python 3.11 drops a reference to None on every call of a void method,
    so the viewer aborts ("deallocating None") after a few thousand calls: a few seconds of
    window/level dragging. A binding with that bug must not be installed."""
    widget = QWidget()
    before = sys.getrefcount(None)
    for _ in range(1000):
        widget.setEnabled(True)
    assert sys.getrefcount(None) >= before - 10
