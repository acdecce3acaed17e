"""Measuring in the viewer with the mouse: what is drawn and written on screen, per frame, deleted, undone, exported."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage, QKeySequence
from PySide6.QtWidgets import QApplication

from dicom.measurements import Kind
from tests.dicom_factory import write_ct_series
from tests.viewer.conftest import lung_phantom, view_rgb
from tests.viewer.test_gui_export import explained
from tests.viewer.test_gui_image_view import drag
from viewer import bindings
from viewer.measurement_tools import COLOUR


@pytest.fixture(autouse=True)
def every_mouse_move(monkeypatch):
    """pyqtgraph drops moves closer than 10 ms apart; simulated ones come microseconds apart."""
    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", -1)


def at(view, column: float, row: float) -> QPoint:
    """The viewport point over image point (column, row) of the frame on show."""
    rect = view.image_rect()
    scale = rect.width() / view.image.frame.columns, rect.height() / view.image.frame.rows
    return view.mapFromScene(view.box.mapViewToScene(QPointF(column * scale[0], row * scale[1])))


def amber(rgb: np.ndarray) -> np.ndarray:
    """Pixels painted in the measurement colour (the grey image and the dark outline are not)."""
    target = np.array([COLOUR.red(), COLOUR.green(), COLOUR.blue()])
    return np.abs(rgb - target).max(axis=-1) < 40


def amber_near(view, point: QPoint, radius: int = 3) -> bool:
    QApplication.processEvents()
    rgb = view_rgb(view)
    ratio = view.devicePixelRatioF()
    row, column = int(point.y() * ratio), int(point.x() * ratio)
    return bool(amber(rgb[row - radius: row + radius + 1, column - radius: column + radius + 1]).any())


def choose(qtbot, window, key: str) -> None:
    qtbot.keyClick(window.view, key)
    assert window.measurements.tool is not None


def draw(qtbot, window, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A left drag from one image point (column, row) to another."""
    view = window.view
    a, b = at(view, *start), at(view, *end)
    drag(qtbot, view, Qt.MouseButton.LeftButton, a, (b.x() - a.x(), b.y() - a.y()))


def click(qtbot, window, point: tuple[float, float]) -> None:
    qtbot.mouseClick(window.view.viewport(), Qt.MouseButton.LeftButton, pos=at(window.view, *point))


def labels(window) -> list[tuple[str, ...]]:
    return [lines for _, lines in window.measurements.measurements()]


@pytest.fixture
def ct(window, tmp_path):
    """The lung phantom (-600 HU left, 40 HU right, 0.7 mm pixels) on show."""
    window.open_paths([lung_phantom(tmp_path / "ct.dcm")])
    return window.view


def test_a_dragged_length_reads_millimetres_and_is_drawn_with_its_label(qtbot, window, ct):
    assert not amber_near(ct, at(ct, 32, 20))
    choose(qtbot, window, "L")
    draw(qtbot, window, (12, 20), (52, 20))  # 40 pixels of 0.7 mm
    assert labels(window) == [("28.0 mm",)]
    assert amber_near(ct, at(ct, 32, 20)), "the line's middle is painted"
    end = at(ct, 52, 20)
    assert amber_near(ct, QPoint(end.x() + 25, end.y()), radius=8), "the label is written beside the line's end"


def test_the_pointer_and_esc_give_the_left_drag_back_to_window_level(qtbot, window, ct):
    choose(qtbot, window, "L")
    before = ct.voi
    draw(qtbot, window, (10, 30), (40, 50))
    assert ct.voi == before, "drawing does not window"
    qtbot.keyClick(ct, Qt.Key.Key_Escape)
    assert window.measurements.tool is None and window.measurements.actions["pointer"].isChecked()
    draw(qtbot, window, (10, 10), (50, 10))
    assert ct.voi != before and len(labels(window)) == 1, "the pointer windows and draws nothing"


def test_an_angle_from_three_clicks_reads_degrees_and_esc_cancels_a_half_drawn_one(qtbot, window, ct):
    choose(qtbot, window, "A")
    click(qtbot, window, (40, 50))
    click(qtbot, window, (10, 50))
    qtbot.keyClick(ct, Qt.Key.Key_Escape)  # drops the two points, keeps the tool
    assert window.measurements.tool is Kind.ANGLE
    for point in ((50, 10), (20, 10), (20, 40)):
        click(qtbot, window, point)
    assert labels(window) == [("90.0°",)]
    assert amber_near(ct, at(ct, 20, 25)), "the second arm is painted"


