"""Measuring on the image view: length, angle, ellipse and rectangle ROI, with selection, delete and undo.

The maths is :mod:`dicom.measurements`'; this module draws and takes the mouse. Measurements are kept
per frame (by file and frame number), so paging away and back shows them again, and every add, delete
and move goes through one ``QUndoStack``.

Mouse: with a tool on, a left drag (or a click at each point) draws the shape; with no tool (the
pointer) the left button windows as usual. In either mode a left press on a measurement selects it and
a drag moves it, or the point under the mouse. Right and middle drags and the wheel always zoom, pan and
page. The view's viewport is watched with an event filter, so the image view itself needs no change.

Drawing is done in screen pixels by one scene item above the image: lines stay thin and labels stay
readable at any zoom, and labels sit beside their shape, not on it, to keep the anatomy in sight.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QColor,
    QFont,
    QFontMetricsF,
    QKeyEvent,
    QPainter,
    QPainterPath,
    QPainterPathStroker,
    QPen,
    QUndoCommand,
    QUndoStack,
)
from PySide6.QtWidgets import QGraphicsObject, QMenu, QStyleOptionGraphicsItem, QToolBar, QWidget

from dicom.measurements import Calibration, Kind, Measurement, Point, calibration, describe
from viewer import bindings
from viewer.image_view import MARGIN, ImageView, outlined

FrameKey = tuple[str, int]

COLOUR = QColor(255, 214, 10)  # amber: stands out on grey and on the heatmap's reds alike
SELECTED_COLOUR = QColor(90, 210, 255)
SHADOW = QColor(0, 0, 0, 180)  # under each line, so it shows on white bone as on black air
LINE_WIDTH = 2.0
SHADOW_WIDTH = 4.0
HANDLE_RADIUS = 3.5
#: Screen pixels: how near a press must be to a point or a line to take it, and how far a press must
#: move before its release counts as a second point.
GRAB_PIXELS = 7.0
CLICK_SLOP = 4.0
LABEL_GAP = 10.0
MOUSE_EVENTS = (QEvent.Type.MouseButtonPress, QEvent.Type.MouseMove, QEvent.Type.MouseButtonRelease,
                QEvent.Type.MouseButtonDblClick)
TOOL_KINDS = {"length": Kind.LENGTH, "angle": Kind.ANGLE, "ellipse": Kind.ELLIPSE, "rectangle": Kind.RECTANGLE}


class MeasurementStore:
    """The measurements of every frame, each with an id that undo and selection refer to."""

    def __init__(self) -> None:
        self._frames: dict[FrameKey, dict[int, Measurement]] = {}

    def on(self, key: FrameKey | None) -> dict[int, Measurement]:
        """A frame's measurements by id, oldest first (an empty dict for no frame)."""
        return dict(self._frames.get(key, {})) if key is not None else {}

    def put(self, key: FrameKey, ident: int, measurement: Measurement | None) -> None:
        """Set (or with None, remove) one measurement; ids keep the drawing order after an undo."""
        frame = self._frames.setdefault(key, {})
        frame.pop(ident, None)
        if measurement is not None:
            frame[ident] = measurement
        self._frames[key] = dict(sorted(frame.items()))


class Change(QUndoCommand):
    """One add (None to shape), delete (shape to None) or move (shape to shape) on one frame."""

    def __init__(self, tools: MeasurementTools, key: FrameKey, ident: int,
                 before: Measurement | None, after: Measurement | None) -> None:
        kind = (after or before).kind.title.lower()
        verb = "add" if before is None else "delete" if after is None else "move"
        super().__init__(f"{verb} {kind}")
        self.tools, self.key, self.ident, self.before, self.after = tools, key, ident, before, after

    def redo(self) -> None:
        self.tools.put(self.key, self.ident, self.after)

    def undo(self) -> None:
        self.tools.put(self.key, self.ident, self.before)


@dataclass
class Draft:
    """A shape being drawn: the points fixed so far and the one following the mouse."""

    kind: Kind
    points: list[Point]
    floating: Point

    def shape(self) -> Measurement:
        return Measurement(self.kind, (*self.points, self.floating))


@dataclass
class Grab:
    """A measurement being moved: whole (``handle`` None) or by one of its points."""

    ident: int
    handle: int | None
    start: Point
    before: Measurement
    current: Measurement = field(init=False)

    def __post_init__(self) -> None:
        self.current = self.before

    def to(self, point: Point) -> None:
        if self.handle is None:
            self.current = self.before.moved(point[0] - self.start[0], point[1] - self.start[1])
        else:
            self.current = self.before.with_point(self.handle, point)


