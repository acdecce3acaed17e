"""The image view on its own: what the reader's mouse does and what reaches the screen."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication

from dicom.corner_text import orientation
from dicom.image import FrameCache, FrameImage
from dicom.pixels import Window
from dicom.series import open_paths
from tests.dicom_factory import write_image, write_radiograph
from tests.viewer.conftest import lung_phantom, turn_wheel
from viewer.image_view import ImageView, shrink


def load(path) -> FrameImage:
    return FrameCache().get(open_paths([path]).all_series()[0].frames[0])


@pytest.fixture(autouse=True)
def every_mouse_move(monkeypatch):
    """pyqtgraph drops moves closer than 10 ms apart; simulated ones come microseconds apart."""
    monkeypatch.setitem(pg.CONFIG_OPTIONS, "mouseRateLimit", -1)


@pytest.fixture
def view(qtbot):
    view = ImageView()
    qtbot.addWidget(view)
    view.resize(600, 500)
    view.show()
    qtbot.waitExposed(view)
    return view


def ct_image(tmp_path, spacing=0.5) -> FrameImage:
    """A 64 x 64 CT: -600 HU on the left half, 40 HU on the right, stored as HU + 1024."""
    return load(lung_phantom(tmp_path / "ct.dcm", spacing))


def screen_point(view: ImageView, row: float, col: float) -> QPoint:
    """Where the centre of an image pixel is on the view's viewport."""
    row_mm, col_mm = view.image.frame.pixel_spacing() or (1.0, 1.0)
    scene = view.box.mapViewToScene(QPointF((col + 0.5) * col_mm, (row + 0.5) * row_mm))
    return view.mapFromScene(scene)


def grey_on_screen(view: ImageView, row: float, col: float) -> int:
    """The grey level actually painted over an image pixel."""
    QApplication.processEvents()
    picture = view.viewport().grab().toImage()
    colour = picture.pixelColor(screen_point(view, row, col))
    return colour.red()