@pytest.mark.parametrize(("key", "box", "values", "area"), [
    ("O", ((36, 10), (56, 30)), ("Mean 40.0 HU  SD 0.0", "Min 40  Max 40 HU"), 196 * np.pi / 4),
    ("B", ((22, 10), (42, 30)), ("Mean -280.0 HU  SD 320.0", "Min -600  Max 40 HU"), 196),
])
def test_a_region_reads_hounsfield_units_on_ct(qtbot, window, ct, key, box, values, area):
    choose(qtbot, window, key)
    draw(qtbot, window, *box)  # 20 x 20 pixels of 0.7 mm; the rectangle half on -600 HU, half on 40 HU
    ((measurement, lines),) = window.measurements.measurements()
    assert measurement.kind is {"O": Kind.ELLIPSE, "B": Kind.RECTANGLE}[key]
    assert lines[:2] == values
    assert lines[2].startswith("Area ") and lines[2].endswith(" mm²")
    assert float(lines[2].split()[1]) == pytest.approx(area, abs=1.5), "within the mouse's step of 1/8 pixel"
    assert amber_near(ct, at(ct, box[1][0], (box[0][1] + box[1][1]) / 2)), "the right edge is painted"


def test_measurements_stay_with_their_frame(qtbot, window, tmp_path):
    window.open_paths(write_ct_series(tmp_path, 2, pixel_spacing=0.7))
    view = window.view
    choose(qtbot, window, "L")
    draw(qtbot, window, (10, 20), (50, 20))
    middle = at(view, 30, 20)
    assert amber_near(view, middle)
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert window.frame_index == 1 and labels(window) == [] and not amber_near(view, middle)
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert window.frame_index == 0 and labels(window) == [("28.0 mm",)] and amber_near(view, middle)


def test_select_delete_move_and_undo(qtbot, window, ct):
    tools = window.measurements
    choose(qtbot, window, "L")
    draw(qtbot, window, (10, 10), (50, 10))
    draw(qtbot, window, (10, 40), (30, 40))
    assert labels(window) == [("28.0 mm",), ("14.0 mm",)]
    qtbot.keyClick(ct, Qt.Key.Key_Escape)  # the pointer: a click on a line selects it
    click(qtbot, window, (30, 10))
    qtbot.keyClick(ct, Qt.Key.Key_Delete)
    assert labels(window) == [("14.0 mm",)]
    draw(qtbot, window, (20, 40), (20, 50))  # drag the line by its middle: moved, not windowed
    ((moved, _),) = tools.measurements()
    assert np.ravel(moved.points) == pytest.approx([10, 50, 30, 50], abs=0.2)
    draw(qtbot, window, (30, 50), (40, 50))  # drag its end: longer
    assert float(labels(window)[0][0].removesuffix(" mm")) == pytest.approx(21.0, abs=0.15)
    undo = QKeySequence(bindings.MEASURE_KEYS[5].keys[0])
    for expected in ([("14.0 mm",)], [("14.0 mm",)], [("28.0 mm",), ("14.0 mm",)]):
        qtbot.keyClick(ct, undo[0].key(), undo[0].keyboardModifiers())
        assert labels(window) == expected
    firsts = [m.points[0] for m, _ in tools.measurements()]
    assert np.ravel(firsts) == pytest.approx([10, 10, 10, 40], abs=0.2), "back in drawing order"
    assert amber_near(ct, at(ct, 30, 10)), "the deleted line is drawn again"


def test_the_png_and_the_report_carry_the_measurements(qtbot, window, ui, tmp_path):  # noqa: F811 - fixture
    explained(qtbot, window, ui, tmp_path)  # a 96 x 128 radiograph, Imager Pixel Spacing 0.15 mm
    choose(qtbot, window, "L")
    draw(qtbot, window, (20, 70), (100, 70))
    assert labels(window) == [("12.0 mm (detector)",)]
    assert ui.exports.write_view(tmp_path / "view.png")
    saved = QImage(str(tmp_path / "view.png")).convertToFormat(QImage.Format.Format_RGB888)
    middle = at(window.view, 60, 70) * window.view.devicePixelRatioF()
    colour = saved.pixelColor(middle)
    assert amber(np.array([colour.red(), colour.green(), colour.blue()])), "the line is in the picture"
    assert ui.exports.write("report", tmp_path / "report.html")
    report = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<h2>Measurements</h2>" in report and "12.0 mm (detector)" in report


def test_every_tool_is_in_the_tools_menu_and_help_and_no_key_is_bound_twice(window, ui):  # noqa: F811
    tools_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Tools")
    shortcuts = {a.shortcut().toString() for a in tools_menu.actions()}
    assert {"L", "A", "O", "B", "Del", "Ctrl+Z"} <= shortcuts
    help_keys = {keys for keys, _ in bindings.table()}
    assert {"L", "A", "O", "B", "Esc (on the image)"} <= help_keys
    bound = [key.toString() for action in window.findChildren(type(tools_menu.actions()[0]))
             for key in action.shortcuts()]
    assert len(bound) == len(set(bound)), sorted(k for k in bound if bound.count(k) > 1)
