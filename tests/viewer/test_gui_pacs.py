"""The PACS windows against the private Orthanc: search, retrieve into the view, a down node, send back."""

from __future__ import annotations

import dataclasses
import gc

import pytest

from pacs import cache as pacs_cache
from pacs.nodes import PacsSettings, load_settings, password, save_settings
from tests.pacs import conftest as pacs_fixtures
from tests.pacs.conftest import PATIENT_ID, dimse_node
from tests.pacs.orthanc import free_port
from tests.viewer.conftest import view_rgb
from tests.viewer.test_gui_export import explained
from viewer.pacs_window import PROGRESS_COLUMN

#: The private Orthanc of tests/pacs, with its studies, a settings file and keyring of the test's own.
orthanc, studies = pacs_fixtures.orthanc, pacs_fixtures.studies
settings_file, memory_keyring = pacs_fixtures.settings_file, pacs_fixtures.memory_keyring


@pytest.fixture
def pacs_settings(orthanc, settings_file, tmp_path):
    """The test Orthanc configured as node ``test``, with a cache of the test's own."""
    save_settings(PacsSettings(nodes=[dimse_node(orthanc)], cache_folder=str(tmp_path / "cache"),
                               move_port=orthanc.move_port))
    return settings_file


@pytest.fixture
def pacs_window(qtbot, window, pacs_settings):
    window.open_from_pacs()
    yield window.pacs_window
    window.pacs_window.close()


def table_text(tree) -> list[str]:
    """Every cell the results table shows, studies and their series."""
    items = [tree.topLevelItem(k) for k in range(tree.topLevelItemCount())]
    items += [item.child(k) for item in list(items) for k in range(item.childCount())]
    return [item.text(column) for item in items for column in range(tree.columnCount())]


def search(qtbot, pacs_window, **fields: str) -> None:
    for name, text in fields.items():
        getattr(pacs_window, name).setText(text)
    pacs_window.search_button.click()
    qtbot.waitUntil(lambda: pacs_window.search_button.isEnabled(), timeout=20000)


def test_a_search_shows_the_study_and_its_series(qtbot, pacs_window, studies):
    assert pacs_window.chooser.currentText() == "test"
    search(qtbot, pacs_window, patient_id=PATIENT_ID)
    assert pacs_window.tree.topLevelItemCount() == 1, pacs_window.status.text()
    shown = table_text(pacs_window.tree)
    assert {"Pacsfixture, Alice", PATIENT_ID, "2024-01-15", "CT", "Chest CT with contrast", "ACC42", "12"} <= set(shown)
    assert pacs_window.status.text() == "1 study found"
    pacs_window.tree.topLevelItem(0).setExpanded(True)
    qtbot.waitUntil(lambda: pacs_window.tree.topLevelItem(0).childCount() == 1, timeout=20000)
    series = pacs_window.tree.topLevelItem(0).child(0)
    assert [series.text(column) for column in (0, 3, 7)] == ["Series 1", "CT", "12"]


def test_retrieve_shows_the_first_image_before_the_series_is_whole(qtbot, window, pacs_window, studies,
                                                                   monkeypatch):
    store = pacs_cache.Cache.store

    def slow_store(self, *args):  # a slow network: the series takes about a second to arrive
        pacs_cache.time.sleep(0.08)
        return store(self, *args)

    monkeypatch.setattr(pacs_cache.Cache, "store", slow_store)
    first_shown: list[int] = []
    window.frame_shown.connect(lambda _frame: first_shown.append(len(window.current_series.frames)))
    search(qtbot, pacs_window, accession="ACC42")
    pacs_window.tree.setCurrentItem(pacs_window.tree.topLevelItem(0))
    pacs_window.retrieve_button.click()
    assert pacs_window.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: bool(first_shown), timeout=20000)
    assert pacs_window.retrieving is not None, "the first image is on screen while the retrieve goes on"
    qtbot.waitUntil(lambda: pacs_window.retrieving is None, timeout=30000)
    assert first_shown[0] < 12 and len(window.current_series.frames) == 12
    assert pacs_window.status.text() == "Retrieved 12 images of 1 series (C-GET)"
    rgb = view_rgb(window.view)
    assert rgb.std() > 5, "the view shows an image, not a blank"
    bar = pacs_window.tree.itemWidget(pacs_window.tree.topLevelItem(0).child(0), PROGRESS_COLUMN)
    assert (bar.value(), bar.maximum()) == (12, 12)


