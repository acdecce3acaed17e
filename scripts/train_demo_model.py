"""Train the bundled pleural effusion model on phantoms and export it with its card.

Usage::

    python scripts/train_demo_model.py [--data DIR] [--out resources/models] [--seed 0]

Writes ``effusion_demo.pt2`` (a ``torch.export`` archive) and ``effusion_demo.json`` (its card)
and prints how well the exported model does on phantoms from a seed that training never saw:
accuracy, AUC, the scores of a blank and a blurred film, and whether its Grad-CAM and occlusion
maps point into the true fluid.

The model is built to be right for the right reasons:

- **Pairs.** Every body is exposed twice, with its effusion and without it, from the same
  random streams. The two films differ only where the fluid is, so the fluid is the only
  evidence that separates the classes.
- **Negatives that look like shortcuts.** Blank and noise-only films, blurred films, films cut
  off above the lung bases, and films brightened at the base without a meniscus are all "no
  effusion": brightness, texture or position alone cannot earn the label.
- **Augmentation.** Mirror, shift, scale, small rotation, gamma, contrast, exposure and noise
  stand for the positioning and processing the phantoms do not vary enough.
- **A local, spatial head.** Each unit of the last feature map sees about a quarter of the
  chest's width, and the prediction is read from the strongest of those local votes (global
  max pooling over a class activation map, Zhou et al. 2016), so the evidence stays where it
  lies in the image.
- **The fluid's mask, with ``--lesion-penalty``** (Ross et al. 2017, "right for the right
  reasons"). The two films of a pair differ only by their fluid, so their difference is the
  fluid's mask, with no mask file needed. The penalty is the share of the winning vote (a
  softmax over the map) that falls off the fluid on effusion films, added to the loss with the
  given weight. ``--gradient-penalty`` adds Ross et al.'s own penalty: the share of the
  score's input gradient that lies more than two model pixels off the fluid, on every second
  batch (it needs a second backward pass). The bundled model is trained with both at 1; with
  both at 0 the masks are not used at all, which gives its twin for the quality table
  (``benchmarks/models``).

The model sees exactly what the viewer will give it: every phantom goes through the viewer's
own reading and pixel pipeline (``open_paths``, ``load_frame``, ``model_unit_image``,
``to_model_input``), so the file's window, the MONOCHROME1 rule and the antialiased resize are
the same in training and in use. The mean and standard deviation on the card are those of the
training set.

Everything is seeded and PyTorch runs deterministic kernels on two threads, so two runs write
the same weights. On a two-core laptop the whole run, phantoms included, takes about eleven minutes.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import multiprocessing
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import stats
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from make_demo_study import mask_path, write_radiograph  # noqa: E402 - found beside this script
from make_phantoms import (  # noqa: E402
    LABELS_FILE,
    Phantom,
    plan_phantom,
    random_effusion,
    render_phantom,
    write_phantoms,
)

from dicom.image import load_frame  # noqa: E402
from dicom.model_input import model_unit_image  # noqa: E402
from dicom.series import open_paths  # noqa: E402
from explain.methods import METHODS  # noqa: E402
from explain.model_card import ModelCard  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402
from explain.pointing import pointing_distance  # noqa: E402
from explain.preprocessing import to_image_grid, to_model_input  # noqa: E402

MODEL_NAME = "effusion_demo"
LABELS = ("no effusion", "effusion")
INPUT_SIZE = 224
HELD_OUT_SEED = 9000  # phantom sets for training use small seeds; this one is never trained on
THREADS = 2
TRAINING_ROWS = 384  # training films are rendered smaller than the held-out ones: the model sees 224
POINTING_TOLERANCE_PIXELS = 5  # image pixels around the true fluid that still count as a hit
FLUID_DIFFERENCE = 0.01  # the least change, in the unit image, that the fluid makes to a film


@dataclass(frozen=True)
class Settings:
    """How much data and training; the defaults fit about eleven minutes on two cores."""

    seed: int = 0
    bodies: int = 640  # each exposed with and without its effusion
    held_out_count: int = 160
    epochs: int = 60
    batch_size: int = 32
    learning_rate: float = 4e-3
    label_smoothing: float = 0.1
    shortcut_share: float = 0.3  # of each batch replaced by shortcut negatives
    lesion_penalty: float = 1.0  # weight of the winning vote's share off the fluid (0: masks unused)
    gradient_penalty: float = 1.0  # weight of the score's input gradient off the fluid (0: not used)
    gradient_every: int = 2  # batches per gradient penalty: it costs a second backward pass
    pointing_count: int = 20


@dataclass(frozen=True)
class Dataset:
    """Model inputs ``(N, C, H, W)`` as the card makes them, labels ``(N,)`` and their files.

    ``masks`` ``(N, 1, H, W)`` marks each film's fluid where it is known (the training pairs).
    """

    inputs: torch.Tensor
    labels: torch.Tensor
    paths: tuple[Path, ...]
    masks: torch.Tensor | None = None


# --------------------------------------------------------------------------------------------
# Data: pairs of films through the viewer's own pipeline
# --------------------------------------------------------------------------------------------


def with_an_effusion(phantom: Phantom, seed: int, index: int) -> Phantom:
    """The phantom as planned, or with one effusion drawn from a stream of its own if it had none."""
    if phantom.effusions:
        return phantom
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
    side = str(rng.choice(["right", "left"]))
    return dataclasses.replace(phantom, effusions=(random_effusion(side, rng),))


def write_pair(job: tuple[Phantom, Path]) -> list[tuple[str, int, str]]:
    """Expose one body with and without its fluid; return both rows of ``labels.csv``."""
    phantom, out = job
    rows = []
    for with_fluid in (True, False):
        name = f"{phantom.name}-{'fluid' if with_fluid else 'clear'}"
        film = render_phantom(phantom, TRAINING_ROWS, with_fluid=with_fluid)
        identity = dataclasses.replace(phantom.identity, uid_source=f"{phantom.identity.uid_source}-{name}")
        write_radiograph(film, out / f"{name}.dcm", identity)
        rows.append((name, int(with_fluid), phantom.side if with_fluid else "none"))
    return rows


def write_pairs(out: Path, bodies: int, seed: int, workers: int = 2) -> None:
    """Write ``bodies`` pairs of films and their ``labels.csv`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(with_an_effusion(plan_phantom(seed, i), seed, i), out) for i in range(bodies)]
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        rows = [row for pair in pool.map(write_pair, jobs, chunksize=4) for row in pair]
    with open(out / LABELS_FILE, "w", newline="", encoding="ascii") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["name", "effusion", "side"])
        writer.writerows(rows)


def ready_folder(data: Path, name: str, count: int, write: Callable[[Path], None]) -> Path:
    """The folder of a data set, written first unless a complete one is already there."""
    folder = data / name
    if not (folder / LABELS_FILE).exists() or len(read_labels(folder)) != count:
        write(folder)
    return folder


def read_labels(folder: Path) -> dict[str, int]:
    """Film name to 0/1 effusion, from ``labels.csv``."""
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
        # Trained on PA chest phantoms; a CT or a bone scan gets a confident score that means nothing.
        "expects": {"modality": ["CR", "DX"], "body_part": ["CHEST"], "view": ["PA", "AP"],
                    "photometric": ["MONOCHROME1", "MONOCHROME2"], "min_rows": INPUT_SIZE, "min_columns": INPUT_SIZE},
    })


def load_set(folder: Path, model_card: ModelCard) -> Dataset:
    """Read every labelled film in ``folder`` as the viewer would feed it to the model."""
    labels = read_labels(folder)
    frames = {series.frames[0].path.stem: series.frames[0]
              for series in open_paths([folder]).all_series()}
    missing = sorted(set(labels) - set(frames))
    if missing:
        raise SystemExit(f"{folder}: no readable DICOM for {', '.join(missing[:5])}")
    names = sorted(labels)
    inputs = torch.stack([to_model_input(model_unit_image(load_frame(frames[name]), model_card.window),
                                         model_card.input) for name in names])
    return Dataset(inputs, torch.tensor([labels[name] for name in names]),
                   tuple(frames[name].path for name in names))


def with_fluid_masks(pairs: Dataset) -> Dataset:
    """The training pairs with each film's fluid: where its film differs from its clear twin.

    The two exposures of a body share every random stream but the fluid, so their difference
    is the fluid and nothing else; a clear film's mask is empty.
    """
    index = {path.stem: i for i, path in enumerate(pairs.paths)}
    masks = torch.zeros_like(pairs.inputs)
    for name, i in index.items():
        if name.endswith("-fluid"):
            clear = pairs.inputs[index[name.removesuffix("-fluid") + "-clear"]]
            masks[i] = ((pairs.inputs[i] - clear).abs() > FLUID_DIFFERENCE).to(masks.dtype)
    return dataclasses.replace(pairs, masks=masks)


def normalise(inputs: torch.Tensor, model_card: ModelCard) -> torch.Tensor:
    """Apply the card's normalisation to unnormalised inputs, as ``to_model_input`` does."""
    mean = torch.tensor(model_card.input.mean).view(1, -1, 1, 1)
    std = torch.tensor(model_card.input.std).view(1, -1, 1, 1)
    return (inputs - mean) / std


# --------------------------------------------------------------------------------------------
# Augmentation and the shortcut negatives
# --------------------------------------------------------------------------------------------


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """``n`` seeded draws from U(low, high), shaped to broadcast over images."""
    return (low + (high - low) * torch.rand(n, generator=generator)).view(n, 1, 1, 1)


def blurred(batch: torch.Tensor, sigma: float) -> torch.Tensor:
    """A Gaussian blur of ``sigma`` model pixels, edges replicated."""
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).to(batch.dtype)
    padded = F.pad(batch, (radius, radius, radius, radius), mode="replicate")
    rows = F.conv2d(padded, taps.view(1, 1, -1, 1))
    return F.conv2d(rows, taps.view(1, 1, 1, -1))


def moved(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror, shift (up to 6 %), scale (0.92 to 1.08) and turn (up to 4 degrees) each film.

    An effusion can be on either side, so a mirrored film is as good a film; the rest stands
    for positioning. Pixels brought in from outside repeat the border.
    """
    n = batch.shape[0]
    angle = uniform(n, -4, 4, generator).view(n) * math.pi / 180
    scale = uniform(n, 0.92, 1.08, generator).view(n)
    mirror = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=generator) * 2 - 1) * 0.12
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * mirror, -sin, shift[:, 0]], 1),
                         torch.stack([sin * mirror, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    return F.grid_sample(batch, grid, padding_mode="border", align_corners=False)


def exposed(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma, contrast, exposure and noise: what another detector's processing would give."""
    n = batch.shape[0]
    gamma = torch.exp(uniform(n, -0.3, 0.3, generator))
    batch = batch.clamp(0, 1) ** gamma
    batch = (batch - 0.5) * uniform(n, 0.8, 1.2, generator) + 0.5 + uniform(n, -0.1, 0.1, generator)
    noise = uniform(n, 0.0, 0.03, generator) * torch.randn(batch.shape, generator=generator)
    return batch + noise


def blank_films(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flat grey films, some with noise: nothing to see, so nothing to find."""
    n = batch.shape[0]
    noise = uniform(n, 0.0, 0.1, generator) * torch.randn(batch.shape, generator=generator)
    return uniform(n, 0.0, 1.0, generator) + noise


def blurred_films(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Films too blurred to show a meniscus (6 to 12 pixels): brightness kept, shape gone."""
    sigma = float(uniform(1, 6.0, 12.0, generator))
    return blurred(batch, sigma)


def cut_above_the_bases(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The upper 45 to 65 % of each film stretched to the full frame: no costophrenic angle."""
    keep = max(8, int(batch.shape[-2] * float(uniform(1, 0.45, 0.65, generator))))
    return F.interpolate(batch[..., :keep, :], size=batch.shape[-2:], mode="bilinear", align_corners=False)


def bright_bases(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """The fluid's brightness without its shape: a level band over the whole lower chest."""
    n, _, rows, _ = batch.shape
    top = uniform(n, 0.6, 0.85, generator) * rows
    edge = torch.arange(rows, dtype=batch.dtype).view(1, 1, rows, 1)
    band = torch.sigmoid((edge - top) / uniform(n, 1.0, 6.0, generator))
    return batch + uniform(n, 0.05, 0.25, generator) * band


SHORTCUTS: tuple[Callable[[torch.Tensor, torch.Generator], torch.Tensor], ...] = (
    blank_films, blurred_films, cut_above_the_bases, bright_bases)


def training_batch(inputs: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor, share: float,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Augmented films, their labels and fluid masks, a share of them made into shortcut negatives.

    Every kind of shortcut gets an equal part of that share in every batch; a shortcut film
    is labelled "no effusion" and has no fluid. A mask moves with its film.
    """
    both = moved(torch.cat([inputs, masks], dim=1), generator)
    batch, masks = both[:, :inputs.shape[1]], both[:, inputs.shape[1]:]
    count = int(round(share * len(labels)))
    parts = np.linspace(0, count, len(SHORTCUTS) + 1).round().astype(int)
    shortcuts = [make(batch[start:stop], generator) for make, start, stop in zip(SHORTCUTS, parts, parts[1:])]
    batch = torch.cat([*shortcuts, batch[count:]])
    labels = torch.cat([torch.zeros(count, dtype=labels.dtype), labels[count:]])
    masks = torch.cat([torch.zeros_like(masks[:count]), masks[count:]])
    return exposed(batch, generator), labels, masks


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


def conv_block(inputs: int, outputs: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    """Convolution, batch normalisation, ReLU: the unit the incremental engine will know."""
    return [nn.Conv2d(inputs, outputs, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(outputs), nn.ReLU()]


class EffusionNet(nn.Module):
    """A small CNN with a class-activation head: local features, the strongest vote wins.

    The stem goes straight to a quarter of the resolution and the features end at an eighth
    (28 x 28 for 224 pixels), fine enough to place a blunted angle. Each unit of the last map
    sees about 50 input pixels, a quarter of the chest's width: enough to tell a meniscus from a
    dome that sits high, too little to read the film as a whole. A 1 x 1 convolution turns each
    unit's features into one vote for an effusion (a class activation map, Zhou et al. 2016),
    negative votes count as none, and the strongest vote alone makes the two logits. So the score
    depends only on what one unit sees: hiding or blurring anything outside its field of view
    cannot lower it. Max, not average: a small effusion covers about 1 % of the film, and an
    average would dilute its evidence a hundredfold (on phantoms, average pooling learned several
    times slower and was less sure of small effusions). An earlier head max-pooled each of the 48
    channels on its own and mixed them linearly: channels that argue against an effusion then
    answered to black patches anywhere on the film, and occlusion's hottest point left the fluid.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *conv_block(1, 16, kernel=7, stride=4),  # 224 -> 56
            *conv_block(16, 24),
            nn.MaxPool2d(2),  # -> 28
            *conv_block(24, 32),
            *conv_block(32, 48),
        )
        self.votes = nn.Conv2d(48, 1, 1)  # one local vote per unit: the class activation map
        self.pool = nn.Sequential(nn.Softplus(), nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(1, len(LABELS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.votes(self.features(x))))


def votes_outside(votes: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """How much of each effusion film's winning vote lies off its fluid, averaged over those films.

    The votes are made a distribution over the map by a softmax, a smooth stand-in for the max
    that decides the score; the fluid is taken at the map's resolution, a cell holding any of it
    counting as fluid. Growing it by a cell more let the winning vote sit beside the fluid (on the
    demo film, Grad-CAM's hottest point 29 pixels off it). Clear films add nothing.
    """
    fluid = F.adaptive_max_pool2d(masks, votes.shape[-2:]).flatten(1)
    with_fluid = fluid.amax(dim=1) > 0
    if not with_fluid.any():
        return votes.new_zeros(())
    weights = torch.softmax(votes.flatten(1), dim=1)
    return (weights * (1 - fluid)).sum(dim=1)[with_fluid].mean()


GRADIENT_MARGIN = 2  # model pixels around the fluid where the score's gradient may still lie


def gradient_outside(score: torch.Tensor, inputs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """How much of each effusion film's input gradient lies off its fluid, averaged over those films.

    Ross et al.'s penalty on the input gradient, taken as a share of its squared size so that its
    weight does not depend on the score's scale. The vote penalty alone leaves the winning unit
    free to read anything in its field of view, about a quarter of the chest; this one asks the
    score to change with the fluid and its edge (:data:`GRADIENT_MARGIN`) only, which is what
    integrated gradients and occlusion then show. Clear films add nothing.
    """
    fluid = masks.flatten(1).amax(dim=1) > 0
    if not fluid.any():
        return score.new_zeros(())
    (gradient,) = torch.autograd.grad(score[fluid].sum(), inputs, create_graph=True)
    near = F.max_pool2d(masks[fluid], 2 * GRADIENT_MARGIN + 1, 1, GRADIENT_MARGIN).flatten(1)
    energy = gradient[fluid].pow(2).flatten(1)
    return ((energy * (1 - near)).sum(dim=1) / (energy.sum(dim=1) + 1e-12)).mean()


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train(data: Dataset, model_card: ModelCard, settings: Settings) -> EffusionNet:
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
    masks = data.masks if data.masks is not None else torch.zeros_like(data.inputs)
    for epoch in range(settings.epochs):
        model.train()
        order = torch.randperm(len(data.labels), generator=generator)
        total = 0.0
        for step, start in enumerate(range(0, len(order), settings.batch_size)):
            index = order[start:start + settings.batch_size]
            inputs, labels, fluid = training_batch(data.inputs[index], data.labels[index], masks[index],
                                                   settings.shortcut_share, generator)
            gradient_penalty = settings.gradient_penalty if step % settings.gradient_every == 0 else 0.0
            x = normalise(inputs, model_card).requires_grad_(bool(gradient_penalty))
            votes = model.votes(model.features(x))
            pooled = model.pool(votes)
            loss = loss_function(model.head(pooled), labels)
            if settings.lesion_penalty:
                loss = loss + settings.lesion_penalty * votes_outside(votes, fluid)
            if gradient_penalty:
                loss = loss + gradient_penalty * gradient_outside(pooled, x, fluid)
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
    """The model's probability of an effusion for each (normalised) input."""
    with torch.inference_mode():
        return model.probabilities(inputs)[:, LABELS.index("effusion")].numpy()


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve: the chance a positive outscores a negative (Mann-Whitney)."""
    ranks = stats.rankdata(scores)
    positives = labels == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pointing_hits(model: LoadedModel, data: Dataset, method_name: str, count: int) -> tuple[int, int]:
    """How often the hottest point of a method's map lies in the true fluid (hits, tried).

    The map goes back onto the image's own grid the way the viewer shows it; the fluid's mask
    is grown by a few pixels, the usual tolerance of the pointing game (Zhang et al. 2016).
    """
    method = METHODS[method_name]
    target = LABELS.index("effusion")
    positives = [i for i, label in enumerate(data.labels.tolist()) if label == 1][:count]
    hits = 0
    for i in positives:
        mask = np.asarray(Image.open(mask_path(data.paths[i]))) > 0
        final = list(method.explain(model, data.inputs[i], target, method.params()))[-1]
        heatmap = to_image_grid(final.heatmap, mask.shape)
        hits += pointing_distance(heatmap, mask) <= POINTING_TOLERANCE_PIXELS
    return hits, len(positives)


def report(model_path: Path, held_out: Dataset, settings: Settings) -> None:
    """Print accuracy, AUC, the shortcut films' scores and the pointing game on held-out films."""
    model = load_model(model_path, torch.device("cpu"))
    inputs = normalise(held_out.inputs, model.card)
    scores = effusion_probabilities(model, inputs)
    labels = held_out.labels.numpy()
    accuracy = float(((scores >= 0.5) == (labels == 1)).mean())
    print(f"held-out phantoms (seed {HELD_OUT_SEED + settings.seed}, n={len(labels)}): "
          f"accuracy {accuracy:.3f}, AUC {roc_auc(scores, labels):.3f}")
    effusions = held_out.inputs[held_out.labels == 1]
    shortcut_films = {"blank": torch.full_like(effusions[:1], 0.5),
                      "blurred (sigma 8 px)": blurred(effusions, 8.0)}
    for name, films in shortcut_films.items():
        worst = float(effusion_probabilities(model, normalise(films, model.card)).max())
        print(f"{name} films: highest effusion score {worst:.3f}")
    normalised = Dataset(inputs, held_out.labels, held_out.paths)
    for method_name in ("gradcam", "occlusion"):
        hits, tried = pointing_hits(model, normalised, method_name, settings.pointing_count)
        print(f"pointing game, {METHODS[method_name].title}, {tried} held-out effusions: hottest "
              f"point within {POINTING_TOLERANCE_PIXELS} px of the fluid {hits}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path,
                        help="folder to keep the phantoms in (default: a temporary one)")
    parser.add_argument("--out", type=Path, default=Path("resources/models"),
                        help="where the model and its card go")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the training phantoms and of the weights")
    parser.add_argument("--bodies", type=int, default=Settings.bodies,
                        help="bodies to train on, each with and without its effusion")
    parser.add_argument("--epochs", type=int, default=Settings.epochs)
    parser.add_argument("--lesion-penalty", type=float, default=Settings.lesion_penalty,
                        help="weight of the winning vote's share off the fluid (default 1; 0: the masks are "
                             "not used, which trains the model's twin)")
    parser.add_argument("--gradient-penalty", type=float, default=Settings.gradient_penalty,
                        help="weight of the score's input gradient off the fluid (default 1; 0 with "
                             "--lesion-penalty 0 trains the twin)")
    parser.add_argument("--gradient-every", type=int, default=Settings.gradient_every,
                        help="batches per gradient penalty (default 2: each costs a second backward pass)")
    args = parser.parse_args(argv)
    if args.gradient_every < 1:
        parser.error(f"--gradient-every must be 1 or more, not {args.gradient_every}")
    settings = Settings(seed=args.seed, bodies=args.bodies, epochs=args.epochs, lesion_penalty=args.lesion_penalty,
                        gradient_penalty=args.gradient_penalty, gradient_every=args.gradient_every)
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="phantoms-") as scratch:
        data = args.data or Path(scratch)
        train_folder = ready_folder(data, f"pairs-seed{settings.seed}", 2 * settings.bodies,
                                    lambda folder: write_pairs(folder, settings.bodies, settings.seed))
        held_out_seed = HELD_OUT_SEED + settings.seed
        held_out_folder = ready_folder(data, f"held-out-seed{held_out_seed}", settings.held_out_count,
                                       lambda folder: write_phantoms(folder, settings.held_out_count,
                                                                     held_out_seed))
        print(f"phantoms ready after {time.perf_counter() - started:.0f} s", flush=True)
        unit = with_fluid_masks(load_set(train_folder, card()))
        print(f"the fluid covers {float(unit.masks[unit.labels == 1].mean()):.2%} of an effusion film", flush=True)
        model_card = card(float(unit.inputs.mean()), float(unit.inputs.std()))
        model = train(unit, model_card, settings)
        model_path = export(model, model_card, args.out)
        print(f"wrote {model_path} after {time.perf_counter() - started:.0f} s", flush=True)
        report(model_path, load_set(held_out_folder, card()), settings)
    print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
