"""Side by side: two linked panes, the map in one and not the other, and linked scrolling by position."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QFontMetricsF
from PySide6.QtWidgets import QApplication

from dicom.bundled import DEMO_STUDY
from dicom.pixels import Window
from tests.dicom_factory import write_ct_series, write_radiograph
from tests.viewer.conftest import coloured_fraction, lung_phantom, on_screen, turn_wheel, view_rgb
from viewer import image_view
from viewer.bindings import table
from viewer.series_browser import SERIES_MIME, series_mime
from viewer.side_by_side import Compare


def side_by_side(qtbot, window):
    """Press S and let the two panes take their sizes."""
    qtbot.keyClick(window.view, "S")
    qtbot.wait(20)
    return window.compare.left, window.compare.right


def heat_in(view) -> float:
    """The share of a pane's image that is coloured (heat) rather than grey."""
    return coloured_fraction(SimpleNamespace(view=view))


def grey_at(view, x: float, y: float) -> np.ndarray:
    """The screen colour of the point ``x``, ``y`` (mm) of the image in a pane."""
    row, column = on_screen(view, x, y)
    return view_rgb(view)[row, column]


def explain(qtbot, ui, method: str, **options) -> None:
    ui.panel.method.setCurrentIndex(ui.panel.method.findData(method))
    editors = ui.panel.forms.currentWidget().editors
    for name, value in options.items():
        editors[name].setValue(value)
    with qtbot.waitSignal(ui.explanation_finished, timeout=60000):
        ui.explain()
    qtbot.wait(30)


def test_s_shows_a_second_pane_and_is_in_the_help(qtbot, window, tmp_path):
    window.open_paths([lung_phantom(tmp_path / "ct.dcm")])
    assert not window.compare.right_pane.isVisible()
    left, right = side_by_side(qtbot, window)
    assert window.compare.right_pane.isVisible() and window.key_actions["side_by_side"].isChecked()
    assert right.image.frame is left.image.frame
    assert 0.8 < right.width() / left.width() < 1.25, "the two panes share the width"
    assert any(keys == "S" and "Side by side" in action for keys, action in table())
    qtbot.keyClick(window.view, "S")
    assert not window.compare.right_pane.isVisible()


def test_corner_text_in_a_narrow_pane_keeps_to_its_corner(qtbot, window, monkeypatch):
    """Each corner's lines stay in their half of a pane, clear of the other corner and the letters."""
    drawn: dict[int, list[tuple[str, QRectF]]] = {}

    def record(painter, x, baseline, font, text, colour=None):
        metrics = QFontMetricsF(font)
        box = QRectF(x, baseline - metrics.ascent(), metrics.horizontalAdvance(text), metrics.height())
        drawn.setdefault(id(painter.device()), []).append((text, box))

    monkeypatch.setattr(image_view, "outlined", record)
    window.open_paths([DEMO_STUDY])
    left, right = side_by_side(qtbot, window)
    for view in (left, right):
        drawn.clear()
        view.viewport().grab()
        ((texts),) = drawn.values()
        assert any(text.endswith("…") for text, _ in texts), "the study's long lines are cut short"
        assert any(text == "R" for text, _ in texts), "the orientation letters are drawn"
        assert any(text.startswith("W ") and "…" not in text for text, _ in texts), "the window is read whole"
        for i, (text, box) in enumerate(texts):
            assert QRectF(view.viewport().rect()).contains(box), f"{text!r} is inside the pane"
            for other, other_box in texts[i + 1:]:
                assert not box.intersects(other_box), f"{text!r} runs into {other!r}"


