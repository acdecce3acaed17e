"""``python main.py explain``: JSON lines as they happen, the .npz contract, clear failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dicom.image import load_frame
from dicom.model_input import model_unit_image
from dicom.series import open_paths
from explain.model_file import load_model
from explain.occlusion import OcclusionParams, occlusion
from explain.preprocessing import to_model_input
from tests import dicom_factory as factory
from tests.model_factory import Indifferent, RegionDetector, SmallCnn, card_for, export_model

ROOT = Path(__file__).resolve().parents[2]


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", *args],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    model = export_model(RegionDetector((8, 24, 30, 50)), card_for(48, 64), folder)
    image = factory.write_radiograph(folder / "dx.dcm", rows=120, cols=200, photometric="MONOCHROME1")
    return model, image


def test_json_lines_and_npz(case, tmp_path):
    model, image = case
    out = tmp_path / "result.npz"
    result = explain(str(image), "--model", str(model), "--method", "occlusion", "--window", "8", "--stride", "4",
                     "--baseline", "mean", "--json", "--out", str(out))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) > 2
    assert [line["progress"] for line in lines] == sorted(line["progress"] for line in lines)
    assert [line["final"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert all(b["elapsed"] >= a["elapsed"] for a, b in zip(lines, lines[1:]))
    final = lines[-1]
    assert final["target"] == "finding" and final["target_index"] == 1 and 0 < final["score"] < 1
    for figure in ("deletion_auc", "insertion_auc", "aopc", "aopc_random"):
        assert isinstance(final[figure], float)
    assert final["aopc"] > final["aopc_random"], "occlusion of a box detector beats a random order"

    saved = np.load(out)
    loaded = load_model(model, torch.device("cpu"))
    x = to_model_input(model_unit_image(load_frame(open_paths([image]).all_series()[0].frames[0]), loaded.card.window), loaded.card.input)
    np.testing.assert_array_equal(saved["model_input"], x.numpy())
    expected = list(occlusion(loaded, x, 1, OcclusionParams(8, 4, "mean")))[-1]
    np.testing.assert_allclose(saved["attribution"], expected.attribution, rtol=1e-6, atol=1e-9)
    assert saved["attribution"].dtype == np.float32 and saved["attribution"].shape == (1, 48, 64)
    assert saved["heatmap"].shape == (120, 200) and saved["heatmap"].dtype == np.float32
    assert int(saved["target"]) == 1 and float(saved["score"]) == pytest.approx(final["score"])
    # The heat lies where the model looks, carried back onto the image's own pixels.
    rows, columns = np.unravel_index(np.nanargmax(saved["heatmap"]), saved["heatmap"].shape)
    assert 8 * 120 / 48 - 3 <= rows <= 24 * 120 / 48 + 3 and 30 * 200 / 64 - 3 <= columns <= 50 * 200 / 64 + 3


def test_a_blank_map_is_reported_in_one_line(case, tmp_path):
    _, image = case
    model = export_model(Indifferent(), card_for(48, 64), tmp_path)
    options = ("--model", str(model), "--method", "perturbation", "--iterations", "10", "--no-trust")
    plain = explain(str(image), *options)
    assert plain.returncode == 0, plain.stderr
    (note,) = [line for line in plain.stdout.splitlines() if line.startswith("note: ")]
    assert "No region found" in note and "area weight" in note
    final = json.loads(explain(str(image), *options, "--json").stdout.splitlines()[-1])
    assert final["region_found"] == 0.0 and final["notes"] == note.removeprefix("note: ")


def test_a_saturated_probability_is_warned_of_and_the_log_odds_score_recorded(case, tmp_path):
    _, image = case
    model = export_model(RegionDetector((8, 24, 30, 50), offset=30.0), card_for(48, 64), tmp_path)
    options = (str(image), "--model", str(model), "--window", "8", "--stride", "4", "--no-trust", "--json")
    plain = explain(*options)
    assert plain.returncode == 0, plain.stderr
    assert "warning: probability saturated at 1.000" in plain.stderr
    final = json.loads(plain.stdout.splitlines()[-1])
    assert final["explained_score"] == "probability" and "saturated at 1.000" in final["notes"]
    out = tmp_path / "odds.npz"
    odds = explain(*options, "--score", "log-odds", "--out", str(out))
    assert odds.returncode == 0 and "warning" not in odds.stderr, odds.stderr
    final = json.loads(odds.stdout.splitlines()[-1])
    assert final["explained_score"] == "log-odds" and final["units"] == "drop in log-odds" and final["notes"] == ""
    assert final["score"] == pytest.approx(1.0) and final["score_log_odds"] > 20
    saved = np.load(out)
    assert str(saved["explained_score"]) == "log-odds" and np.abs(saved["heatmap"]).max() > 0


def test_png_overlay(case, tmp_path):
    from skimage.io import imread

    model, image = case
    out = tmp_path / "overlay.png"
    assert explain(str(image), "--model", str(model), "--out", str(out)).returncode == 0
    picture = imread(out)
    assert picture.shape == (120, 200, 3)
    red_minus_blue = picture[..., 0].astype(int) - picture[..., 2].astype(int)
    # The box, rows 8-24 and columns 30-50 of the 48 x 64 input, is rows 20-60, columns 94-156 here.
    assert red_minus_blue[24:56, 100:150].mean() > red_minus_blue[80:, :].mean() + 20, "heat is drawn over the box"


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent/model.pt2"], "no model file"),
    (["--target", "pneumonia"], "unknown target"),
    (["--baseline", "zero"], "invalid parse_baseline value"),
    (["--method", "gradcam"], "Grad-CAM needs a convolutional feature map"),  # the box detector has none
])
def test_failures_are_one_line(case, args, message):
    model, image = case
    result = explain(str(image), "--model", str(model), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_grad_cam_takes_a_layer_by_name_and_says_which(case, tmp_path):
    _, image = case
    model = export_model(SmallCnn(), card_for(48, 64), tmp_path)
    result = explain(str(image), "--model", str(model), "--method", "gradcampp", "--layer", "relu", "--no-trust")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Grad-CAM++ of 'finding'")
    assert "note: layer relu (features.1): 8 feature maps of 24 x 32, upsampled to the image" in result.stdout


def test_not_a_dicom_file(case, tmp_path):
    model, _ = case
    junk = factory.write_junk(tmp_path / "junk.dcm")
    result = explain(str(junk), "--model", str(model))
    assert result.returncode == 2 and result.stderr.strip() == f"error: {junk}: not a DICOM file"


def test_sanity_adds_the_randomization_check_and_no_trust_skips_figures(case):
    model, image = case
    result = explain(str(image), "--model", str(model), "--method", "ig", "--steps", "8", "--json", "--sanity")
    final = json.loads(result.stdout.splitlines()[-1])
    # The box detector has no weights to randomize: its map cannot change, and the check says so.
    assert final["randomized_rank_correlation"] == pytest.approx(1.0) and final["sanity_passed"] == 0.0
    assert "completeness_gap" in final and abs(final["completeness_gap"]) < 0.05
    quick = explain(str(image), "--model", str(model), "--json", "--no-trust")
    assert "deletion_auc" not in json.loads(quick.stdout.splitlines()[-1])


def test_fast_mode_is_reported_and_close_to_the_exact_map(case, tmp_path):
    _, image = case
    model = export_model(SmallCnn(), card_for(48, 64), tmp_path)  # convolutions: what autocast changes
    outs = {name: tmp_path / f"{name}.npz" for name in ("exact", "fast")}
    common = (str(image), "--model", str(model), "--window", "8", "--stride", "4", "--json", "--no-trust")
    exact = explain(*common, "--out", str(outs["exact"]))
    fast = explain(*common, "--fast", "--out", str(outs["fast"]))
    assert fast.returncode == 0, fast.stderr
    assert json.loads(fast.stdout.splitlines()[-1])["fast"] is True
    assert json.loads(exact.stdout.splitlines()[-1])["fast"] is False
    exact_map, fast_map = (np.load(outs[name])["attribution"] for name in ("exact", "fast"))
    assert not np.array_equal(exact_map, fast_map) and np.abs(exact_map - fast_map).max() < 0.01
