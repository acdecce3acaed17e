"""Measurement maths on synthetic files whose spacing and values are known: lengths, angles, regions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dicom.image import load_frame
from dicom.measurements import (
    Calibration,
    Kind,
    Measurement,
    angle,
    calibration,
    describe,
    length,
    region_area,
    region_stats,
)
from tests import dicom_factory as factory
from tests.dicom.test_pipeline import only_frame

#: Rows 0.5 mm apart, columns 2 mm apart: a pixel four times as wide as it is tall.
ANISOTROPIC = Calibration(row_mm=0.5, column_mm=2.0, source="patient", stated=False)


def test_a_3_4_5_line_on_anisotropic_pixels_measures_5_mm():
    # 1.5 columns of 2 mm and 8 rows of 0.5 mm: 3 mm across, 4 mm down.
    assert length((10.0, 20.0), (11.5, 28.0), ANISOTROPIC) == pytest.approx(5.0)
    assert length((10.0, 20.0), (11.5, 28.0), Calibration()) == pytest.approx(math.hypot(1.5, 8.0))


def test_an_angle_is_measured_in_millimetres_not_pixels():
    # Arms of 1 column (2 mm) and 4 rows (2 mm): a right angle on screen is a right angle in the patient,
    # and a diagonal of 1 column by 4 rows is 45 degrees, not the 76 degrees its pixels suggest.
    assert angle((1.0, 0.0), (0.0, 0.0), (0.0, 4.0), ANISOTROPIC) == pytest.approx(90.0)
    assert angle((1.0, 0.0), (0.0, 0.0), (1.0, 4.0), ANISOTROPIC) == pytest.approx(45.0)
    assert angle((1.0, 0.0), (0.0, 0.0), (-1.0, 0.0), ANISOTROPIC) == pytest.approx(180.0)


def test_region_areas_are_the_shapes_own_in_square_millimetres():
    rectangle = Measurement(Kind.RECTANGLE, ((2.0, 2.0), (12.0, 42.0)))  # 20 mm x 20 mm
    ellipse = Measurement(Kind.ELLIPSE, ((12.0, 42.0), (2.0, 2.0)))  # corners in any order
    assert region_area(rectangle, ANISOTROPIC) == pytest.approx(400.0)
    assert region_area(ellipse, ANISOTROPIC) == pytest.approx(100.0 * math.pi)


def ct_with_known_hu(tmp_path, hu: np.ndarray, **options):
    """A CT whose stored values are (HU + 1024) / 2: slope 2 and intercept -1024 give ``hu`` back."""
    stored = ((hu + 1024) // 2).astype(np.uint16)
    return load_frame(only_frame(factory.write_image(tmp_path / "ct.dcm", stored, modality="CT", slope=2.0,
                                                     intercept=-1024.0, **options)))


def test_region_statistics_are_in_hounsfield_units_on_the_pixels_whose_centres_are_inside(tmp_path):
    hu = np.full((40, 40), -1000, dtype=np.int32)
    hu[10:20, 10:20] = np.where(np.indices((10, 10)).sum(axis=0) % 2 == 0, 30, 50)  # a 40 HU chequerboard
    image = ct_with_known_hu(tmp_path, hu)
    stats = region_stats(Measurement(Kind.RECTANGLE, ((10.0, 10.0), (20.0, 20.0))), image)
    assert (stats.mean, stats.sd, stats.minimum, stats.maximum, stats.pixels) == (40.0, 10.0, 30.0, 50.0, 100)
    # One pixel more on every side takes in 36 pixels of air.
    wider = region_stats(Measurement(Kind.RECTANGLE, ((9.0, 9.0), (21.0, 21.0))), image)
    assert wider.pixels == 144 and wider.minimum == -1000.0
    assert wider.mean == pytest.approx((100 * 40 - 44 * 1000) / 144)


def test_an_ellipse_takes_the_pixels_inside_its_curve(tmp_path):
    hu = np.zeros((40, 40), dtype=np.int32)
    for rows, columns in ((slice(0, 3), slice(0, 3)), (slice(0, 3), slice(17, 20)), (slice(17, 20), slice(0, 3)),
                          (slice(17, 20), slice(17, 20))):
        hu[rows, columns] = 1000  # bright corners of the bounding box, outside the ellipse
    image = ct_with_known_hu(tmp_path, hu)
    stats = region_stats(Measurement(Kind.ELLIPSE, ((0.0, 0.0), (20.0, 20.0))), image)
    y, x = np.mgrid[0:20, 0:20] + 0.5
    assert stats.pixels == int((((x - 10) ** 2 + (y - 10) ** 2) <= 100).sum())
    assert stats.maximum == 0.0


def test_the_label_states_units_and_calibration(tmp_path):
    image = ct_with_known_hu(tmp_path, np.full((20, 20), 40, dtype=np.int32), pixel_spacing=(0.5, 2.0))
    cal = calibration(image.frame)
    assert cal == ANISOTROPIC
    assert describe(Measurement(Kind.LENGTH, ((10.0, 2.0), (11.5, 10.0))), image, cal) == ("5.0 mm",)
    assert describe(Measurement(Kind.RECTANGLE, ((0.0, 0.0), (5.0, 10.0))), image, cal) == (
        "Mean 40.0 HU  SD 0.0", "Min 40  Max 40 HU", "Area 50.0 mm²")


@pytest.mark.parametrize(("spacing", "expected"), [
    ({"pixel_spacing": 0.2, "imager_pixel_spacing": 0.25}, ("10.0 mm (patient)",)),
    ({"imager_pixel_spacing": 0.2}, ("10.0 mm (detector)",)),
    ({}, ("50.0 px (no calibration)",)),
    ({"pixel_spacing": (0.0, 0.2)}, ("50.0 px (no calibration)",)),
])
def test_a_length_says_which_calibration_it_rests_on(tmp_path, spacing, expected):
    path = factory.write_image(tmp_path / "dx.dcm", factory.sample_pixels(64, 64), modality="DX", **spacing)
    image = load_frame(only_frame(path))
    assert describe(Measurement(Kind.LENGTH, ((5.0, 5.0), (55.0, 5.0))), image, calibration(image.frame)) == expected


def test_a_colour_region_has_an_area_and_no_values(tmp_path):
    image = load_frame(only_frame(factory.write_image(tmp_path / "rgb.dcm", photometric="RGB")))
    lines = describe(Measurement(Kind.ELLIPSE, ((0.0, 0.0), (2.0, 2.0))), image, calibration(image.frame))
    assert lines == (f"Area {math.pi:.1f} px² (no calibration)", "No values: colour image")