class MeasurementLayer(QGraphicsObject):
    """The scene item the measurements are painted on, in screen pixels, above the image and heatmap."""

    def __init__(self, tools: MeasurementTools) -> None:
        super().__init__()
        self.tools = tools
        self.setZValue(10)
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def boundingRect(self) -> QRectF:
        return QRectF(-1e6, -1e6, 2e6, 2e6)  # the scene is the viewport; any size of it is covered

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        self.tools.paint(painter)


class MeasurementTools(QObject):
    """The measuring tools of one image view, with their actions for a menu and a toolbar.

    ``tool`` is the kind drawn by a left drag, None for the pointer.
    """

    def __init__(self, view: ImageView, window: QWidget) -> None:
        super().__init__(window)
        self.view = view
        self.store = MeasurementStore()
        self.undo_stack = QUndoStack(self)
        self.tool: Kind | None = None
        self.selected: int | None = None
        self._ids = 0
        self._key: FrameKey | None = None
        self._cal = Calibration()
        self._mm = (1.0, 1.0)
        self._lines: dict[Measurement, tuple[str, ...]] = {}
        self._draft: Draft | None = None
        self._grab: Grab | None = None
        self.layer = MeasurementLayer(self)
        view.scene().addItem(self.layer)
        view.viewport().installEventFilter(self)
        view.installEventFilter(self)
        view.display_changed.connect(self._follow_frame)
        self.actions = self._make_actions(window)

    # --- actions

    def _make_actions(self, window: QWidget) -> dict[str, QAction]:
        group = QActionGroup(self)
        pointer = group.addAction("Pointer (window, zoom, pan)")
        pointer.setToolTip(f"Pointer: no measuring tool ({bindings.LEAVE_TOOL_KEY} on the image)")
        pointer.triggered.connect(lambda _=False: self.set_tool(None))
        actions = {"pointer": pointer}
        for binding in bindings.MEASURE_KEYS:
            if binding.action in TOOL_KINDS:
                action = group.addAction(TOOL_KINDS[binding.action].title)
                action.triggered.connect(lambda _=False, kind=TOOL_KINDS[binding.action]: self.set_tool(kind))
            elif binding.action == "undo":
                action = self.undo_stack.createUndoAction(self, "Undo")
            elif binding.action == "redo":
                action = self.undo_stack.createRedoAction(self, "Redo")
            else:
                action = QAction("Delete measurement", self)
                action.triggered.connect(self.delete_selected)
            action.setShortcuts(binding.shortcuts())
            action.setStatusTip(binding.description)
            action.setToolTip(f"{binding.description} ({bindings.key_text(binding.keys)})")
            actions[binding.action] = action
        for action in group.actions():
            action.setCheckable(True)
        pointer.setChecked(True)
        window.addActions(list(actions.values()))
        return actions

    def fill_menu(self, menu: QMenu) -> None:
        """The Tools menu: the tools, then delete, undo and redo."""
        menu.addActions([self.actions[name] for name in ("pointer", *TOOL_KINDS)])
        menu.addSeparator()
        menu.addActions([self.actions[name] for name in ("delete_measurement", "undo", "redo")])

    def toolbar(self) -> QToolBar:
        """A toolbar with the pointer and the four tools."""
        bar = QToolBar("Measuring tools")
        bar.setObjectName("measuring_tools")
        bar.addActions([self.actions[name] for name in ("pointer", *TOOL_KINDS)])
        return bar

    def set_tool(self, kind: Kind | None) -> None:
        """Choose what a left drag draws (None: the pointer); the image takes the focus, for Esc."""
        self.tool, self._draft = kind, None
        name = next((name for name, k in TOOL_KINDS.items() if k is kind), "pointer")
        self.actions[name].setChecked(True)
        if kind is None:
            self.view.viewport().unsetCursor()
        else:
            self.view.viewport().setCursor(Qt.CursorShape.CrossCursor)
            self.view.setFocus()
        self.layer.update()

    # --- the measurements

    def measurements(self) -> list[tuple[Measurement, tuple[str, ...]]]:
        """The frame on show's measurements with their label lines, in drawing order, for exports."""
        return [(m, self.lines(m)) for m in self.store.on(self._key).values()]

    def lines(self, measurement: Measurement) -> tuple[str, ...]:
        """The label of a measurement on the frame on show, worked out once per shape."""
        if measurement not in self._lines:
            self._lines[measurement] = describe(measurement, self.view.image, self._cal)
        return self._lines[measurement]

    def put(self, key: FrameKey, ident: int, measurement: Measurement | None) -> None:
        """Change the store (the undo commands' one way in) and redraw."""
        self.store.put(key, ident, measurement)
        if measurement is None and ident == self.selected:
            self.selected = None
        self.layer.update()

    def delete_selected(self) -> None:
        shown = self.store.on(self._key)
        if self.selected in shown:
            self.undo_stack.push(Change(self, self._key, self.selected, shown[self.selected], None))

    def _add(self, measurement: Measurement) -> None:
        self._ids += 1
        self.undo_stack.push(Change(self, self._key, self._ids, None, measurement))

    def _follow_frame(self) -> None:
        """Show the measurements of whichever frame the view now shows; none over an error."""
        image = self.view.image
        key = (str(image.frame.path), image.frame.index) if image is not None else None
        if key != self._key:
            self._key, self._draft, self._grab, self.selected, self._lines = key, None, None, None, {}
            if image is not None:
                self._cal = calibration(image.frame)
                rect = self.view.image_rect()
                self._mm = (rect.height() / image.frame.rows, rect.width() / image.frame.columns)
        self.layer.update()

    # --- coordinates

    def to_screen(self, point: Point) -> QPointF:
        """An image point (column, row) in scene coordinates, which are the viewport's pixels."""
        return self.view.box.mapViewToScene(QPointF(point[0] * self._mm[1], point[1] * self._mm[0]))

    def to_image(self, position: QPointF) -> Point:
        """A viewport position as an image point (column, row)."""
        point = self.view.box.mapSceneToView(self.view.mapToScene(position.toPoint()))
        return point.x() / self._mm[1], point.y() / self._mm[0]

    def screen_path(self, measurement: Measurement) -> QPainterPath:
        """The shape as drawn: a polyline for a length or an angle, an outline for a region."""
        points = [self.to_screen(p) for p in measurement.points]
        path = QPainterPath()
        if measurement.kind.is_region and len(points) == 2:
            box = QRectF(points[0], points[1]).normalized()
            if measurement.kind is Kind.ELLIPSE:
                path.addEllipse(box)
            else:
                path.addRect(box)
            return path
        path.moveTo(points[0])
        for point in points[1:]:
            path.lineTo(point)
        return path

    def _hit(self, position: QPointF) -> tuple[int, int | None] | None:
        """The measurement under a press, newest first, and which of its points (None: the line)."""
        stroker = QPainterPathStroker()
        stroker.setWidth(2 * GRAB_PIXELS)
        for ident, measurement in reversed(self.store.on(self._key).items()):
            for index, point in enumerate(measurement.points):
                screen = self.to_screen(point)
                if math.hypot(screen.x() - position.x(), screen.y() - position.y()) <= GRAB_PIXELS:
                    return ident, index
            if stroker.createStroke(self.screen_path(measurement)).contains(position):
                return ident, None
        return None

    # --- the mouse and Esc

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if watched is self.view:
            if kind in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
                return self._escape(event, kind is QEvent.Type.KeyPress)
            return False
        if self.view.image is None or kind not in MOUSE_EVENTS:
            return False
        if kind is QEvent.Type.MouseMove:
            return self._move(event.position())
        if event.button() is not Qt.MouseButton.LeftButton:
            return False
        if kind is QEvent.Type.MouseButtonPress:
            return self._press(event.position())
        if kind is QEvent.Type.MouseButtonRelease:
            return self._release(event.position())
        return self.tool is not None or self._draft is not None  # a double click is two clicks, nothing more

    def _escape(self, event: QKeyEvent, pressed: bool) -> bool:
        """Esc cancels the shape being drawn or moved, else leaves the tool; only when there is one of those."""
        if event.key() != Qt.Key.Key_Escape or (self.tool is None and self._draft is None and self._grab is None):
            return False
        event.accept()
        if pressed:
            if self._draft is None and self._grab is None:
                self.set_tool(None)
            self._draft = self._grab = None
            self.layer.update()
        return True

    def _press(self, position: QPointF) -> bool:
        if self._draft is not None:
            return True  # the next point comes with the release
        hit = self._hit(position)
        if hit is not None:
            ident, handle = hit
            self.selected = ident
            self._grab = Grab(ident, handle, self.to_image(position), self.store.on(self._key)[ident])
            self.layer.update()
            return True
        if self.selected is not None:
            self.selected = None
            self.layer.update()
        if self.tool is None:
            return False  # the pointer: window/level as ever
        point = self.to_image(position)
        self._draft = Draft(self.tool, [point], point)
        return True

    def _move(self, position: QPointF) -> bool:
        if self._grab is not None:
            self._grab.to(self.to_image(position))
        elif self._draft is not None:
            self._draft.floating = self.to_image(position)
        else:
            return False
        self.layer.update()
        return True

    def _release(self, position: QPointF) -> bool:
        if self._grab is not None:
            grab, self._grab = self._grab, None
            if grab.current != grab.before:
                self.undo_stack.push(Change(self, self._key, grab.ident, grab.before, grab.current))
            self.layer.update()
            return True
        draft = self._draft
        if draft is None:
            return False
        last = self.to_screen(draft.points[-1])
        if math.hypot(position.x() - last.x(), position.y() - last.y()) > CLICK_SLOP:
            draft.points.append(self.to_image(position))
            draft.floating = draft.points[-1]
        if len(draft.points) == draft.kind.points:
            self._draft = None
            self._add(Measurement(draft.kind, tuple(draft.points)))
        self.layer.update()
        return True

    # --- painting

    def paint(self, painter: QPainter) -> None:
        """Every measurement of the frame on show, the one being moved where it is now, and the draft."""
        if self._key is None:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        font = QFont(self.view.font())
        font.setPointSizeF(10.5)
        shown = self.store.on(self._key)
        if self._grab is not None:
            shown[self._grab.ident] = self._grab.current
        for ident, measurement in shown.items():
            colour = SELECTED_COLOUR if ident == self.selected else COLOUR
            self._draw_shape(painter, measurement, colour, handles=ident == self.selected)
            self._draw_label(painter, measurement, self.lines(measurement), colour, font)
        if self._draft is not None:
            self._draw_shape(painter, self._draft.shape(), COLOUR, handles=True)

    def _draw_shape(self, painter: QPainter, measurement: Measurement, colour: QColor, handles: bool) -> None:
        path = self.screen_path(measurement)
        for pen_colour, width in ((SHADOW, SHADOW_WIDTH), (colour, LINE_WIDTH)):
            painter.setPen(QPen(pen_colour, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(path)
        if handles:
            painter.setPen(QPen(SHADOW, 1.5))
            painter.setBrush(colour)
            for point in measurement.points:
                painter.drawEllipse(self.to_screen(point), HANDLE_RADIUS, HANDLE_RADIUS)

    def _draw_label(self, painter: QPainter, measurement: Measurement, lines: tuple[str, ...], colour: QColor,
                    font: QFont) -> None:
        """The lines beside the shape, not over it, kept inside the view."""
        metrics = QFontMetricsF(font)
        size = QPointF(max(metrics.horizontalAdvance(line) for line in lines), metrics.lineSpacing() * len(lines))
        corner = self._label_corner(measurement, size)
        area = QRectF(self.view.viewport().rect()).adjusted(MARGIN, MARGIN, -MARGIN, -MARGIN)
        x = min(max(corner.x(), area.left()), area.right() - size.x())
        top = min(max(corner.y(), area.top()), area.bottom() - size.y())
        for i, line in enumerate(lines):
            outlined(painter, x, top + metrics.ascent() + i * metrics.lineSpacing(), font, line, colour)

    def _label_corner(self, measurement: Measurement, size: QPointF) -> QPointF:
        """Where a label of ``size`` goes: an angle's outside its vertex, opposite the arms; any other
        shape's to its right, or to its left where the view ends."""
        if measurement.kind is Kind.ANGLE and len(measurement.points) == 3:
            end, vertex, other = (self.to_screen(p) for p in measurement.points)
            away = unit(vertex - end) + unit(vertex - other)
            away = unit(away) if away.manhattanLength() > 1e-6 else QPointF(-1.0, 0.0)
            reach = LABEL_GAP + max(size.x(), size.y()) / 2
            return vertex + away * reach - size / 2
        bounds = self.screen_path(measurement).boundingRect()
        x = bounds.right() + LABEL_GAP
        if x + size.x() > self.view.viewport().width() - MARGIN:
            x = bounds.left() - LABEL_GAP - size.x()
        return QPointF(x, bounds.center().y() - size.y() / 2)


def unit(vector: QPointF) -> QPointF:
    """``vector`` scaled to length one (zero stays zero)."""
    norm = math.hypot(vector.x(), vector.y())
    return vector / norm if norm else vector

