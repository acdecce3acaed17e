"""A one-page key-image report of an explanation: one self-contained HTML file, printable on A4.

No Qt here, so the command line can write it too::

    write_report(result, "report.html", deidentify=True)

``result`` is a :class:`~exports.dicom_objects.ExportedExplanation`. The page shows the image as
read and with the heat over it, the colour bar, the model, method, target and its probability,
the trust figures and verdict when they were computed. The pictures are embedded as PNG, so the
file opens anywhere with nothing beside it. Patient and study details appear only when the
export is not de-identified; the source's UIDs never do. A de-identified report of a source with
burned-in annotation is refused, as the DICOM exports are: the pictures would show the text.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from io import BytesIO
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.valuerep import PersonName

from exports.deidentify import refuse_burned_in
from exports.dicom_objects import ExportedExplanation, ExportError
from exports.heat_colours import colour_table
from exports.trust_text import named_figures

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


def report_html(result: ExportedExplanation, deidentify: bool = False) -> str:
    """The report as one HTML document (see the module's docstring).

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
                      f"<td class='note'>{html.escape(hint)}</td></tr>" for name, value, hint in named_figures(result.figures))
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
<img class="image" src="{png_data_uri(result.shown)}" alt="image as read">
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
<p class="note">Lightbox, {made}.</p>
</body></html>
"""


def write_report(result: ExportedExplanation, path: str | Path, deidentify: bool = False) -> None:
    """Write the report; :class:`~exports.dicom_objects.ExportError` with one line if it cannot be."""
    try:
        Path(path).write_text(report_html(result, deidentify), encoding="utf-8")
    except OSError as error:
        raise ExportError(f"cannot write {path}: {error.strerror or error}") from None
