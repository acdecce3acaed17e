"""A one-page key-image report of an explanation: one self-contained HTML file, printable on A4.

No Qt here, so the command line can write it too::

    write_report(result, "report.html", deidentify=True)

``result`` is a :class:`~exports.dicom_objects.ExportedExplanation`. The page shows the image as
read and with the heat over it, the colour bar, the model, method, target and its probability,
the trust figures and verdict when they were computed, and the reader's measurements on that frame:
drawn and numbered on the image as read, and listed as text. The pictures are embedded as PNG, so the
file opens anywhere with nothing beside it. Patient and study details appear only when the
export is not de-identified; the source's UIDs never do. A de-identified report of a source with
burned-in annotation is refused, as the DICOM exports are: the pictures would show the text.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import datetime
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.valuerep import PersonName

from dicom.measurements import Kind, Measurement
from exports.deidentify import refuse_burned_in
from exports.dicom_objects import ExportedExplanation, ExportError
from exports.heat_colours import colour_table
from exports.trust_text import named_figures

#: A measurement with the lines its label shows, as the viewer gives them.
Labelled = tuple[Measurement, tuple[str, ...]]
#: The viewer's measurement colour, over a dark outline so it shows on bone as on air.
MARK_COLOUR, MARK_OUTLINE = (255, 214, 10), (0, 0, 0)

#: Patient and study lines of an identified report, in order: (label, attribute).
IDENTIFYING = (("Patient", "PatientName"), ("Patient ID", "PatientID"), ("Birth date", "PatientBirthDate"),
               ("Study date", "StudyDate"), ("Accession", "AccessionNumber"), ("Study", "StudyDescription"),
               ("Series", "SeriesDescription"))

STYLE = """
@page { size: A4; margin: 12mm; }
body { font: 10.5pt/1.35 system-ui, sans-serif; color: #111; max-width: 186mm; margin: 0 auto; }
h1 { font-size: 15pt; margin: 0 0 2mm; }
.note { color: #555; font-size: 9pt; }
.pictures { display: grid; grid-template-columns: 1fr 1fr 14mm; column-gap: 3mm; margin: 3mm 0; }
.pictures img.image { width: 100%; display: block; background: #000; }
.caption { font-size: 9pt; color: #444; }
.bar { position: relative; font-size: 8.5pt; }
.bar img { position: absolute; top: 0; bottom: 0; left: 0; width: 4mm; height: 100%; }
.bar span { position: absolute; left: 5.5mm; }
.bar .top { top: 0; } .bar .bottom { bottom: 0; }
h2 { font-size: 11.5pt; margin: 0 0 1.5mm; }
table { border-collapse: collapse; width: 100%; }
td, th { text-align: left; padding: 0.6mm 2mm; border-bottom: 1px solid #ddd; vertical-align: top; }
td.value { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.columns { display: flex; gap: 6mm; }
.columns > div { flex: 1; }
.verdict { font-weight: 600; margin: 2mm 0; }
"""


def png_data_uri(pixels: np.ndarray) -> str:
    """8-bit grey or RGB pixels as an inline PNG."""
    buffer = BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def colour_bar_pixels(show: str = "positive", height: int = 256) -> np.ndarray:
    """The overlay's colour map as a vertical strip, most heat at the top."""
    rows = colour_table(show)[np.linspace(255, 0, height).round().astype(int)]
    return np.repeat(rows[:, None, :], 8, axis=1)


def marked(pixels: np.ndarray, measurements: Sequence[Labelled]) -> np.ndarray:
    """The picture (8-bit grey or RGB, on the frame's grid) with each measurement drawn and numbered.

    Lines grow with the picture, so they stay visible when a large radiograph is printed small; the
    numbers match the report's list, which carries the values (long labels would cover the anatomy).
    """
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(1, round(max(picture.size) / 400))
    font = ImageFont.load_default(size=max(12, 6 * width + 6))
    for number, (measurement, _) in enumerate(measurements, start=1):
        points = [(x - 0.5, y - 0.5) for x, y in measurement.points]  # PIL puts pixel centres on integers
        box = (min(p[0] for p in points), min(p[1] for p in points), max(p[0] for p in points),
               max(p[1] for p in points))
        for colour, line in ((MARK_OUTLINE, width + 2), (MARK_COLOUR, width)):
            if measurement.kind is Kind.ELLIPSE:
                draw.ellipse(box, outline=colour, width=line)
            elif measurement.kind is Kind.RECTANGLE:
                draw.rectangle(box, outline=colour, width=line)
            else:
                draw.line(points, fill=colour, width=line, joint="curve")
        draw.text((box[2] + 2 * width + 2, box[1]), str(number), fill=MARK_COLOUR, font=font,
                  stroke_width=max(1, width), stroke_fill=MARK_OUTLINE)
    return np.asarray(picture)


def measurement_rows(measurements: Sequence[Labelled]) -> str:
    """The measurements as a numbered table, the numbers those drawn on the picture."""
    rows = "".join(f"<tr><th>{number}</th><td>{html.escape(m.kind.title)}</td><td>{html.escape('; '.join(lines))}"
                   f"</td></tr>" for number, (m, lines) in enumerate(measurements, start=1))
    return f"<h2>Measurements</h2><table>{rows}</table>" if rows else ""


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)


def _patient_rows(result: ExportedExplanation) -> list[tuple[str, str]]:
    rows = []
    for label, keyword in IDENTIFYING:
        value = result.source.get(keyword)
        if value:
            text = str(value)
            if keyword == "PatientName":
                text = PersonName(value).family_comma_given()
            elif keyword.endswith("Date") and len(text) == 8 and text.isdigit():
                text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
            rows.append((label, text))
    return rows


def report_html(result: ExportedExplanation, deidentify: bool = False, measurements: Sequence[Labelled] = ()) -> str:
    """The report as one HTML document (see the module's docstring); ``measurements`` are on the frame's grid.

    :class:`~exports.errors.ExportError` when de-identifying a source with burned-in annotation.
    """
    if deidentify:
        refuse_burned_in(result.source)
    low, high = result.overlay_levels
    summary = [("Model", result.model_name), ("Method", result.method), ("Target", result.target),
               ("Probability", f"{result.score:.3f}")]
    if result.units:
        summary.append(("Heat measures", result.units))
    figures = "".join(f"<tr><th>{html.escape(name)}</th><td class='value'>{value:.3f}</td>"
                      f"<td class='note'>{html.escape(hint)}</td></tr>" for name, value, hint in named_figures(result.scored_figures))
    trust = (f"<h2>How far to trust the map</h2><table>{figures}</table>" if figures
             else "<p class='note'>No trust figures were computed for this map.</p>")
    verdict = f"<p class='verdict'>{html.escape(result.verdict)}</p>" if result.verdict else ""
    patient = ("<p class='note'>De-identified: no patient or study details.</p>" if deidentify
               else f"<table>{_rows(_patient_rows(result))}</table>")
    made = datetime.now().strftime("%Y-%m-%d %H:%M")
    units = f": {html.escape(result.units)}" if result.units else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Key image: {html.escape(result.headline())}</title>
<style>{STYLE}</style></head>
<body>
<h1>Key image: AI explanation of “{html.escape(result.target)}”</h1>
<p class="note">Derived from an AI explanation, not an acquired image: the heat shows what changed the
model's output, not a diagnosis.</p>
{patient}
<div class="pictures">
<img class="image" src="{png_data_uri(marked(result.shown, measurements))}" alt="image as read">
<img class="image" src="{png_data_uri(result.overlay())}" alt="image with heatmap">
<div class="bar"><img src="{png_data_uri(colour_bar_pixels(result.show))}" alt="colour scale">
<span class="top">{high:.3g}</span><span class="bottom">{low:.3g}</span></div>
<div class="caption">Image as read</div>
<div class="caption">With the heatmap ({html.escape(result.method)}{units})</div>
</div>
<div class="columns">
<div><table>{_rows(summary)}</table>{verdict}</div>
<div>{trust}</div>
</div>
{measurement_rows(measurements)}
<p class="note">Lightbox, {made}.</p>
</body></html>
"""


def write_report(result: ExportedExplanation, path: str | Path, deidentify: bool = False,
                 measurements: Sequence[Labelled] = ()) -> None:
    """Write the report; :class:`~exports.dicom_objects.ExportError` with one line if it cannot be."""
    try:
        Path(path).write_text(report_html(result, deidentify, measurements), encoding="utf-8")
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
