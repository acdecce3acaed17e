"""Whether an image is of the kind a model was made for, as its card's ``expects`` declares.

A model scores whatever it is given: a chest-radiograph model gives a CT slice or a bone scan a
probability as confident as a radiograph's, and the map of it explains nothing. The card may
say which images the model expects (modality, body part, view, photometric, a smallest size);
:func:`check_image` compares that with the image's DICOM header, and the viewer (which warns)
and the command line (which refuses unless ``--force``) both use it.

Values are compared as DICOM code strings, ignoring case and surrounding spaces. An attribute
the file does not record is *unknown*, never a mismatch: many sound radiographs carry no Body
Part Examined or View Position, and refusing them would refuse good images. It is said, so the
reader knows what went unchecked.

The header is read through ``get(keyword)`` alone (a pydicom ``Dataset`` has it), so the engine
needs no DICOM library.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

#: Each listed field of :class:`ExpectedImages`, the header attribute it is compared with, and its name for a reader.
LISTED = (("modality", "Modality", "modality"), ("body_part", "BodyPartExamined", "body part"),
          ("view", "ViewPosition", "view"), ("photometric", "PhotometricInterpretation", "photometric"))
#: Each smallest size of :class:`ExpectedImages`, its header attribute, and its name for a reader.
MINIMA = (("min_rows", "Rows", "rows"), ("min_columns", "Columns", "columns"))


class Header(Protocol):
    """What is read of a DICOM header: attributes by keyword, None when absent."""

    def get(self, keyword: str, default: Any = None) -> Any: ...


@dataclass(frozen=True)
class ExpectedImages:
    """The images a model was made for; an empty tuple or None accepts any value."""

    modality: tuple[str, ...] = ()
    body_part: tuple[str, ...] = ()
    view: tuple[str, ...] = ()
    photometric: tuple[str, ...] = ()
    min_rows: int | None = None
    min_columns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The card's ``expects`` object: only the keys that are set."""
        listed = {name: list(getattr(self, name)) for name, _, _ in LISTED if getattr(self, name)}
        return {**listed, **{name: getattr(self, name) for name, _, _ in MINIMA if getattr(self, name) is not None}}


@dataclass(frozen=True)
class ImageFit:
    """How an image compares with what a model expects.

    ``mismatches`` holds ``(expected, found)`` phrases such as ``("modality CR or DX", "modality CT")``;
    ``unknown`` names what was expected but the file does not record, with what was expected.
    """

    mismatches: tuple[tuple[str, str], ...] = ()
    unknown: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        return not self.mismatches

    def line(self) -> str:
        """One line for the reader: what differs, else what went unchecked, else nothing."""
        if self.mismatches:
            expected = ", ".join(want for want, _ in self.mismatches)
            found = ", ".join(have for _, have in self.mismatches)
            return f"This model expects {expected}; this image has {found}"
        if self.unknown:
            return f"This model expects {', '.join(self.unknown)}; the file does not say, so that was not checked"
        return ""


def header_text(header: Header, keyword: str) -> str:
    """An attribute as an upper-case code string; empty when absent or empty."""
    value = header.get(keyword)
    return "" if value is None else str(value).strip().upper()


def header_whole(header: Header, keyword: str) -> int | None:
    """A whole-number attribute; None when absent or malformed."""
    try:
        return int(header.get(keyword))
    except (TypeError, ValueError):
        return None


def check_image(expected: ExpectedImages | None, header: Header) -> ImageFit:
    """Compare an image's header with what a model expects (see the module's docstring)."""
    if expected is None:
        return ImageFit()
    mismatches, unknown = [], []
    for name, keyword, title in LISTED:
        allowed = getattr(expected, name)
        if not allowed:
            continue
        want, have = f"{title} {' or '.join(allowed)}", header_text(header, keyword)
        if not have:
            unknown.append(want)
        elif have not in allowed:
            mismatches.append((want, f"{title} {have}"))
    for name, keyword, title in MINIMA:
        least = getattr(expected, name)
        if least is None:
            continue
        want, have = f"at least {least} {title}", header_whole(header, keyword)
        if have is None:
            unknown.append(want)
        elif have < least:
            mismatches.append((want, f"{have} {title}"))
    return ImageFit(tuple(mismatches), tuple(unknown))
