"""Model files: the card is validated, and an archive that would run code is never loaded."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch

from explain.devices import DeviceError, pick_device
from explain.model_card import ModelCard, ModelCardError
from explain.model_file import ModelLoadError, load_model
from tests.model_factory import SmallCnn, card_for, export_model

CPU = torch.device("cpu")


class CreatesAFile:
    """A pickle payload that, if ever unpickled in full, leaves a file behind as evidence."""

    def __init__(self, evidence: Path) -> None:
        self.evidence = evidence

    def __reduce__(self):
        return (open, (str(self.evidence), "w"))


def rewrite_archive(path: Path, change) -> None:
    """Rewrite a zip archive member by member through ``change(name, data) -> data``."""
    with zipfile.ZipFile(path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for info, data in members:
            target.writestr(info, change(info.filename, data))


@pytest.fixture()
def model_path(tmp_path):
    return export_model(SmallCnn(), card_for(32, 32), tmp_path)


def test_a_good_model_loads_and_gives_probabilities(model_path):
    model = load_model(model_path, CPU)
    assert model.batched and model.card.labels == ("normal", "finding")
    probabilities = model.probabilities(torch.zeros(3, 1, 32, 32))
    assert probabilities.shape == (3, 2)
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(3))


def test_weights_are_frozen_channels_last_and_the_input_still_gets_gradients(model_path):
    model = load_model(model_path, CPU)
    assert not any(p.requires_grad for p in model.module.parameters())
    kernels = [p for p in model.module.parameters() if p.dim() == 4]
    assert kernels and all(k.is_contiguous(memory_format=torch.channels_last) for k in kernels)
    x = torch.randn(2, 1, 32, 32, requires_grad=True)
    model.probabilities(x)[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_pickled_sample_inputs_are_refused_without_running_them(model_path, tmp_path):
    evidence = tmp_path / "ran.txt"
    payload = pickle.dumps(CreatesAFile(evidence))
    rewrite_archive(model_path, lambda name, data: payload if name.endswith("sample_inputs/model.pt") else data)
    with pytest.raises(ModelLoadError, match="would run code"):
        load_model(model_path, CPU)
    assert not evidence.exists()


def test_pickled_weight_payload_is_refused(model_path, tmp_path):
    evidence = tmp_path / "ran.txt"
    payload = pickle.dumps(CreatesAFile(evidence))

    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name.endswith("data/weights/weight_0"):
            return payload
        return data

    rewrite_archive(model_path, change)
    with pytest.raises(ModelLoadError, match="not plain weights"):
        load_model(model_path, CPU)
    assert not evidence.exists()


def test_pickled_plain_tensors_are_accepted(model_path):
    """A weight pickled by torch.save is fine: the safe unpickler reads it."""
    buffer = io.BytesIO()
    torch.save(((torch.zeros(2, 1, 32, 32),), {}), buffer)
    rewrite_archive(model_path, lambda name, data: buffer.getvalue() if name.endswith("sample_inputs/model.pt") else data)
    load_model(model_path, CPU)


def test_not_an_archive(tmp_path):
    bogus = tmp_path / "model.pt2"
    bogus.write_bytes(b"not a zip")
    bogus.with_suffix(".json").write_text(json.dumps(card_for(8, 8).to_dict()))
    with pytest.raises(ModelLoadError, match="not a torch.export archive"):
        load_model(bogus, CPU)


def test_card_must_match_the_model(model_path):
    card = card_for(32, 32, labels=("a", "b", "c"))
    with pytest.raises(ModelLoadError, match="outputs of shape \\(1, 2\\); its card names 3 labels"):
        load_model(model_path, CPU, card)
    with pytest.raises(ModelLoadError, match="does not accept"):
        load_model(model_path, CPU, card_for(32, 32, channels=3))


def test_missing_or_broken_card(model_path):
    model_path.with_suffix(".json").write_text("{ nope")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_model(model_path, CPU)
    model_path.with_suffix(".json").unlink()
    with pytest.raises(ModelLoadError, match="cannot read the model card"):
        load_model(model_path, CPU)


@pytest.mark.parametrize("change, message", [
    ({"labels": []}, "labels"), ({"activation": "relu"}, "activation"),
    ({"input": {"height": 8}}, "integer height"), ({"window": [40, -1]}, "window width"),
    ({"input": {"height": 8, "width": 8, "channels": 2, "mean": [0.5], "std": [1, 1]}}, "one value per channel"),
])
def test_card_validation_messages(change, message):
    data = {**card_for(8, 8).to_dict(), **change}
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data)


def test_target_by_name_index_or_default():
    card = card_for(8, 8, labels=("no effusion", "effusion"))
    assert card.label_index(None) == 1 and card.label_index("no effusion") == 0 and card.label_index("0") == 0
    with pytest.raises(ModelCardError, match="unknown target"):
        card.label_index("pneumonia")


def test_model_exported_with_a_batch_of_one_still_works(tmp_path):
    path = export_model(SmallCnn(), card_for(16, 16), tmp_path, dynamic_batch=False)
    assert not load_model(path, CPU).batched


def test_missing_devices_are_a_clear_message():
    assert pick_device("cpu") == CPU
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no usable CUDA GPU"):
            pick_device("cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        pick_device("tpu")
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
