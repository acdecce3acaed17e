"""File > Export in the viewer: enabled only for a final explanation on show, writes what is on screen."""

from __future__ import annotations

import numpy as np
import pydicom
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFileDialog

from tests.dicom_factory import write_radiograph
from tests.exports.test_dicom_objects import dciodvfy_errors, source_reference


def explained(qtbot, window, ui, tmp_path):
    """A radiograph on show with its finished explanation and trust figures."""
    path = write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128, extra={"PatientName": "Doe^Jane",
                                                                          "PatientID": "PID-4711"})
    window.open_paths([path])
    editors = ui.panel.forms.currentWidget().editors
    editors["window"].setValue(8)
    editors["stride"].setValue(4)
    with qtbot.waitSignal(ui.trust_finished, timeout=60000):
        ui.explain()
    return pydicom.dcmread(path, stop_before_pixels=True)


def test_the_export_items_wait_for_a_final_explanation(qtbot, window, ui, tmp_path):
    actions = ui.exports.actions
    assert not any(a.isEnabled() for a in actions.values()) and not ui.exports.view_action.isEnabled()
    assert ui.exports.view_action in window.export_menu.actions()
    explained(qtbot, window, ui, tmp_path)
    assert all(a.isEnabled() for a in actions.values()) and ui.exports.view_action.isEnabled()
    window.view.show_error(ui.current.frame, "gone", (0, 1))  # something else on show
    window.frame_shown.emit(object())
    assert not any(a.isEnabled() for a in actions.values())


def test_exports_carry_what_is_on_screen_and_honour_de_identification(qtbot, window, ui, tmp_path):
    source = explained(qtbot, window, ui, tmp_path)
    ui.exports.deidentify.setChecked(False)
    assert ui.exports.write("parametric_map", tmp_path / "pm.dcm")
    assert dciodvfy_errors(tmp_path / "pm.dcm") == []
    pm = pydicom.dcmread(tmp_path / "pm.dcm")
    assert pm.PatientID == "PID-4711" and source_reference(pm).ReferencedSOPInstanceUID == source.SOPInstanceUID
    heat = pm.pixel_array
    rows, columns = np.unravel_index(np.argmax(heat), heat.shape)
    assert 8 * 2 <= rows < 24 * 2 and 30 * 2 <= columns < 50 * 2, "the map lies on the box the model looks at"
    assert "Deletion area" in pm.ImageComments and ui.trust.verdict.text().strip("<b>/") in pm.ImageComments
    assert ui.exports.write("report", tmp_path / "named.html")
    named = (tmp_path / "named.html").read_text(encoding="utf-8")
    assert "Doe, Jane" in named and "PID-4711" in named and "Deletion area" in named

    ui.exports.deidentify.setChecked(True)
    assert ui.exports.write("secondary_capture", tmp_path / "sc.dcm")
    assert ui.exports.write("report", tmp_path / "report.html")
    assert dciodvfy_errors(tmp_path / "sc.dcm") == []
    sc = pydicom.dcmread(tmp_path / "sc.dcm")
    assert str(sc.PatientName) == "" and sc.PatientID != "PID-4711" and sc.PatientIdentityRemoved == "YES"
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "Doe, Jane" not in report and "Doe^Jane" not in report and "PID-4711" not in report
    assert "data:image/png;base64," in report
    assert "de-identified" in window.statusBar().currentMessage()
    assert window.settings.value("export/deidentify") == "true"


def test_the_view_as_png_hides_the_patient_when_de_identifying(qtbot, window, ui, tmp_path):
    explained(qtbot, window, ui, tmp_path)
    ui.exports.deidentify.setChecked(False)
    assert ui.exports.write_view(tmp_path / "named.png")
    ui.exports.deidentify.setChecked(True)
    assert ui.exports.write_view(tmp_path / "plain.png")
    named, plain = QImage(str(tmp_path / "named.png")), QImage(str(tmp_path / "plain.png"))
    assert named.size() == plain.size() == window.view.size() and named != plain
    assert window.view.corner_text_visible, "the corner text comes back"


def test_a_failed_export_says_why_in_one_line(qtbot, window, ui, tmp_path, monkeypatch):
    explained(qtbot, window, ui, tmp_path)
    assert not ui.exports.write("parametric_map", tmp_path / "no-such-folder" / "pm.dcm")
    message = window.statusBar().currentMessage()
    assert message.startswith("Parametric Map not saved: cannot write") and "\n" not in message
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *args: (str(tmp_path / "chosen.html"), ""))
    ui.exports.actions["report"].trigger()
    assert (tmp_path / "chosen.html").exists()
    assert window.settings.value("export/folder") == str(tmp_path)


def test_the_view_as_png_is_refused_for_burned_in_annotation_when_de_identifying(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=64, cols=64, extra={"BurnedInAnnotation": "YES"})])
    qtbot.waitUntil(lambda: window.view.image is not None)
    ui.exports.deidentify.setChecked(True)
    assert not ui.exports.write_view(tmp_path / "plain.png") and not (tmp_path / "plain.png").exists()
    message = window.statusBar().currentMessage()
    assert message.startswith("View not saved:") and "burned-in annotation" in message and "\n" not in message
    ui.exports.deidentify.setChecked(False)
    assert ui.exports.write_view(tmp_path / "named.png"), "the reader's own, identified picture is still saved"
