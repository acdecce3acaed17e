"""Model files: the card is validated, and an archive that would run code is never loaded."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import pytest
import torch

from explain.devices import DeviceError, pick_device
from explain.model_archive import weights_only_unpickling
from explain.model_card import ModelCard, ModelCardError
from explain.model_file import ModelLoadError, load_model
from tests.model_factory import SmallCnn, card_for, export_model

CPU = torch.device("cpu")
ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.parametrize("change, message", [
    ({"input": {"height": 8, "width": 8, "channels": 1, "mean": [float("nan")], "std": [1]}}, "finite"),
    ({"input": {"height": 8, "width": 8, "channels": 1, "mean": [0], "std": [float("inf")]}}, "finite"),
    ({"window": [float("nan"), 400]}, "finite"), ({"window": [40, float("inf")]}, "finite"),
    ({"input": {"height": 1e400, "width": 8, "channels": 1}}, "whole number from 1 to 4096"),
    ({"input": {"height": 224.5, "width": 8, "channels": 1}}, "whole number"),
    ({"input": {"height": 8, "width": 10**9, "channels": 1}}, "whole number from 1 to 4096"),
    ({"input": {"height": 8, "width": 8, "channels": True}}, "whole number"),
    ({"input": {"height": 8, "width": 8, "channels": "3"}}, "whole number"),
    ({"labels": ["x" * 5000, "b"]}, "at most 200 characters"), ({"labels": [str(k) for k in range(5000)]}, "1000"),
    ({"labels": ["a", "a"]}, "different"), ({"name": {"nested": 1}}, "'name' must be text"),
    ({"window": [1, 2, 3]}, "window"), ({"input": {"height": 8, "width": 8, "channels": 1, "mean": "0.5"}}, "mean"),
])
def test_every_card_field_has_a_type_and_a_finite_range(change, message):
    data = {**card_for(8, 8).to_dict(), **change}
    with pytest.raises(ModelCardError, match=message):
        ModelCard.from_dict(data)


@pytest.mark.parametrize("text, message", [
    ('{"labels": ["a", "b"], "activation": "softmax", "input": {"height": 8, "width": 8, "channels": 1, '
     '"mean": [NaN], "std": [1]}}', "NaN, which is not a number"),
    ('{"labels": ["a", "b"], "activation": "softmax", "input": {"height": 8, "width": 8, "channels": 1}, '
     '"window": [40, Infinity]}', "Infinity, which is not a number"),
    ('{"input": {"height": 1e400, "width": 8, "channels": 1}, "labels": ["a", "b"], "activation": "softmax"}',
     "whole number"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"labels": ["' + "a" * (2 << 20) + '"]}', "larger than 1024 KiB"),
])
def test_hostile_card_files_are_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "model.json"
    path.write_text(text)
    with pytest.raises(ModelCardError, match=message) as refused:
        ModelCard.read(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("special", ["fifo", "endless device"])
def test_a_card_that_is_not_a_regular_file_is_never_read(tmp_path, special):
    path = tmp_path / "model.json"
    if special == "fifo":
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
    else:
        path.symlink_to("/dev/zero")
    with pytest.raises(ModelCardError, match="not a regular file"):
        ModelCard.read(path)


def test_a_model_whose_card_is_hostile_is_refused_by_the_command_line(model_path):
    card = card_for(32, 32).to_dict()
    card["input"]["mean"] = [float("nan")]
    model_path.with_suffix(".json").write_text(json.dumps(card))
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", "--model", str(model_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "NaN" in result.stderr
    assert "Traceback" not in result.stderr


def poisoned(evidence: Path) -> bytes:
    return pickle.dumps(CreatesAFile(evidence))


def plain_tensor() -> bytes:
    """A pickle the safe unpickler accepts: what a checker reading this copy sees."""
    buffer = io.BytesIO()
    torch.save(torch.zeros(200), buffer)
    return buffer.getvalue()


def pickled_weight(path_name: str, content: bytes | None = None):
    """A weights index that says the first weight is pickled under ``path_name``."""
    def change(member: str, data: bytes) -> bytes:
        if member.endswith("_weights_config.json"):
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"], first["path_name"] = True, path_name
            return json.dumps(config).encode()
        if content is not None and member.endswith(f"data/weights/{path_name}"):
            return content
        return data
    return change


def add_members(path: Path, members: dict[str, bytes], compress: int = zipfile.ZIP_STORED) -> None:
    """Append members to an archive under its root folder, even where a name repeats."""
    root = zipfile.ZipFile(path).namelist()[0].split("/")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of a repeated name, which is the point
        with zipfile.ZipFile(path, "a", compression=compress) as archive:
            for name, data in members.items():
                archive.writestr(f"{root}/{name}", data)


def case_folded_member(path: Path, evidence: Path) -> None:
    """torch finds members regardless of case: a checker reads weight_0, torch may read WEIGHT_0."""
    rewrite_archive(path, pickled_weight("weight_0", plain_tensor()))
    add_members(path, {"data/weights/WEIGHT_0": poisoned(evidence)})


def repeated_member(path: Path, evidence: Path) -> None:
    """Where a name repeats, torch and Python's zipfile read different copies."""
    rewrite_archive(path, pickled_weight("weight_0", plain_tensor()))
    add_members(path, {"data/weights/weight_0": poisoned(evidence)})


