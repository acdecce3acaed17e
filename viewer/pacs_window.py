"""File > Open from PACS: search a PACS, expand studies to their series, retrieve into the viewer.

Every call to the PACS runs in a :class:`~viewer.pacs_job.PacsJob`, so a slow or absent PACS
never freezes the viewer; what goes wrong is one line in the window's status. A retrieve goes
series by series into the retrieve cache (:class:`pacs.cache.Cache`), with a progress bar per
series. The viewer opens the first series folder as soon as its first instance is whole, then
reads the folders again every :data:`REFRESH_MS` while more arrive: the reader sees the first
image long before a large series is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pydicom.valuerep import PersonName
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from pacs.cache import Cache
from pacs.client import open_client
from pacs.errors import PacsError
from pacs.nodes import Node
from pacs.records import Retrieved, Series, Study, StudyQuery, parse_date_range
from viewer.pacs_job import Jobs, PacsJob
from viewer.pacs_node_chooser import NodeChooser

COLUMNS = ("Patient", "Patient ID", "Date", "Modality", "Description", "Accession", "Series", "Images", "Retrieved")
PROGRESS_COLUMN = COLUMNS.index("Retrieved")
MODALITIES = ("", "CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "RF", "OT")
#: How often the viewer reads the series folders again while instances arrive.
REFRESH_MS = 500
KEY = Qt.ItemDataRole.UserRole


class Viewer(Protocol):
    """What the window asks of the main window."""

    def open_paths(self, paths: Sequence[str | Path]) -> bool: ...

    def refresh_paths(self, paths: Sequence[str | Path]) -> None: ...


@dataclass(frozen=True)
class Arrived:
    """One instance is whole in the cache."""

    series_uid: str
    path: Path


@dataclass(frozen=True)
class SeriesFound:
    """The series of a study a retrieve had to ask for, since the study was not expanded."""

    study_uid: str
    series: list[Series]


@dataclass(frozen=True)
class SeriesDone:
    """One series is retrieved (or stopped); its folder in the cache."""

    folder: Path
    result: Retrieved


def person(name: str) -> str:
    """``Doe^Jane`` as a reader writes it: ``Doe, Jane``."""
    return PersonName(name).family_comma_given() if name else ""


def date(value: str) -> str:
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if len(value) == 8 and value.isdigit() else value


def count(value: int | None) -> str:
    return "" if value is None else str(value)


class PacsWindow(QWidget):
    """The query/retrieve window of one viewer; one retrieve at a time, searches alongside it."""

    def __init__(self, viewer: Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Open from PACS – Lightbox")
        self.viewer = viewer
        self.jobs = Jobs(self)
        self.retrieving: PacsJob | None = None
        self.opened: list[Path] = []
        self.results: list[Retrieved] = []
        self.series_items: dict[str, QTreeWidgetItem] = {}
        self.refresh_timer = QTimer(self, singleShot=True, interval=REFRESH_MS)
        self.refresh_timer.timeout.connect(self._refresh_viewer)

        self.chooser = NodeChooser()
        self.nodes_button = QPushButton("Nodes…")
        self.patient_name, self.patient_id, self.accession, self.description = (QLineEdit() for _ in range(4))
        self.date_from, self.date_to = QLineEdit(), QLineEdit()
        for field in (self.date_from, self.date_to):
            field.setPlaceholderText("YYYY-MM-DD")
        self.patient_name.setPlaceholderText("Doe^J, or with * and ?")
        self.modality = QComboBox()
        self.modality.setEditable(True)
        self.modality.addItems(MODALITIES)
        self.search_button = QPushButton("Search")
        self.search_button.setDefault(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.retrieve_button, self.cancel_button = QPushButton("Retrieve"), QPushButton("Cancel")
        self.retrieve_button.setToolTip("Retrieve the selected studies or series and show them as they arrive")
        self.status = QLabel("Choose a PACS and search")
        self._lay_out()

        self.nodes_button.clicked.connect(self.edit_nodes)
        self.search_button.clicked.connect(self.search)
        for field in (self.patient_name, self.patient_id, self.accession, self.description, self.date_from,
                      self.date_to):
            field.returnPressed.connect(self.search)
        self.tree.itemExpanded.connect(self.expand)
        self.tree.itemSelectionChanged.connect(self._update_buttons)
        self.tree.itemDoubleClicked.connect(lambda _item, _column: self.retrieve())
        self.retrieve_button.clicked.connect(self.retrieve)
        self.cancel_button.clicked.connect(self.cancel)
        self._update_buttons()
        self.resize(1100, 560)

    def _lay_out(self) -> None:
        node_row = QHBoxLayout()
        node_row.addWidget(QLabel("PACS"))
        node_row.addWidget(self.chooser, 1)
        node_row.addWidget(self.nodes_button)
        left, right = QFormLayout(), QFormLayout()
        dates = QHBoxLayout()
        dates.addWidget(self.date_from)
        dates.addWidget(QLabel("to"))
        dates.addWidget(self.date_to)
        left.addRow("Patient name", self.patient_name)
        left.addRow("Patient ID", self.patient_id)
        left.addRow("Study date", dates)
        right.addRow("Modality", self.modality)
        right.addRow("Accession", self.accession)
        right.addRow("Description", self.description)
        fields = QHBoxLayout()
        fields.addLayout(left, 1)
        fields.addLayout(right, 1)
        fields.addWidget(self.search_button, 0, Qt.AlignmentFlag.AlignBottom)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.retrieve_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(node_row)
        layout.addLayout(fields)
        layout.addWidget(self.tree, 1)
        layout.addLayout(buttons)

    def say(self, text: str) -> None:
        """One line in the status, whatever the PACS said."""
        self.status.setText(text.splitlines()[0] if text else "")

    def edit_nodes(self) -> None:
        from viewer.pacs_nodes_dialog import PacsNodesDialog

        dialog = PacsNodesDialog(self)
        dialog.finished.connect(lambda _result: self.say(self.chooser.reload()))
        dialog.open()

    # --- searching

    def query(self) -> StudyQuery:
        """The study filters of the fields; ValueError with one line for a date that is not one."""
        start, end = self.date_from.text().strip(), self.date_to.text().strip()
        dates = parse_date_range(f"{start}-{end}") if start or end else ""
        return StudyQuery(patient_id=self.patient_id.text().strip(), patient_name=self.patient_name.text().strip(),
                          date_range=dates, modality=self.modality.currentText().strip(),
                          accession=self.accession.text().strip(), description=self.description.text().strip())

    def search(self) -> None:
        try:
            node, query = self.chooser.node(), self.query()
        except (PacsError, ValueError) as error:
            self.say(str(error))
            return
        self.search_button.setEnabled(False)
        self.say(f"Searching {node.address()}…")
        move_port = self.chooser.settings.move_port
        self.jobs.start(lambda _job: open_client(node, move_port).find_studies(query), self._found,
                        lambda line: self._search_failed(f"Search failed: {line}"))

    def _search_failed(self, line: str) -> None:
        self.search_button.setEnabled(True)
        self.say(line)

    def _found(self, studies: list[Study]) -> None:
        self.search_button.setEnabled(True)
        self.tree.clear()
        self.series_items.clear()
        for study in studies:
            item = QTreeWidgetItem([person(study.patient_name), study.patient_id, date(study.study_date),
                                    ", ".join(study.modalities), study.description, study.accession,
                                    count(study.series), count(study.instances), ""])
            item.setData(0, KEY, study.study_instance_uid)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
            self.tree.addTopLevelItem(item)
        for column in range(len(COLUMNS) - 1):
            self.tree.resizeColumnToContents(column)
        self.say(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} found" if studies else "No study matches")

    def chosen_node(self) -> Node | None:
        """The node the reader chose, or None after saying in one line why it cannot be used."""
        try:
            return self.chooser.node()
        except PacsError as error:
            self.say(str(error))
            return None

    def expand(self, item: QTreeWidgetItem) -> None:
        """Ask for a study's series the first time it is expanded."""
        if item.parent() is not None or item.childCount() or item.data(1, KEY):
            return
        node = self.chosen_node()
        if node is None:
            return
        item.setData(1, KEY, True)  # asked: not again while the answer is on its way
        study_uid = item.data(0, KEY)
        move_port = self.chooser.settings.move_port
        self.jobs.start(lambda _job: open_client(node, move_port).find_series(study_uid),
                        lambda series: self._fill_series(study_uid, series),
                        lambda line: self._series_failed(item, line))

    def _series_failed(self, item: QTreeWidgetItem, line: str) -> None:
        item.setData(1, KEY, None)
        self.say(f"Series not found: {line}")

    def _study_item(self, study_uid: str) -> QTreeWidgetItem | None:
        return next((self.tree.topLevelItem(k) for k in range(self.tree.topLevelItemCount())
                     if self.tree.topLevelItem(k).data(0, KEY) == study_uid), None)

    def _fill_series(self, study_uid: str, series: list[Series]) -> None:
        study = self._study_item(study_uid)
        if study is None or study.childCount():
            return
        for one in sorted(series, key=lambda s: (s.number is None, s.number or 0)):
            number = f"Series {one.number}" if one.number is not None else "Series"
            item = QTreeWidgetItem([number, "", "", one.modality, one.description, "", "", count(one.instances), ""])
            item.setData(0, KEY, one.series_instance_uid)
            study.addChild(item)
            self.series_items[one.series_instance_uid] = item
        study.setExpanded(True)

    # --- retrieving

    def _targets(self) -> dict[str, list[str] | None]:
        """The selection as study UID: its series UIDs, or None for the whole study."""
        targets: dict[str, list[str] | None] = {}
        for item in self.tree.selectedItems():
            study = item.parent() or item
            uid = study.data(0, KEY)
            if item is study:
                targets[uid] = None
            elif targets.get(uid, []) is not None:
                targets.setdefault(uid, []).append(item.data(0, KEY))
        return targets

    def retrieve(self) -> None:
        """Retrieve what is selected, series by series, opening the first images in the viewer as they arrive."""
        targets = self._targets()
        if self.retrieving is not None or not targets:
            return
        node = self.chosen_node()
        if node is None:
            return
        settings = self.chooser.settings
        cache = Cache(settings.cache_path(), settings.cache_limit_mb << 20)
        self.opened, self.results = [], []
        self.say(f"Retrieving from {node.address()}…")

        def work(job: PacsJob) -> None:
            client = open_client(node, settings.move_port)
            for study_uid, wanted in targets.items():
                if wanted is None:
                    found = client.find_series(study_uid)
                    job.reported.emit(SeriesFound(study_uid, found))
                    wanted = [one.series_instance_uid for one in found]
                for series_uid in wanted:
                    if job.cancelled():
                        return
                    result = client.retrieve(cache, study_uid, series_uid, cancelled=job.cancelled,
                                             on_instance=lambda path, uid=series_uid: job.reported.emit(
                                                 Arrived(uid, path)))
                    job.reported.emit(SeriesDone(cache.study_folder(study_uid) / series_uid, result))
            cache.prune(keep=set(targets))

        self.retrieving = self.jobs.start(work, lambda _none: self._retrieved(""), self._retrieved, self._progress)
        self._update_buttons()

    def _progress(self, report: object) -> None:
        if isinstance(report, SeriesFound):
            self._fill_series(report.study_uid, report.series)
        elif isinstance(report, Arrived):
            self._step(report.series_uid)
            self._show(report.path.parent)
        elif isinstance(report, SeriesDone):
            self.results.append(report.result)
            if report.folder.is_dir():
                self._show(report.folder)

    def _step(self, series_uid: str) -> None:
        """One more instance on the series' progress bar."""
        item = self.series_items.get(series_uid)
        if item is None:
            return
        bar = self.tree.itemWidget(item, PROGRESS_COLUMN)
        if not isinstance(bar, QProgressBar):
            bar = QProgressBar()
            bar.setFormat("%v / %m")
            bar.setMaximum(int(item.text(COLUMNS.index("Images")) or 0))
            bar.setValue(0)
            self.tree.setItemWidget(item, PROGRESS_COLUMN, bar)
        bar.setValue(bar.value() + 1)

    def _show(self, folder: Path) -> None:
        """Open the first series folder at once; read them all again soon for what arrives later."""
        if folder not in self.opened:
            self.opened.append(folder)
            if len(self.opened) == 1:
                self.viewer.open_paths([folder])
                return
        if not self.refresh_timer.isActive():
            self.refresh_timer.start()

    def _refresh_viewer(self) -> None:
        if self.opened:
            self.viewer.refresh_paths(self.opened)

    def _retrieved(self, failure: str) -> None:
        """The retrieve is over: the viewer gets the last instances, and the status says how it went."""
        cancelled = self.retrieving is not None and self.retrieving.cancelled()
        self.retrieving = None
        self.refresh_timer.stop()
        self._refresh_viewer()
        self._update_buttons()
        kept, failed = sum(r.kept for r in self.results), sum(r.failed for r in self.results)
        methods = ", ".join(sorted({r.method for r in self.results}))
        done = f"{kept} image{'' if kept == 1 else 's'} of {len(self.results)} series" + (
            f" ({methods})" if methods else "")
        if failure:
            self.say(f"Retrieve failed after {done}: {failure}")
        elif cancelled:
            self.say(f"Retrieve cancelled: {done} kept")
        else:
            self.say(f"Retrieved {done}" + (f"; the PACS failed {failed}" if failed else ""))

    def cancel(self) -> None:
        if self.retrieving is not None:
            self.retrieving.cancel()
            self.say("Cancelling the retrieve…")

    def _update_buttons(self) -> None:
        busy = self.retrieving is not None
        self.retrieve_button.setEnabled(not busy and bool(self.tree.selectedItems()))
        self.cancel_button.setEnabled(busy)

    def closeEvent(self, event: QCloseEvent) -> None:
        self.jobs.stop()
        self.refresh_timer.stop()
        super().closeEvent(event)