def test_zoom_pan_and_window_in_one_pane_change_the_other(qtbot, window, tmp_path):
    window.open_paths([lung_phantom(tmp_path / "ct.dcm")])
    left, right = side_by_side(qtbot, window)
    for view in (left, right):
        view.set_corner_text_visible(False)
    before = right.zoom
    left.zoom_by(2.0)
    assert right.zoom == pytest.approx(2 * before, rel=0.01), "zooming the left zooms the right"
    centre = left.box.viewRect().center()
    right.pan_by(40, 25)
    left_centre, right_centre = left.box.viewRect().center(), right.box.viewRect().center()
    assert left_centre != centre, "panning the right pans the left"
    assert (left_centre.x(), left_centre.y()) == pytest.approx((right_centre.x(), right_centre.y()))
    assert left.zoom == pytest.approx(right.zoom)
    right.set_voi(Window(-600, 400, ""))  # lung tissue mid-grey in the right pane ...
    assert left.voi == right.voi
    qtbot.wait(20)
    # ... and in the left one: the same point of the lung is the same grey on screen in both panes.
    point = (10.0, 20.0)
    left_grey, right_grey = grey_at(left, *point), grey_at(right, *point)
    assert 100 < left_grey[0] < 160
    assert np.abs(left_grey - right_grey).max() <= 2


def test_the_left_pane_shows_heat_and_the_right_none(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    left, right = side_by_side(qtbot, window)
    explain(qtbot, ui, "occlusion", window=8, stride=4)
    assert heat_in(left) > 0.005
    assert heat_in(right) == 0.0
    assert "Occlusion" in window.compare.left_pane.header.text()
    assert "no map" in window.compare.right_pane.header.text()


def test_the_right_pane_can_keep_the_previous_map(qtbot, window, ui, tmp_path):
    window.open_paths([write_radiograph(tmp_path / "dx.dcm", rows=96, cols=128)])
    left, right = side_by_side(qtbot, window)
    window.compare.set_compare(Compare.PREVIOUS_MAP)
    explain(qtbot, ui, "occlusion", window=8, stride=4)
    assert heat_in(right) == 0.0, "no map before the first"
    explain(qtbot, ui, "ig", steps=8)
    assert heat_in(left) > 0.005 and heat_in(right) > 0.005
    assert "Integrated" in window.compare.left_pane.header.text()
    assert "previous Occlusion map" in window.compare.right_pane.header.text()
    window.compare.set_compare(Compare.IMAGE_ONLY)
    qtbot.wait(20)
    assert heat_in(right) == 0.0


def two_series(tmp_path):
    """A 2.5 mm CT of nine slices and a 5 mm one of five, one study and frame of reference."""
    same = {"study_uid": "1.2.3", "extra": {"FrameOfReferenceUID": "1.2.3.4"}}
    write_ct_series(tmp_path / "fine", 9, spacing=2.5, series_number=1, **same)
    write_ct_series(tmp_path / "coarse", 5, spacing=5.0, series_number=2, **same)
    return tmp_path


def test_another_series_scrolls_with_the_left_by_slice_position(qtbot, window, tmp_path):
    window.open_paths([two_series(tmp_path)])
    fine, coarse = window.series
    side_by_side(qtbot, window)
    window.compare.set_right_series(1)
    right = window.compare.right
    expected = [0, 0, 1, 1, 2, 2, 3, 3, 4]
    for index in (8, 3, 5):
        window.go_to(index)
        assert right.image.frame is coarse.frames[expected[index]], f"left slice {index}"
    assert window.compare.right_pane.header.text().startswith("Right · 2: CT (5): linked by slice position")
    turn_wheel(right.viewport(), -2, QPointF(right.viewport().rect().center()))
    assert window.frame_index == 7 and right.image.frame is coarse.frames[3]
    assert window.compare.left.image.frame is fine.frames[7]


def test_a_series_dropped_on_the_right_pane_is_shown_there(qtbot, window, tmp_path):
    window.open_paths([two_series(tmp_path)])
    side_by_side(qtbot, window)
    window.go_to(4)  # 0 mm, the middle of both series
    pane = window.compare.right_pane
    data = window.browser.mimeData([window.browser.series_item(1)])
    assert data.data(SERIES_MIME) == series_mime(1).data(SERIES_MIME)
    at = QPoint(pane.width() // 2, pane.height() // 2)
    enter = QDragEnterEvent(at, Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(pane, enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(at), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(pane, drop)
    assert window.compare.right.image.frame is window.series[1].frames[2]
