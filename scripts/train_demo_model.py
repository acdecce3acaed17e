"""Train the bundled pleural effusion model on phantoms and export it with its card.

Usage::

    python scripts/train_demo_model.py [--data DIR] [--out resources/models] [--seed 0]

Writes ``effusion_demo.pt2`` (a ``torch.export`` archive) and ``effusion_demo.json`` (its card)
and prints how well the exported model does on phantoms from a seed that training never saw,
and whether its occlusion maps point into the true fluid.

The model sees exactly what the viewer will give it: every phantom goes through the viewer's
own reading and pixel pipeline (``open_paths``, ``load_frame``, ``frame_model_input``), so the
file's window, the MONOCHROME1 rule and the antialiased resize are the same in training and in
use. The mean and standard deviation on the card are those of the training set.

Everything is seeded and PyTorch runs deterministic kernels on two threads, so two runs write
the same weights. On a two-core laptop the whole run, phantoms included, takes a few minutes.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage, stats
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_demo_study import mask_path  # noqa: E402 - found beside this script
from make_phantoms import LABELS_FILE, write_phantoms  # noqa: E402

from dicom.image import load_frame  # noqa: E402
from dicom.model_input import model_unit_image
from dicom.series import open_paths  # noqa: E402
from explain.model_card import ModelCard  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402
from explain.occlusion import OcclusionParams, occlusion  # noqa: E402
from explain.preprocessing import (
    to_image_grid,  # noqa: E402
    to_model_input,  # noqa: E402
)

MODEL_NAME = "effusion_demo"
LABELS = ("no effusion", "effusion")
INPUT_SIZE = 224
HELD_OUT_SEED = 9000  # phantom sets for training use small seeds; this one is never trained on
THREADS = 2


@dataclass(frozen=True)
class Settings:
    """How much data and training; the defaults fit a few minutes on two cores."""

    seed: int = 0
    train_count: int = 640
    held_out_count: int = 160
    epochs: int = 40
    batch_size: int = 32
    learning_rate: float = 3e-3
    label_smoothing: float = 0.1
    pointing_count: int = 20


@dataclass(frozen=True)
class Dataset:
    """Model inputs ``(N, 1, H, W)``, labels ``(N,)`` and the files they came from."""

    inputs: torch.Tensor
    labels: torch.Tensor
    paths: tuple[Path, ...]


# --------------------------------------------------------------------------------------------
# Data: phantoms through the viewer's own pipeline
# --------------------------------------------------------------------------------------------


def phantom_set(data: Path, kind: str, count: int, seed: int) -> Path:
    """The folder of a phantom set, written first unless a complete one is already there."""
    folder = data / f"{kind}-seed{seed}"
    if not (folder / LABELS_FILE).exists() or len(read_labels(folder)) != count:
        write_phantoms(folder, count, seed)
    return folder


def read_labels(folder: Path) -> dict[str, int]:
    """Phantom name to 0/1 effusion, from ``labels.csv``."""
    with open(folder / LABELS_FILE, newline="", encoding="ascii") as stream:
        return {row["name"]: int(row["effusion"]) for row in csv.DictReader(stream)}


def card(mean: float = 0.0, std: float = 1.0) -> ModelCard:
    """The demo model's card; mean 0 and std 1 give the unnormalised input in [0, 1]."""
    return ModelCard.from_dict({
        "name": "Pleural effusion (demo)",
        "labels": list(LABELS),
        "activation": "softmax",
        "input": {"height": INPUT_SIZE, "width": INPUT_SIZE, "channels": 1,
                  "mean": [mean], "std": [std]},
        "window": None,
    })


