"""The main window: opening, moving through a study with the keys, presets and reporting."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from tests.dicom_factory import write_ct_series, write_junk, write_truncated
from tests.viewer.conftest import lung_phantom, turn_wheel
from viewer.main_window import MainWindow


@pytest.fixture
def ct_folder(tmp_path) -> Path:
    folder = tmp_path / "ct"
    write_ct_series(folder, 12, series_number=1)
    return folder


def screen_point(window: MainWindow, row: int, col: int) -> QPoint:
    """The viewport position of an image pixel's centre."""
    view = window.view
    row_mm, col_mm = view.image.frame.pixel_spacing() or (1.0, 1.0)
    return view.mapFromScene(view.box.mapViewToScene(QPointF((col + 0.5) * col_mm, (row + 0.5) * row_mm)))


def grey_on_screen(window: MainWindow, row: int, col: int) -> int:
    QApplication.processEvents()
    return window.view.viewport().grab().toImage().pixelColor(screen_point(window, row, col)).red()


def press(qtbot, window: MainWindow, *keys: str) -> None:
    """Type keys at the image view, as the reader does."""
    for key in keys:
        qtbot.keyClick(window.view, key) if len(key) == 1 else qtbot.keyClick(
            window.view, getattr(Qt.Key, f"Key_{key}")
        )


def slice_location(window: MainWindow) -> float:
    return float(window.view.image.frame.header.SliceLocation)


def test_keys_page_through_the_series_in_anatomical_order(qtbot, window, ct_folder):
    assert window.open_paths([ct_folder])
    series = window.current_series
    assert window.frame_index == 0 and len(series.frames) == 12
    locations = [slice_location(window)]
    with qtbot.waitSignal(window.frame_shown) as shown:
        press(qtbot, window, "Down")
    assert shown.args == [series.frames[1]]
    press(qtbot, window, "Down")
    assert window.frame_index == 2
    locations.append(slice_location(window))
    press(qtbot, window, "Up")
    assert window.frame_index == 1
    press(qtbot, window, "End")
    assert window.frame_index == 11
    press(qtbot, window, "Down")
    assert window.frame_index == 11  # stops at the end
    press(qtbot, window, "Home")
    assert window.frame_index == 0
    press(qtbot, window, "PageDown")
    assert window.frame_index == 10
    assert locations == sorted(locations)
    assert window.view.corner_text()[Qt.Corner.BottomLeftCorner][0] == "Im 11/12"


def test_wheel_pages_and_keeps_the_readers_window(qtbot, window, ct_folder):
    window.open_paths([ct_folder])
    window.view.adjust_window(50, 20)
    adjusted = window.view.voi
    viewport = window.view.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)
    for notches in (-1, -1, -1, 1):  # three notches down, one up
        turn_wheel(viewport, notches, centre)
    assert window.frame_index == 2
    assert window.view.voi == adjusted


def test_left_and_right_change_series(qtbot, window, tmp_path):
    write_ct_series(tmp_path / "a", 3, series_number=1, study_uid="1.2.3")
    write_ct_series(tmp_path / "b", 5, series_number=2, study_uid="1.2.3")
    window.open_paths([tmp_path])
    press(qtbot, window, "Down", "Right")
    assert (window.series_index, window.frame_index) == (1, 0)
    assert window.browser.current_index() == 1
    press(qtbot, window, "Right")
    assert window.series_index == 1
    press(qtbot, window, "Left")
    assert window.series_index == 0


def test_ct_presets_window_in_hounsfield_units(qtbot, window, tmp_path):
    window.open_paths([lung_phantom(tmp_path / "lung.dcm")])
    assert window.view.voi.label == "SOFT TISSUE"  # key 1, the file's own, is the default
    press(qtbot, window, "2")
    assert (window.view.voi.center, window.view.voi.width) == (-600, 1500)
    assert grey_on_screen(window, 20, 10) == pytest.approx(128, abs=1)  # -600 HU is mid-grey
    press(qtbot, window, "6")
    assert window.view.voi.label == "Brain"
    assert grey_on_screen(window, 20, 10) == 0 and grey_on_screen(window, 20, 50) == pytest.approx(128, abs=1)
    press(qtbot, window, "1")
    assert window.view.voi.label == "SOFT TISSUE"


