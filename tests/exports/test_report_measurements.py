"""The key-image report's measurements: drawn and numbered on the image as read, and listed as text."""

from __future__ import annotations

import base64
from io import BytesIO

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from dicom.measurements import Kind, Measurement
from exports.dicom_objects import ExportedExplanation
from exports.key_image_report import MARK_COLOUR, marked, report_html

LINE = Measurement(Kind.LENGTH, ((10.0, 20.5), (50.0, 20.5)))
ROI = Measurement(Kind.ELLIPSE, ((60.0, 40.0), (80.0, 60.0)))
MEASUREMENTS = [(LINE, ("28.0 mm",)), (ROI, ("Mean 40.0 HU  SD 0.0", "Min 40  Max 40 HU", "Area 154.0 mm²"))]


def is_mark(rgb: np.ndarray) -> np.ndarray:
    return np.abs(rgb.astype(int) - MARK_COLOUR).max(axis=-1) < 40


def test_the_marks_lie_on_the_measured_pixels():
    picture = marked(np.full((96, 128), 100, dtype=np.uint8), MEASUREMENTS)
    assert is_mark(picture[20, 15:45]).all(), "the line runs along row 20"
    assert is_mark(picture[50, 58:62]).any() and not is_mark(picture[50, 65:75]).any(), "an ellipse is an outline"
    assert not is_mark(picture[70:96, :55]).any()


def test_the_report_lists_each_measurement_with_its_number_and_draws_them():
    result = ExportedExplanation(Dataset(), 0, np.full((96, 128), 100, dtype=np.uint8), np.zeros((96, 128), np.float32),
                                 "Occlusion", "demo", "effusion", 0.9)
    page = report_html(result, deidentify=True, measurements=MEASUREMENTS)
    assert "<h2>Measurements</h2>" in page
    assert "<th>1</th><td>Length</td><td>28.0 mm</td>" in page
    assert "<th>2</th><td>Ellipse ROI</td><td>Mean 40.0 HU  SD 0.0; Min 40  Max 40 HU; Area 154.0 mm²</td>" in page
    as_read = page.split('<img class="image" src="data:image/png;base64,')[1].split('"')[0]
    assert is_mark(np.asarray(Image.open(BytesIO(base64.b64decode(as_read))).convert("RGB"))[20, 15:45]).all()
    assert "Measurements" not in report_html(result, deidentify=True)