def drag(
    qtbot, view: ImageView, button: Qt.MouseButton, start: QPoint, delta: tuple[int, int], steps: int = 10
) -> None:
    """Press, move in steps, release: a real mouse drag on the viewport."""
    viewport = view.viewport()
    qtbot.mousePress(viewport, button, pos=start)
    for i in range(1, steps + 1):
        qtbot.mouseMove(viewport, QPoint(start.x() + delta[0] * i // steps, start.y() + delta[1] * i // steps))
    qtbot.mouseRelease(viewport, button, pos=QPoint(start.x() + delta[0], start.y() + delta[1]))


def test_left_drag_right_widens_and_down_raises_the_level(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    before = view.voi
    drag(qtbot, view, Qt.MouseButton.LeftButton, QPoint(300, 250), (100, 0))
    widened = view.voi
    assert widened.width > before.width and widened.center == pytest.approx(before.center)
    drag(qtbot, view, Qt.MouseButton.LeftButton, QPoint(300, 250), (0, 80))
    assert view.voi.center > widened.center and view.voi.width == pytest.approx(widened.width)


def test_window_drag_changes_only_the_table_not_the_pixels(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    pixels = view.image_item.image
    grey_before = grey_on_screen(view, 10, 48)
    drag(qtbot, view, Qt.MouseButton.LeftButton, QPoint(300, 250), (0, 60))
    assert view.image_item.image is pixels
    assert grey_on_screen(view, 10, 48) < grey_before  # a higher level darkens 40 HU


def test_wheel_asks_for_the_next_image_when_turned_down(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    viewport = view.viewport()
    centre = QPointF(300, 250)

    def wheel(notches: int) -> None:
        turn_wheel(viewport, notches, centre)

    with qtbot.waitSignal(view.step_requested) as down:
        wheel(-1)
    with qtbot.waitSignal(view.step_requested) as up:
        wheel(2)
    assert (down.args, up.args) == ([1], [-2])


def test_right_drag_down_zooms_in_about_the_pressed_point(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    zoom = view.zoom
    pressed = screen_point(view, 20, 20)
    drag(qtbot, view, Qt.MouseButton.RightButton, pressed, (0, 60))
    assert view.zoom > zoom * 1.5
    assert screen_point(view, 20, 20) == pressed


def test_middle_drag_pans_with_the_mouse(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    before = screen_point(view, 32, 32)
    drag(qtbot, view, Qt.MouseButton.MiddleButton, QPoint(300, 250), (40, -30))
    after = screen_point(view, 32, 32)
    assert (after.x() - before.x(), after.y() - before.y()) == pytest.approx((40, -30), abs=1)


def test_hovering_reports_the_row_and_column(qtbot, view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    with qtbot.waitSignal(view.cursor_moved) as moved:
        qtbot.mouseMove(view.viewport(), screen_point(view, 12, 50))
    assert moved.args == [12, 50]


def test_new_frame_opens_fitted_and_centred(view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    top_left, bottom_right = screen_point(view, -0.5, -0.5), screen_point(view, 63.5, 63.5)
    assert top_left.y() == pytest.approx(0, abs=1) and bottom_right.y() == pytest.approx(500, abs=1)
    assert top_left.x() + bottom_right.x() == pytest.approx(600, abs=2)


def test_pixel_spacing_gives_square_millimetres(view, tmp_path):
    """Rows 2 mm apart and columns 1 mm apart: the image is twice as tall as wide on screen."""
    view.show_image(ct_image(tmp_path, spacing=(2.0, 1.0)), (0, 1))
    top_left, bottom_right = screen_point(view, -0.5, -0.5), screen_point(view, 63.5, 63.5)
    width, height = bottom_right.x() - top_left.x(), bottom_right.y() - top_left.y()
    assert height / width == pytest.approx(2.0, rel=0.02)


def test_row_zero_is_at_the_top(view, tmp_path):
    pixels = np.zeros((64, 64), dtype=np.uint16)
    pixels[:8] = 4000
    view.show_image(load(write_image(tmp_path / "top.dcm", pixels, bits_stored=12, windows=[(2000, 4000)])), (0, 1))
    assert grey_on_screen(view, 3, 32) > 200 and grey_on_screen(view, 60, 32) < 50


def test_monochrome1_is_shown_inverted(view, tmp_path):
    """The factory writes the same picture either way: bright spine, dark lungs, black air."""
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        view.show_image(load(write_radiograph(tmp_path / f"{photometric}.dcm", photometric=photometric)), (0, 1))
        assert view.inverted is (photometric == "MONOCHROME1")
        assert grey_on_screen(view, 128, 128) > 200, photometric  # spine
        assert grey_on_screen(view, 2, 2) < 40, photometric  # air


def test_invert_swaps_black_and_white(view, tmp_path):
    view.show_image(ct_image(tmp_path), (0, 1))
    view.set_voi(Window(-600, 1500, "Lung"))
    lung, tissue = grey_on_screen(view, 10, 10), grey_on_screen(view, 10, 50)
    view.toggle_invert()
    assert view.inverted
    assert grey_on_screen(view, 10, 10) == pytest.approx(255 - lung, abs=1)
    assert grey_on_screen(view, 10, 50) == pytest.approx(255 - tissue, abs=1)
    view.reset()
    assert not view.inverted and view.voi.label == "SOFT TISSUE"


def test_zoomed_out_shows_an_area_average_not_every_other_pixel(view, tmp_path):
    """A one-pixel checkerboard shrunk on screen must look mid-grey, not black or white."""
    pixels = (np.indices((1024, 1024)).sum(axis=0) % 2 * 4000).astype(np.uint16)
    view.show_image(load(write_image(tmp_path / "checker.dcm", pixels, bits_stored=12, windows=[(2000, 4000)])), (0, 1))
    assert view.zoom < 0.5
    QApplication.processEvents()
    picture = view.viewport().grab().toImage()
    greys = [
        picture.pixelColor(screen_point(view, row, col)).red()
        for row in range(300, 700, 7)
        for col in range(300, 700, 7)
    ]
    assert min(greys) > 100 and max(greys) < 156


def test_shrink_averages_blocks():
    array = np.array([[0, 2, 4, 6], [2, 4, 6, 8], [9, 9, 9, 9]], dtype=np.uint16)
    assert shrink(array, 2).tolist() == [[2, 6]]


def test_corner_text_names_patient_image_and_window(view, tmp_path):
    image = load(
        write_image(
            tmp_path / "a.dcm",
            modality="CT",
            slope=1,
            intercept=-1024,
            windows=[(40, 400, "SOFT TISSUE")],
            extra={"PatientName": "Doe^Jane", "PatientID": "P123"},
        )
    )
    view.show_image(image, (4, 30))
    text = view.corner_text()
    assert text[Qt.Corner.TopLeftCorner][:2] == ["Doe, Jane", "ID P123"]
    assert "Im 5/30" in text[Qt.Corner.BottomLeftCorner]
    assert text[Qt.Corner.BottomRightCorner][0] == "W 400 L 40  SOFT TISSUE"
    view.set_corner_text_visible(False)
    assert not view.corner_text_visible


def test_a_frame_that_cannot_be_decoded_shows_the_reason(view, tmp_path):
    image = ct_image(tmp_path)
    view.show_image(image, (0, 1))
    view.show_error(image.frame, "This image cannot be shown: truncated pixel data", (0, 1))
    assert view.image is None and view.message.endswith("truncated pixel data")
    assert view.image_item.image is None


def test_orientation_letters_follow_the_patient(tmp_path):
    axial = load(write_image(tmp_path / "ax.dcm", orientation=[1, 0, 0, 0, 1, 0], position=(0, 0, 0))).frame
    assert orientation(axial) == type(orientation(axial))("R", "A", "L", "P")
    chest = load(write_radiograph(tmp_path / "pa.dcm")).frame  # PatientOrientation L\F
    labels = orientation(chest)
    assert (labels.left, labels.top, labels.right, labels.bottom) == ("R", "H", "L", "F")
