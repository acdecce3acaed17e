"""``main.py model export`` and ``model check`` on the architectures users bring, built here with random weights."""

from __future__ import annotations

import json

import pytest
import torch

import main
from cli import model_command
from tests.model_zoo import ZOO

#: Small inputs keep the export and the timing to seconds.
SIDE = 64


def resnet18() -> torch.nn.Module:
    return ZOO["resnet18"].build(1, 2)


def densenet121() -> torch.nn.Module:
    return ZOO["densenet121"].build(1, 3)


@pytest.mark.parametrize(("factory", "labels", "activation"), [
    ("resnet18", ["normal", "finding"], "softmax"),
    ("densenet121", ["effusion", "nodule", "pneumothorax"], "sigmoid"),
])
def test_a_trained_module_is_exported_and_checked(tmp_path, capsys, monkeypatch, factory, labels, activation):
    monkeypatch.setattr(model_command, "BATCHES", (1, 2))  # the sweep's large batches cost a DenseNet minutes here
    torch.manual_seed(0)
    weights = tmp_path / "weights.pth"
    torch.save(globals()[factory]().state_dict(), weights)
    out = tmp_path / f"{factory}.pt2"
    assert main.main(["model", "export", f"tests.cli.test_model_command:{factory}", "--weights", str(weights),
                      "--labels", *labels, "--input", f"1x{SIDE}x{SIDE}", "--mean", "0.5", "--std", "0.25",
                      "--activation", activation, "--out", str(out)]) == 0
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["labels"] == labels and card["input"]["height"] == SIDE and card["activation"] == activation
    capsys.readouterr()

    assert main.main(["model", "check", str(out), "--json", "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output_shape"] == [1, len(labels)] and report["dynamic_batch"]
    assert list(report["demo_probabilities"]) == labels
    assert all(0 <= p <= 1 for p in report["demo_probabilities"].values())
    assert report["seconds_per_forward_batch_1"] > 0 and report["best_batch"] >= 1
    assert report["incremental_inference"] is True and report["safety"].startswith("passed")


def test_the_plain_report_is_one_line_per_question(tmp_path, capsys):
    from tests.model_factory import SmallCnn, card_for, export_model

    path = export_model(SmallCnn(), card_for(48, 64), tmp_path)
    assert main.main(["model", "check", str(path), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["card", "safety check", "output shape", "demo study", "forward",
                                                      "incremental inference (faster occlusion)"]


def test_a_bad_factory_or_card_is_one_line(tmp_path, capsys):
    common = ["--labels", "a", "--input", "1x32x32", "--mean", "0", "--std", "1", "--out", str(tmp_path / "m.pt2")]
    assert main.main(["model", "export", "no_such_module:make", *common, "--activation", "sigmoid"]) == 2
    assert main.main(["model", "export", "tests.cli.test_model_command:resnet18", *common,
                      "--activation", "softmax"]) == 2  # softmax over one label
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 2 and "no_such_module" in errors[0] and "softmax" in errors[1]
    assert main.main(["model", "check", str(tmp_path / "missing.pt2")]) == 2
