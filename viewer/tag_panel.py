"""The DICOM tag panel: every element of the frame's header, sequences expandable, filterable.

Large sequences (an enhanced CT's per-frame groups run to thousands of items) are only
turned into rows when the reader expands them; a filter walks the data set itself and
shows just the matching elements, with the sequences that lead to them opened.
"""

from __future__ import annotations

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QLineEdit, QTreeWidget, QTreeWidgetItem, QVBoxLayout, QWidget

COLUMNS = ("Tag", "Keyword", "VR", "Value")
#: Where an unexpanded sequence row keeps its element until it is opened.
ITEMS_ROLE = Qt.ItemDataRole.UserRole
#: Longest value text shown; the rest of a long value is rarely what the reader is after.
MAX_VALUE_CHARS = 300


def value_text(element: DataElement) -> str:
    """The value as one line, multiple values joined by DICOM's own ``\\``.

    Sequences give their item count and binary data pydicom's summary of it.
    """
    value = element.value
    if element.VR == "SQ":
        return f"{len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, (bytes, bytearray)):
        text = str(element.repval)
    elif isinstance(value, (list, tuple, MultiValue)):
        text = "\\".join(str(v) for v in value)
    else:
        text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= MAX_VALUE_CHARS else text[: MAX_VALUE_CHARS - 3] + "..."


def columns(element: DataElement) -> list[str]:
    """One element as its row: ``(0010,0010)``, ``PatientName``, ``PN``, ``Doe^Jane``."""
    return [
        f"({element.tag.group:04X},{element.tag.element:04X})",
        element.keyword or element.name,
        str(element.VR),
        value_text(element),
    ]


def matches(row: list[str], needle: str) -> bool:
    return any(needle in text.casefold() for text in row)


class TagPanel(QWidget):
    """A filter box over a tree of tag, keyword, VR and value."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter: tag, keyword or value")
        self.filter.setClearButtonEnabled(True)
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        self._size_columns()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree)

        self._dataset: Dataset | None = None
        self._shown: tuple[int, str] | None = None  # (id of data set, filter) in the tree
        self._refresh_timer = QTimer(self, singleShot=True, interval=120)
        self._refresh_timer.timeout.connect(self.refresh)
        self.filter.textChanged.connect(self._refresh_timer.start)
        self.tree.itemExpanded.connect(self._fill_sequence)

    def _size_columns(self) -> None:
        """Fixed widths from the font: measuring every row would cost more than the rows."""
        metrics = self.tree.fontMetrics()
        header = self.tree.header()
        header.setStretchLastSection(True)
        header.resizeSection(0, metrics.horizontalAdvance("(0000,0000)") + 28)
        header.resizeSection(1, metrics.horizontalAdvance("PhotometricInterpretation") + 12)
        header.resizeSection(2, metrics.horizontalAdvance("VR") + 12)

    def set_dataset(self, dataset: Dataset | None) -> None:
        """Show another header. Paging fast through a series only rebuilds for the last one."""
        self._dataset = dataset
        self._refresh_timer.start(0)

    def refresh(self) -> None:
        """Rebuild the tree for the current header and filter, if either changed."""
        needle = self.filter.text().strip().casefold()
        key = (id(self._dataset), needle)
        if key == self._shown:
            return
        scroll = self.tree.verticalScrollBar().value()
        self.tree.clear()
        if self._dataset is not None:
            self._add_elements(self.tree.invisibleRootItem(), self._dataset, needle)
        self._shown = key
        self.tree.verticalScrollBar().setValue(scroll)

    def _add_elements(self, parent: QTreeWidgetItem, dataset: Dataset, needle: str) -> bool:
        """Add the elements of ``dataset`` that match (all when no filter); True if any did."""
        added = False
        for element in dataset:
            row = columns(element)
            if not needle or matches(row, needle):
                parent.addChild(self._row(element, row))
                added = True
            elif element.VR == "SQ":
                item = QTreeWidgetItem(row)
                for number, child in enumerate(element.value, start=1):
                    holder = QTreeWidgetItem(["", f"Item {number}", "", ""])
                    if self._add_elements(holder, child, needle):
                        item.addChild(holder)
                if item.childCount():
                    parent.addChild(item)
                    item.setExpanded(True)
                    for i in range(item.childCount()):
                        item.child(i).setExpanded(True)
                    added = True
        return added

    def _row(self, element: DataElement, row: list[str]) -> QTreeWidgetItem:
        """A row; a sequence keeps its items aside until expanded."""
        item = QTreeWidgetItem(row)
        if element.VR == "SQ" and len(element.value):
            item.setData(0, ITEMS_ROLE, element)
            item.setChildIndicatorPolicy(QTreeWidgetItem.ChildIndicatorPolicy.ShowIndicator)
        return item

    def _fill_sequence(self, item: QTreeWidgetItem) -> None:
        element = item.data(0, ITEMS_ROLE)
        if element is None:
            return
        item.setData(0, ITEMS_ROLE, None)
        for number, child in enumerate(element.value, start=1):
            holder = QTreeWidgetItem(["", f"Item {number}", "", ""])
            self._add_elements(holder, child, "")
            item.addChild(holder)
