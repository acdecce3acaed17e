"""``main.py explain`` refuses an image outside what the model's card expects, unless ``--force``."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from explain.model_card import ModelCard
from tests import dicom_factory as factory
from tests.cli.test_explain import explain
from tests.model_factory import RegionDetector, card_for, export_model

OCCLUSION = ("--method", "occlusion", "--window", "8", "--stride", "8", "--no-trust")
OUTSIDE = "This model expects modality DX; this image has modality CT"


@pytest.fixture(scope="module")
def chest_model(tmp_path_factory):
    """A model whose card expects DX chest images, a chest radiograph, and a CT slice."""
    folder = tmp_path_factory.mktemp("expects")
    card = ModelCard.from_dict({**card_for(48, 64).to_dict(),
                                "expects": {"modality": ["DX"], "body_part": ["chest"]}})
    model = export_model(RegionDetector((8, 24, 30, 50)), card, folder)
    chest = factory.write_radiograph(folder / "images" / "dx.dcm", rows=120, cols=200)
    ct = shutil.copy(get_testdata_file("CT_small.dcm"), folder / "images" / "ct.dcm")
    return model, chest, ct


def summary(folder: Path) -> dict[str, dict[str, str]]:
    """The batch summary's rows by image path."""
    with open(folder / "summary.csv", newline="") as file:
        return {row["path"]: row for row in csv.DictReader(file)}


def test_an_image_outside_the_card_is_refused_in_one_line_unless_forced(chest_model, tmp_path):
    model, _chest, ct = chest_model
    refused = explain(str(ct), "--model", str(model), *OCCLUSION, "--out", str(tmp_path / "ct.npz"))
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr == f"error: {OUTSIDE} (--force explains it anyway)\n"
    assert not (tmp_path / "ct.npz").exists()
    forced = explain(str(ct), "--model", str(model), *OCCLUSION, "--force", "--out", str(tmp_path / "ct.npz"))
    assert forced.returncode == 0, forced.stderr
    assert f"warning: {OUTSIDE}\n" in forced.stderr and (tmp_path / "ct.npz").is_file()


def test_an_image_the_card_fits_is_explained_without_a_word(chest_model):
    model, chest, _ct = chest_model
    result = explain(str(chest), "--model", str(model), *OCCLUSION)
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr


def test_a_batch_fails_the_image_with_its_reason_and_force_explains_it_in_the_same_folder(chest_model, tmp_path):
    model, chest, ct = chest_model
    out = tmp_path / "out"
    first = explain(str(chest.parent), "--model", str(model), *OCCLUSION, "--out", str(out))
    assert first.returncode == 1, first.stderr
    assert f"failed: {ct}: {OUTSIDE} (--force explains it anyway)" in first.stderr
    rows = summary(out)
    assert rows[str(ct)]["status"] == "failed" and rows[str(chest)]["image_check"] == ""
    # --force says which images are explained, not how: the folder's settings still hold.
    second = explain(str(chest.parent), "--model", str(model), *OCCLUSION, "--force", "--out", str(out))
    assert second.returncode == 0, second.stderr
    rows = summary(out)
    assert rows[str(ct)]["status"] == "done" and rows[str(chest)]["status"] == "skipped"
    record = json.loads((out / f"{rows[str(ct)]['name']}.json").read_text())
    assert record["image_check"] == OUTSIDE