def load_set(folder: Path, model_card: ModelCard) -> Dataset:
    """Read every labelled phantom in ``folder`` as the viewer would feed it to the model."""
    labels = read_labels(folder)
    frames = {series.frames[0].path.stem: series.frames[0]
              for series in open_paths([folder]).all_series()}
    missing = sorted(set(labels) - set(frames))
    if missing:
        raise SystemExit(f"{folder}: no readable DICOM for {', '.join(missing[:5])}")
    names = sorted(labels)
    inputs = torch.stack([to_model_input(model_unit_image(load_frame(frames[name]), model_card.window), model_card.input)
                          for name in names])
    return Dataset(inputs, torch.tensor([labels[name] for name in names]),
                   tuple(frames[name].path for name in names))


def normalised(data: Dataset, model_card: ModelCard) -> Dataset:
    """Apply the card's normalisation to unnormalised inputs, as ``to_model_input`` does."""
    mean = torch.tensor(model_card.input.mean).view(1, -1, 1, 1)
    std = torch.tensor(model_card.input.std).view(1, -1, 1, 1)
    return Dataset((data.inputs - mean) / std, data.labels, data.paths)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def conv_block(inputs: int, outputs: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """Convolution, batch normalisation, ReLU: the unit the incremental engine will know."""
    return [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(outputs), nn.ReLU()]


class EffusionNet(nn.Module):
    """A small CNN: a strided stem, four conv blocks, global average pooling, a linear head.

    The stem and a pooling go straight to an eighth of the resolution: an effusion is a large
    finding, and the fine grid is where training time on a CPU would go. The last block sees
    about 180 input pixels, most of the chest: enough to tell fluid filling the costophrenic
    angle from a dome that simply sits high.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(1, 16, kernel=7, stride=4), nn.MaxPool2d(2),  # 224 -> 28
            *conv_block(16, 32), nn.MaxPool2d(2),  # -> 14
            *conv_block(32, 64),
            *conv_block(64, 96), nn.MaxPool2d(2),  # -> 7
            *conv_block(96, 96),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(96, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror, shift by up to 8 pixels and jitter contrast and brightness, all seeded.

    An effusion can be on either side, so a mirrored film is as good a film; shifts and
    intensity changes stand for positioning and processing the phantoms do not cover.
    """
    n = batch.shape[0]
    flip = torch.rand(n, generator=generator) < 0.5
    batch = torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)
    shifts = torch.randint(-8, 9, (n, 2), generator=generator)
    padded = nn.functional.pad(batch, (8, 8, 8, 8), mode="replicate")
    size = batch.shape[-1]
    batch = torch.stack([padded[i, :, 8 + dy: 8 + dy + size, 8 + dx: 8 + dx + size]
                         for i, (dy, dx) in enumerate(shifts.tolist())])
    gain = 1 + 0.15 * (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1)
    offset = 0.15 * (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1)
    return batch * gain + offset


