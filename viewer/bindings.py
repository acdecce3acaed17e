"""Every key and mouse binding of the viewer, and the window/level presets, in one table.

The conventions are OHIF's, so a radiologist's hands already know them: up/down arrows and
the wheel page through images (down = next), Space resets, ``I`` inverts, the number keys
pick window presets, left-drag windows, right-drag zooms and middle-drag pans. OHIF moves
between viewports with left/right; Lightbox has one viewport, so left/right move between
series instead. PageUp/PageDown jump ten images, as in most PACS workstations.

The main window turns :data:`KEYS` into menu actions and the image view reads
:data:`MOUSE_DRAGS`; nothing else defines a binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence

from dicom.image import FrameImage
from dicom.pixels import Voi, Window


@dataclass(frozen=True)
class KeyBinding:
    """Keys (as ``QKeySequence`` strings) that trigger one named action."""

    action: str
    keys: tuple[str, ...]
    description: str

    def shortcuts(self) -> list[QKeySequence]:
        return [QKeySequence(key) for key in self.keys]


KEYS: tuple[KeyBinding, ...] = (
    KeyBinding("previous_image", ("Up",), "Previous image"),
    KeyBinding("next_image", ("Down",), "Next image"),
    KeyBinding("previous_series", ("Left",), "Previous series"),
    KeyBinding("next_series", ("Right",), "Next series"),
    KeyBinding("back_ten", ("PgUp",), "Ten images back"),
    KeyBinding("forward_ten", ("PgDown",), "Ten images forward"),
    KeyBinding("first_image", ("Home",), "First image"),
    KeyBinding("last_image", ("End",), "Last image"),
    KeyBinding("invert", ("I",), "Invert the grey scale"),
    KeyBinding("reset", ("Space", "R"), "Reset window/level, invert, zoom and pan"),
    KeyBinding("fit", ("F", "="), "Fit the image to the view"),
    KeyBinding("zoom_in", ("+",), "Zoom in"),
    KeyBinding("zoom_out", ("-",), "Zoom out"),
    KeyBinding("toggle_corner_text", ("T",), "Show or hide the corner text"),
    KeyBinding("toggle_overlay", ("H",), "Show or hide the heatmap overlay"),
    KeyBinding("side_by_side", ("S",), "Side by side: the image with its map beside the image without"),
    KeyBinding("cine", ("P",), "Cine: play or pause the series as a loop"),
    KeyBinding("cine_slower", ("[",), "Cine: slower"),
    KeyBinding("cine_faster", ("]",), "Cine: faster"),
)

#: The explanation panel's keys, bound by :mod:`viewer.explanation_ui`; none clashes with :data:`KEYS`.
EXPLAIN_KEYS: tuple[KeyBinding, ...] = (
    KeyBinding("explain", ("E",), "Explain the image on show with the panel's method"),
    KeyBinding("cancel_explanation", ("Esc",), "Cancel the running explanation"),
)

#: The measuring tools' keys, bound by :mod:`viewer.measurement_tools`; none clashes with the keys above.
MEASURE_KEYS: tuple[KeyBinding, ...] = (
    KeyBinding("length", ("L",), "Length tool: drag a line; mm, with the calibration stated"),
    KeyBinding("angle", ("A",), "Angle tool: click an end, the vertex, the other end"),
    KeyBinding("ellipse", ("O",), "Ellipse ROI tool: drag; mean, SD, min, max (HU on CT), area"),
    KeyBinding("rectangle", ("B",), "Rectangle (box) ROI tool: drag; mean, SD, min, max, area"),
    KeyBinding("delete_measurement", ("Del", "Backspace"), "Delete the selected measurement"),
    KeyBinding("undo", ("Ctrl+Z",), "Undo the last measurement added, deleted or moved"),
    KeyBinding("redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Redo"),
)
#: Leaves a measuring tool for the pointer. Not a window shortcut, since Esc also cancels an explanation:
#: the image view takes it only while a tool is on or a shape is being drawn, and it has the focus.
LEAVE_TOOL_KEY = "Esc"

#: The PACS windows' keys, bound by the main window's File menu.
PACS_KEYS: tuple[KeyBinding, ...] = (
    KeyBinding("open_from_pacs", ("Ctrl+Shift+P",), "Open from PACS: search, then retrieve into the viewer"),
)

#: Keys 1 to 9 pick :func:`presets` in order.
PRESET_KEYS: tuple[str, ...] = tuple(str(n) for n in range(1, 10))


class Drag(Enum):
    """What a mouse drag does on the image."""

    WINDOW = "Window/level: horizontal = width, vertical = level"
    ZOOM = "Zoom about the point pressed: down = in, up = out"
    PAN = "Pan"


MOUSE_DRAGS: dict[Qt.MouseButton, Drag] = {
    Qt.MouseButton.LeftButton: Drag.WINDOW,
    Qt.MouseButton.RightButton: Drag.ZOOM,
    Qt.MouseButton.MiddleButton: Drag.PAN,
}

#: Wheel notches down page forward, as in OHIF.
WHEEL_DOWN_STEP = 1

BUTTON_NAMES = {
    Qt.MouseButton.LeftButton: "Left drag",
    Qt.MouseButton.RightButton: "Right drag",
    Qt.MouseButton.MiddleButton: "Middle drag",
}

#: CT windows in HU, the ones every reading room uses (W width, L level).
CT_PRESETS: tuple[Window, ...] = (
    Window(-600, 1500, "Lung"),
    Window(50, 350, "Mediastinum"),
    Window(40, 400, "Abdomen"),
    Window(400, 1800, "Bone"),
    Window(40, 80, "Brain"),
)


def presets(image: FrameImage) -> list[Voi]:
    """The windows behind keys 1, 2, ... for this image.

    Key 1 is always the file's own choice. Images in HU get the CT presets next, since
    those are only meaningful in HU; other images get the file's remaining windows and VOI
    LUTs, then the automatic window. Colour images have none.
    """
    choices = image.voi_choices()
    if not choices:
        return []
    if image.modality is not None and image.modality.units == "HU":
        return [choices[0], *CT_PRESETS]
    return choices[: len(PRESET_KEYS)]


def key_text(keys: tuple[str, ...]) -> str:
    """Keys as the platform writes them, for menus and the help table."""
    return " or ".join(QKeySequence(key).toString(QKeySequence.SequenceFormat.NativeText) for key in keys)


def table() -> list[tuple[str, str]]:
    """Every binding as (input, what it does) rows, mouse first, for the help dialog."""
    rows = [(BUTTON_NAMES[button], drag.value) for button, drag in MOUSE_DRAGS.items()]
    rows.append(("Wheel", "Next image (down) / previous image (up)"))
    rows.extend((key_text(binding.keys), binding.description) for binding in (*KEYS, *EXPLAIN_KEYS, *MEASURE_KEYS, *PACS_KEYS))
    rows.append((f"{key_text((LEAVE_TOOL_KEY,))} (on the image)", "Back to the pointer; cancel the shape being drawn"))
    rows.append(("Left drag on a measurement", "Move it, or one of its points; a click selects it"))
    rows.append((PRESET_KEYS[0], "The file's own window"))
    rows.extend(
        (key, f"CT: {w.label} (W {w.width:g} L {w.center:g})")
        for key, w in zip(PRESET_KEYS[1:], CT_PRESETS, strict=False)
    )
    rows.append(
        (f"{PRESET_KEYS[1]}-{PRESET_KEYS[-1]}", "Other images: the file's other windows, then an automatic one")
    )
    return rows
