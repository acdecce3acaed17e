"""Phantoms: the files, their reproducibility, and a lesion mask that tells the truth."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pydicom
import pytest
from make_demo_study import mask_path
from make_phantoms import LABELS_FILE, main, plan_phantom, render_phantom, write_phantoms
from PIL import Image
from scipy import ndimage

from dicom.series import open_paths

SMALL_ROWS = 128  # enough to test the files; the physics is the same at any size


def read_labels(folder: Path) -> list[dict[str, str]]:
    with open(folder / LABELS_FILE, newline="", encoding="ascii") as stream:
        return list(csv.DictReader(stream))


def test_the_command_writes_every_phantom_with_its_mask_and_label(tmp_path: Path) -> None:
    assert main(["--out", str(tmp_path), "--count", "6", "--seed", "3",
                 "--rows", str(SMALL_ROWS), "--workers", "1"]) == 0
    labels = read_labels(tmp_path)
    assert [row["name"] for row in labels] == [f"phantom-{i:04d}" for i in range(6)]
    assert {row["effusion"] for row in labels} == {"0", "1"}, "this seed draws both classes"
    for row in labels:
        dataset = pydicom.dcmread(tmp_path / f"{row['name']}.dcm")
        mask = Image.open(mask_path(tmp_path / f"{row['name']}.dcm"))
        assert mask.mode == "L" and mask.size == (dataset.Columns, dataset.Rows)
        values = set(np.unique(np.asarray(mask)).tolist())
        if row["effusion"] == "1":
            assert values == {0, 255} and row["side"] in {"right", "left", "both"}
        else:
            assert values == {0} and row["side"] == "none"


def test_a_seed_gives_the_same_bytes_with_any_number_of_workers(tmp_path: Path) -> None:
    write_phantoms(tmp_path / "one", count=4, seed=11, rows=SMALL_ROWS, workers=1)
    write_phantoms(tmp_path / "two", count=4, seed=11, rows=SMALL_ROWS, workers=2)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert len(names) == 4 * 2 + 1
    assert names == sorted(p.name for p in (tmp_path / "two").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), name


def test_each_phantom_is_a_body_of_its_own() -> None:
    plans = [plan_phantom(seed, index) for seed in (0, 1) for index in range(3)]
    assert len({plan.patient for plan in plans}) == len(plans)
    again = plan_phantom(1, 2)
    assert (again.patient, again.effusions) == (plans[-1].patient, plans[-1].effusions)


def test_the_files_are_dx_radiographs_the_viewer_reads(tmp_path: Path) -> None:
    write_phantoms(tmp_path, count=2, seed=5, rows=256, workers=1)
    collection = open_paths([tmp_path])
    frames = [series.frames[0] for series in collection.all_series()]
    assert len(frames) == 2
    headers = [frame.header for frame in frames]
    for header in headers:
        assert header.Modality == "DX" and header.PhotometricInterpretation == "MONOCHROME2"
        assert header.BitsStored == 12 and (header.Rows, header.Columns) == (256, 220)
        assert [float(v) for v in header.ImagerPixelSpacing] == pytest.approx([1.4, 1.4])
        assert float(header.WindowWidth) > 0
    assert len({header.PatientID for header in headers}) == 2
    assert len({header.SOPInstanceUID for header in headers}) == 2


def effusion_phantom(seed: int = 0):
    """The first phantom of a seed that has an effusion."""
    return next(p for p in (plan_phantom(seed, i) for i in range(20)) if p.effusions)


def test_the_fluid_brightens_exactly_the_masked_region() -> None:
    """The same film without its fluid is darker inside the mask and the same far from it.

    Fluid replaces lung air, so the masked region must be denser (brighter) than the same
    lung without it; away from the fluid nothing may change beyond the slight global shift
    of the detector's automatic scaling, or a model could find the finding elsewhere.
    """
    phantom = effusion_phantom()
    with_fluid = render_phantom(phantom, rows=256)
    without = render_phantom(phantom, rows=256, with_fluid=False)
    lesion = with_fluid.lesion
    assert lesion.any() and not without.lesion.any()
    difference = with_fluid.pixels.astype(float) - without.pixels.astype(float)
    far = ~ndimage.binary_dilation(lesion, iterations=40)
    assert difference[lesion].mean() > 200  # of 4095: a plain opacity
    assert abs(difference[far].mean()) < 0.15 * difference[lesion].mean()
    assert np.percentile(np.abs(difference[far] - np.median(difference[far])), 99) < 20