def rooted_member(path: Path, evidence: Path) -> None:
    """torch joins folder and name so that a leading / drops the folder."""
    rewrite_archive(path, pickled_weight("/payload"))
    add_members(path, {"/payload": poisoned(evidence), "data/weights//payload": plain_tensor()})


def fallback_member(path: Path, evidence: Path) -> None:
    """torch falls back from the safe unpickler to the full one for sample inputs."""
    rewrite_archive(path, lambda name, data: poisoned(evidence) if name.endswith("sample_inputs/model.pt") else data)


def python_object_constant(path: Path, evidence: Path) -> None:
    """A constant that exists only as a Python object, restored by unpickling in full."""
    def change(name: str, data: bytes) -> bytes:
        if name.endswith("_constants_config.json"):
            return json.dumps({"config": {"thing": {"path_name": "opaque_obj_0", "is_param": False,
                                                   "use_pickle": True, "tensor_meta": None}}}).encode()
        return data
    rewrite_archive(path, change)
    add_members(path, {"data/constants/opaque_obj_0": poisoned(evidence)})


def unexplained_member(path: Path, evidence: Path) -> None:
    """Native code beside the program, which the format loads by other means."""
    add_members(path, {"data/aotinductor/model/model.so": poisoned(evidence)})


HOSTILE_ARCHIVES = [case_folded_member, repeated_member, rooted_member, fallback_member, python_object_constant,
                    unexplained_member]


@pytest.mark.parametrize("make_hostile", HOSTILE_ARCHIVES, ids=lambda f: f.__name__)
def test_hostile_archives_are_refused_and_run_nothing(model_path, tmp_path, make_hostile):
    evidence = tmp_path / "ran.txt"
    make_hostile(model_path, evidence)
    with pytest.raises(ModelLoadError) as refused:
        load_model(model_path, CPU)
    assert "\n" not in str(refused.value) and "refused" in str(refused.value)
    assert not evidence.exists()


@pytest.mark.parametrize("make_hostile", [repeated_member, fallback_member], ids=lambda f: f.__name__)
def test_the_command_line_refuses_a_hostile_archive_in_one_line(model_path, tmp_path, make_hostile):
    evidence = tmp_path / "ran.txt"
    make_hostile(model_path, evidence)
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "explain", "--model", str(model_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "refused" in result.stderr, result.stderr
    assert not evidence.exists()


def test_a_zip_bomb_is_refused_before_anything_is_inflated(model_path):
    add_members(model_path, {"extra/padding": bytes(64 << 20)}, compress=zipfile.ZIP_DEFLATED)
    assert model_path.stat().st_size < 8 << 20
    with pytest.raises(ModelLoadError, match="compressed"):
        load_model(model_path, CPU)


@pytest.mark.parametrize("make_hostile", HOSTILE_ARCHIVES[:5], ids=lambda f: f.__name__)
def test_the_unpickling_scope_alone_runs_nothing_whatever_torch_reads(model_path, tmp_path, make_hostile):
    """Defence in depth: even past the member checks, torch's own loader cannot unpickle in full."""
    evidence = tmp_path / "ran.txt"
    make_hostile(model_path, evidence)
    with weights_only_unpickling() as refusals, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):
            torch.export.load(str(model_path))
    assert not evidence.exists() and refusals


def test_the_unpickling_scope_ends_with_the_load(model_path):
    load_model(model_path, CPU)
    assert pickle.loads(pickle.dumps({"ok": 1})) == {"ok": 1}
    buffer = io.BytesIO()
    torch.save({"a": 1}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=False) == {"a": 1}
