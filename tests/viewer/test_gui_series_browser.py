"""The series browser groups series under their patient and study, and the series keys still walk through them."""

from __future__ import annotations

from PySide6.QtCore import Qt

from tests.dicom_factory import write_ct_series, write_radiograph


def study(path, patient: tuple[str, str], uid: str, date: str, description: str, number: int, ct: bool = False):
    """One series of a study of a patient (name, ID)."""
    extra = {"PatientName": patient[0], "PatientID": patient[1], "StudyDate": date, "StudyDescription": description}
    if ct:
        return write_ct_series(path, 2, study_uid=uid, series_number=number, extra=extra)
    return write_radiograph(path, study_uid=uid, series_number=number, extra=extra)


def open_two_patients(window, tmp_path):
    """Doe has a chest CT and, later, two radiographs; Roe one radiograph, met between Doe's studies."""
    doe, roe = ("Doe^Jane", "P1"), ("Roe^Rick", "P2")
    study(tmp_path / "a" / "ct", doe, "1.1", "20240105", "CT CHEST", 1, ct=True)
    study(tmp_path / "b" / "dx.dcm", roe, "2.1", "20230301", "CHEST PA", 1)
    study(tmp_path / "c" / "dx1.dcm", doe, "1.2", "20240620", "CHEST PA", 1)
    study(tmp_path / "c" / "dx2.dcm", doe, "1.2", "20240620", "CHEST PA", 2)
    window.open_paths([tmp_path])


def texts(item) -> list:
    return [item.text(0), [texts(item.child(k)) for k in range(item.childCount())]]


def test_series_are_grouped_by_patient_then_study(qtbot, window, tmp_path):
    open_two_patients(window, tmp_path)
    tree = window.browser
    assert tree.topLevelItemCount() == 2
    doe, roe = tree.topLevelItem(0), tree.topLevelItem(1)
    assert doe.text(0) == "Doe, Jane  ID P1" and roe.text(0) == "Roe, Rick  ID P2"
    assert [doe.child(k).text(0) for k in range(doe.childCount())] == [
        "2024-06-20  CHEST PA", "2024-01-05  CT CHEST"], "the newest study first"
    assert doe.child(0).childCount() == 2 and roe.child(0).childCount() == 1
    assert doe.child(1).child(0) is tree.series_item(2)
    assert roe.child(0).child(0) is tree.series_item(3), "the tree's order is the order Left/Right walk"
    assert not doe.flags() & Qt.ItemFlag.ItemIsSelectable, "a heading is never chosen as a series"


def test_right_walks_the_series_across_studies_and_the_tree_follows(qtbot, window, tmp_path):
    open_two_patients(window, tmp_path)
    for expected in (1, 2, 3):
        qtbot.keyClick(window.view, Qt.Key.Key_Right)
        assert window.series_index == expected and window.browser.current_index() == expected
    assert window.series[3].frames[0].header.PatientID == "P2"
    qtbot.keyClick(window.view, Qt.Key.Key_Left)
    assert window.browser.currentItem() is window.browser.series_item(2)


def test_clicking_a_heading_chooses_nothing(qtbot, window, tmp_path):
    open_two_patients(window, tmp_path)
    tree = window.browser
    heading = tree.topLevelItem(1)
    qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=tree.visualItemRect(heading).center())
    assert window.series_index == 0
