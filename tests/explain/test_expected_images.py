"""What a model's card says it expects, and how an image's header is compared with it."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from dicom.bundled import DEMO_MODEL, DEMO_STUDY
from explain.expected_images import ExpectedImages, check_image
from explain.model_card import ModelCard, ModelCardError
from tests.model_factory import card_for

CHEST = {"modality": ["CR", "DX"], "body_part": ["CHEST"], "view": ["PA", "AP"],
         "photometric": ["MONOCHROME1", "MONOCHROME2"], "min_rows": 224, "min_columns": 224}


def card_with(expects: object) -> dict:
    return {**card_for(8, 8).to_dict(), "expects": expects}


def header(path: str) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


def test_a_card_declares_what_it_expects_and_writes_it_back():
    card = ModelCard.from_dict(card_with({**CHEST, "modality": [" cr", "DX"]}))
    assert card.expects == ExpectedImages(("CR", "DX"), ("CHEST",), ("PA", "AP"), ("MONOCHROME1", "MONOCHROME2"),
                                          224, 224)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert ModelCard.from_dict(card_with({"modality": ["CT"]})).expects.to_dict() == {"modality": ["CT"]}
    assert "expects" not in card_for(8, 8).to_dict(), "a card without it reads and writes as before"


@pytest.mark.parametrize("expects, says", [
    ({"modality": "DX"}, "expects 'modality' must be a list"),
    ({"view": []}, "expects 'view' must be a list"),
    ({"body_part": [7]}, "expects 'body_part' must be a list"),
    ({"body_part": ["A" * 17]}, "of 1 to 16 characters"),
    ({"bodypart": ["CHEST"]}, "'expects' must be an object with any of"),
    (["DX"], "'expects' must be an object"),
    ({"min_rows": 0}, "expects 'min_rows' must be a whole number"),
    ({"min_columns": 12.5}, "expects 'min_columns' must be a whole number"),
    ({"min_rows": True}, "expects 'min_rows' must be a whole number"),
])
def test_a_malformed_expects_is_refused_in_one_line(expects, says):
    with pytest.raises(ModelCardError, match=says) as refused:
        ModelCard.from_dict(card_with(expects))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("name, modality, size", [("CT_small.dcm", "CT", 128), ("MR_small.dcm", "MR", 64)])
def test_ct_and_mr_are_outside_a_chest_radiograph_model(name, modality, size):
    fit = check_image(ModelCard.from_dict(card_with(CHEST)).expects, header(get_testdata_file(name)))
    assert not fit.fits
    assert fit.line() == (f"This model expects modality CR or DX, at least 224 rows, at least 224 columns; "
                          f"this image has modality {modality}, {size} rows, {size} columns")


def test_a_missing_attribute_is_unknown_not_a_mismatch_and_case_is_ignored():
    expected = ExpectedImages(modality=("DX",), body_part=("CHEST",), view=("PA",), min_rows=100)
    radiograph = Dataset()
    radiograph.Modality, radiograph.BodyPartExamined, radiograph.Rows = "dx ", "Chest", 512
    fit = check_image(expected, radiograph)
    assert fit.fits and fit.unknown == ("view PA",)
    assert fit.line() == "This model expects view PA; the file does not say, so that was not checked"
    assert check_image(None, radiograph).line() == ""


def test_the_demo_model_accepts_the_demo_study():
    card = ModelCard.read(DEMO_MODEL.with_suffix(".json"))
    assert card.expects is not None and card.expects.modality == ("CR", "DX")
    assert check_image(card.expects, header(str(DEMO_STUDY))) == check_image(None, Dataset())