# pynetdicom leaves the socket of a failed connection unclosed (see tests/pacs/test_failures.py): collected here.
@pytest.mark.filterwarnings("ignore:Exception ignored in:pytest.PytestUnraisableExceptionWarning")
def test_a_node_that_is_down_gives_one_line_and_the_window_carries_on(qtbot, pacs_window, studies):
    pacs_window.chooser.setCurrentText(f"NOBODY@127.0.0.1:{free_port()}")
    search(qtbot, pacs_window, patient_id=PATIENT_ID)
    line = pacs_window.status.text()
    assert line.startswith("Search failed: ") and "\n" not in line and pacs_window.tree.topLevelItemCount() == 0
    gc.collect()
    pacs_window.chooser.setCurrentText("test")
    search(qtbot, pacs_window, patient_id="")
    assert pacs_window.tree.topLevelItemCount() >= 2


def test_nodes_dialog_keeps_the_password_in_the_keyring_and_verifies(qtbot, orthanc, pacs_settings,
                                                                    memory_keyring):
    from viewer.pacs_nodes_dialog import PacsNodesDialog

    dialog = PacsNodesDialog()
    qtbot.addWidget(dialog)
    dialog.verify_button.click()
    qtbot.waitUntil(lambda: dialog.verify_button.isEnabled(), timeout=20000)
    assert "C-ECHO ok" in dialog.status.text()
    dialog.add_button.click()
    form = dialog.form
    form.name.setText("web")
    form.kind.setCurrentIndex(1)
    form.url.setText(orthanc.dicomweb)
    form.username.setText("reader")
    form.password.setText("s3cret-word")
    dialog.verify_button.click()
    qtbot.waitUntil(lambda: dialog.verify_button.isEnabled(), timeout=20000)
    assert "QIDO-RS ok" in dialog.status.text()
    assert dialog.save()
    assert "s3cret-word" not in pacs_settings.read_text()
    web = load_settings().node("web")
    assert web.url == orthanc.dicomweb and password(web) == "s3cret-word"
    assert dataclasses.asdict(load_settings().node("test")) == dataclasses.asdict(dimse_node(orthanc))


def test_send_of_an_explanation_arrives_in_orthanc(qtbot, window, ui, orthanc, pacs_settings,
                                                   tmp_path):
    from viewer.pacs_send import SendDialog

    source = explained(qtbot, window, ui, tmp_path)
    assert ui.exports.send.action.isEnabled()
    ui.exports.send.open_dialog()
    dialog: SendDialog = ui.exports.send.dialog
    assert dialog.chooser.currentText() == "test"
    dialog.send_button.click()
    qtbot.waitUntil(lambda: dialog.status.text().endswith("objects sent"), timeout=30000)
    assert dialog.status.text() == "2 of 2 objects sent"
    results = [dialog.objects.topLevelItem(k).text(1) for k in range(2)]
    assert all(text.startswith("sent") for text in results), results
    held = [orthanc.get(f"/instances/{instance['ID']}/simplified-tags")
            for instance in orthanc.find_instances(PatientID="PID-4711")]
    assert sorted(tags["SOPClassUID"] for tags in held) == ["1.2.840.10008.5.1.4.1.1.30", "1.2.840.10008.5.1.4.1.1.7"]
    assert {tags["StudyInstanceUID"] for tags in held} == {source.StudyInstanceUID}, "in the patient's own study"
    dialog.close()