def train(data: Dataset, settings: Settings) -> EffusionNet:
    """Fit the model with AdamW and a one-cycle schedule; every random draw is seeded."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = EffusionNet()
    steps = -(-len(data.labels) // settings.batch_size)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, settings.learning_rate, total_steps=settings.epochs * steps)
    # Smoothed targets keep the model from saturating: an occlusion map needs a probability
    # that still moves when part of the evidence is hidden.
    loss_function = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(data.labels), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            index = order[start:start + settings.batch_size]
            loss = loss_function(model(augment(data.inputs[index], generator)), data.labels[index])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        print(f"epoch {epoch + 1:2d}/{settings.epochs}: loss {total / len(order):.4f}", flush=True)
    return model.eval()


def export(model: EffusionNet, model_card: ModelCard, out: Path) -> Path:
    """Save the model as a ``torch.export`` archive with a free batch size, and its card."""
    out.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, INPUT_SIZE, INPUT_SIZE)
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    path = out / f"{MODEL_NAME}.pt2"
    torch.export.save(program, str(path))
    path.with_suffix(".json").write_text(json.dumps(model_card.to_dict(), indent=2) + "\n",
                                         encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------
# Checks on the exported model
# --------------------------------------------------------------------------------------------


def effusion_probabilities(model: LoadedModel, inputs: torch.Tensor) -> np.ndarray:
    """The model's probability of an effusion for each input."""
    with torch.inference_mode():
        return model.probabilities(inputs)[:, LABELS.index("effusion")].numpy()


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive outscores a negative (Mann-Whitney)."""
    ranks = stats.rankdata(scores)
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pointing_game(model: LoadedModel, data: Dataset, count: int,
                  baseline: float) -> tuple[int, int, int]:
    """Does the hottest point of the occlusion map fall in the true fluid? (hits, near, tried)

    The map goes back onto the image's own grid the way the viewer shows it, and is read
    against the phantom's mask on that grid. An occlusion map cannot place anything closer
    than its stride, so a point within one stride of the fluid counts as near (the pointing
    game's usual tolerance, Zhang et al. 2016).
    """
    params = OcclusionParams(16, 8, baseline)
    target = LABELS.index("effusion")
    positives = [i for i, label in enumerate(data.labels.tolist()) if label == 1][:count]
    hits = near = 0
    for i in positives:
        mask = np.asarray(Image.open(mask_path(data.paths[i]))) > 0
        *_, final = occlusion(model, data.inputs[i], target, params)
        heatmap = to_image_grid(final.heatmap, mask.shape)
        row, column = np.unravel_index(np.nanargmax(heatmap), heatmap.shape)
        distance = ndimage.distance_transform_edt(~mask)[row, column]
        hits += bool(mask[row, column])
        near += bool(distance <= params.stride * mask.shape[0] / INPUT_SIZE)
    return hits, near, len(positives)


def report(model_path: Path, held_out: Dataset, settings: Settings) -> None:
    """Print accuracy, AUC and the pointing game of the exported model on held-out phantoms.

    The pointing game runs with two occluders. A zero input is the training mean, the grey
    of soft tissue, which is also the grey of pleural fluid: hiding fluid behind it changes
    little, so that map can only find the fluid's upper edge, the meniscus. A black patch, the
    occluder of the reference article, shows what hiding the fluid itself does.
    """
    model = load_model(model_path, torch.device("cpu"))
    scores = effusion_probabilities(model, held_out.inputs)
    labels = held_out.labels.numpy()
    accuracy = float(((scores >= 0.5) == (labels == 1)).mean())
    print(f"held-out phantoms (seed {HELD_OUT_SEED + settings.seed}, n={len(labels)}): "
          f"accuracy {accuracy:.3f}, AUC {roc_auc(scores, labels):.3f}")
    spec = model.card.input
    occluders = {"zero (the training mean)": 0.0, "black": -spec.mean[0] / spec.std[0]}
    for name, baseline in occluders.items():
        hits, near, tried = pointing_game(model, held_out, settings.pointing_count, baseline)
        print(f"pointing game, {name} occluder, {tried} held-out effusions: hottest point "
              f"inside the fluid {hits}, within one stride of it {near}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path,
                        help="folder to keep the phantoms in (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("resources/models"),
                        help="where the model and its card go")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training phantoms and of the weights")
    args = parser.parse_args(argv)
    settings = Settings(seed=args.seed)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="phantoms-") as scratch:
        data = args.data or Path(scratch)
        train_folder = phantom_set(data, "train", settings.train_count, settings.seed)
        held_out_folder = phantom_set(data, "held-out", settings.held_out_count,
                                      HELD_OUT_SEED + settings.seed)
        print(f"phantoms ready after {time.perf_counter() - started:.0f} s", flush=True)
        unit = load_set(train_folder, card())
        mean, std = float(unit.inputs.mean()), float(unit.inputs.std())
        model_card = card(mean, std)
        model = train(normalised(unit, model_card), settings)
        model_path = export(model, model_card, args.out)
        print(f"wrote {model_path} after {time.perf_counter() - started:.0f} s", flush=True)
        report(model_path, load_set(held_out_folder, model_card), settings)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
