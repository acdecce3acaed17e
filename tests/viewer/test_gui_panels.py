"""The series browser and the tag panel."""

from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from dicom.image import FrameCache
from dicom.series import open_paths
from tests.dicom_factory import write_ct_series, write_radiograph, write_truncated
from viewer.series_browser import SeriesBrowser, thumbnail
from viewer.tag_panel import TagPanel


def test_thumbnails_arrive_and_clicking_selects_a_series(qtbot, tmp_path):
    write_ct_series(tmp_path / "ct", 5, series_number=1, study_uid="1.2.3")
    write_radiograph(tmp_path / "dx.dcm", study_uid="1.2.3", series_number=2)
    browser = SeriesBrowser(FrameCache())
    qtbot.addWidget(browser)
    browser.set_studies(open_paths([tmp_path]).studies)
    assert browser.series_count == 2 and browser.series_item(1).text(0).startswith("2: DX (1)")
    placeholder = browser.series_item(1).icon(0).cacheKey()
    qtbot.waitUntil(lambda: all(browser.series_item(i).icon(0).cacheKey() != placeholder for i in range(2)))
    with qtbot.waitSignal(browser.series_selected) as selected:
        qtbot.mouseClick(
            browser.viewport(), Qt.MouseButton.LeftButton, pos=browser.visualItemRect(browser.series_item(1)).center()
        )
    assert selected.args == [1]
    browser.shutdown()


def test_thumbnail_keeps_the_aspect_of_millimetres(tmp_path):
    path = write_radiograph(tmp_path / "dx.dcm", rows=100, cols=200, imager_pixel_spacing=(0.4, 0.1))
    frame = open_paths([path]).all_series()[0].frames[0]
    image = thumbnail(FrameCache(), frame, size=100)
    assert image.format() == QImage.Format.Format_Grayscale8
    assert (image.width(), image.height()) == (50, 100)  # 20 mm wide, 40 mm tall


def test_a_series_that_cannot_be_decoded_keeps_its_placeholder(qtbot, tmp_path):
    write_truncated(tmp_path / "cut.dcm")
    browser = SeriesBrowser(FrameCache())
    qtbot.addWidget(browser)
    browser.set_studies(open_paths([tmp_path]).studies)
    placeholder = browser.series_item(0).icon(0).cacheKey()
    assert browser.wait_for_thumbnails()
    qtbot.wait(0)
    assert browser.series_item(0).icon(0).cacheKey() == placeholder


def header() -> Dataset:
    dataset = Dataset()
    dataset.PatientName = "Doe^Jane"
    dataset.Modality = "CT"
    dataset.ImageType = ["ORIGINAL", "PRIMARY"]
    item = Dataset()
    item.CodeMeaning = "Chest"
    dataset.AnatomicRegionSequence = Sequence([item])
    return dataset


def rows(panel: TagPanel) -> list[list[str]]:
    tree = panel.tree
    return [[tree.topLevelItem(i).text(c) for c in range(4)] for i in range(tree.topLevelItemCount())]


def test_tag_panel_lists_tag_keyword_vr_and_value(qtbot):
    panel = TagPanel()
    qtbot.addWidget(panel)
    panel.set_dataset(header())
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 4)
    assert rows(panel) == [
        ["(0008,0008)", "ImageType", "CS", "ORIGINAL\\PRIMARY"],
        ["(0008,0060)", "Modality", "CS", "CT"],
        ["(0008,2218)", "AnatomicRegionSequence", "SQ", "1 item"],
        ["(0010,0010)", "PatientName", "PN", "Doe^Jane"],
    ]
    sequence = panel.tree.topLevelItem(2)
    assert sequence.childCount() == 0  # filled in only when opened
    sequence.setExpanded(True)
    assert sequence.child(0).text(1) == "Item 1" and sequence.child(0).child(0).text(3) == "Chest"


def test_tag_filter_finds_values_inside_sequences(qtbot):
    panel = TagPanel()
    qtbot.addWidget(panel)
    panel.set_dataset(header())
    panel.filter.setText("chest")
    qtbot.waitUntil(lambda: panel.tree.topLevelItemCount() == 1)
    sequence = panel.tree.topLevelItem(0)
    assert sequence.text(1) == "AnatomicRegionSequence" and sequence.isExpanded()
    assert sequence.child(0).child(0).text(1) == "CodeMeaning"
    panel.filter.setText("0010,0010")
    qtbot.waitUntil(lambda: rows(panel) == [["(0010,0010)", "PatientName", "PN", "Doe^Jane"]])