def test_invert_key_and_reset(qtbot, window, tmp_path):
    window.open_paths([lung_phantom(tmp_path / "lung.dcm")])
    tissue = grey_on_screen(window, 20, 50)
    press(qtbot, window, "I")
    assert grey_on_screen(window, 20, 50) == pytest.approx(255 - tissue, abs=1)
    fitted = window.view.zoom
    window.view.zoom_by(3)
    press(qtbot, window, "Space")
    assert grey_on_screen(window, 20, 50) == tissue
    assert window.view.zoom == pytest.approx(fitted)


def test_status_bar_shows_the_hounsfield_value_under_the_cursor(qtbot, window, tmp_path):
    window.open_paths([lung_phantom(tmp_path / "lung.dcm")])
    qtbot.mouseMove(window.view.viewport(), screen_point(window, 5, 40))
    qtbot.waitUntil(lambda: window.pixel_label.text() != "")
    assert window.pixel_label.text() == "stored 1064 → 40 HU"
    assert window.position_label.text() == "x 40  y 5"
    assert window.window_label.text() == "W 400 L 40  SOFT TISSUE"


def test_a_corrupt_file_is_reported_and_the_rest_opens(window, ct_folder):
    write_junk(ct_folder / "junk.dcm")
    assert window.open_paths([ct_folder])
    assert len(window.current_series.frames) == 12
    assert window.statusBar().currentMessage() == "1 file could not be opened"
    box = window.error_box
    assert box is not None and box.isVisible() and not box.isModal()
    assert "junk.dcm: " in box.detailedText()
    box.close()


def test_opening_only_bad_files_keeps_the_study_shown(window, ct_folder, tmp_path):
    window.open_paths([ct_folder])
    shown = window.view.image
    assert not window.open_paths([write_junk(tmp_path / "a.bin"), write_junk(tmp_path / "b.bin", seed=1)])
    assert window.view.image is shown and len(window.current_series.frames) == 12
    assert window.statusBar().currentMessage().startswith("2 files could not be opened")
    assert window.error_box.detailedText().count("\n") == 1


def test_pixels_that_fail_to_decode_show_a_message(window, tmp_path):
    window.open_paths([write_truncated(tmp_path / "cut.dcm", modality="CT")])
    assert window.view.image is None
    assert window.view.message.startswith("This image cannot be shown:")


def test_recent_paths_are_remembered_most_recent_first(window, ct_folder, tmp_path, qt_settings):
    single = lung_phantom(tmp_path / "lung.dcm")
    window.open_paths([ct_folder])
    window.open_paths([single])
    window.open_paths([write_junk(tmp_path / "junk.bin")])  # nothing opened: not remembered
    assert window.recent_paths() == [str(single.resolve()), str(ct_folder.resolve())]
    window._fill_recent_menu()
    assert [a.text() for a in window.recent_menu.actions()] == window.recent_paths()
    assert MainWindow(settings=qt_settings).recent_paths() == window.recent_paths()


def test_recent_list_keeps_ten(window, tmp_path):
    for i in range(12):
        window.open_paths([lung_phantom(tmp_path / f"{i}.dcm")])
    recent = window.recent_paths()
    assert len(recent) == 10 and recent[0].endswith("11.dcm")


def test_dropping_files_opens_them(window, ct_folder):
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(ct_folder))])
    event = QDropEvent(
        QPointF(100, 100), Qt.DropAction.CopyAction, data, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    window.dropEvent(event)
    assert len(window.current_series.frames) == 12


def test_layout_is_kept_between_sessions(qtbot, qt_settings):
    first = MainWindow(settings=qt_settings)
    qtbot.addWidget(first)
    first.tags_dock.hide()
    first.resize(640, 480)  # within the offscreen screen, which restoreGeometry clamps to
    first.close()
    second = MainWindow(settings=qt_settings)
    qtbot.addWidget(second)
    assert second.size().toTuple() == (640, 480) and second.tags_dock.isHidden()


def test_shortcuts_dialog_lists_every_binding(qtbot, window):
    window.show_shortcuts()
    qtbot.addWidget(window.shortcuts_dialog)  # closed after the test: a tall dialog left open takes later tests' mouse
    table = window.shortcuts_dialog.table
    keys = [table.item(row, 0).text() for row in range(table.rowCount())]
    assert {"Left drag", "Right drag", "Middle drag", "Wheel", "Space or R", "I", "1"} <= set(keys)
