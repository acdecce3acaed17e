"""How well the heatmaps point at the true lesion, on held-out phantoms with known masks.

For every phantom with an effusion, each method explains the demo model's "effusion" score and
the map, carried back to the image's pixels, is compared with the true fluid mask:

- pointing game (Zhang et al. 2016): does the hottest pixel fall in the lesion (within a
  tolerance of 15 pixels, as in the original)?
- relevance mass (Arras et al. 2022): what share of the positive heat lies inside the lesion?
  Against it stands the lesion's share of the image, what a map spread evenly would score.

- deletion and insertion areas and AOPC against a random order: the trust figures the
  viewer shows, here averaged (see ``explain/trust.py``).

The same is measured for the demo model with its top layers randomized (Adebayo et al. 2018):
maps that still point at the lesion then would show the image, not the model. The phantoms
come from ``scripts/make_phantoms.py`` with a seed no test or training run uses.

    .venv/bin/python benchmarks/quality.py [--count 16] [--seed 7000] [--methods occlusion ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from skimage.io import imread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicom.bundled import DEMO_MODEL  # noqa: E402
from dicom.image import load_frame  # noqa: E402
from dicom.model_input import model_unit_image
from dicom.series import open_paths  # noqa: E402
from explain.methods import METHODS  # noqa: E402
from explain.model_file import load_model  # noqa: E402
from explain.preprocessing import (
    to_image_grid,  # noqa: E402
    to_model_input,  # noqa: E402
)
from explain.sanity import randomized_copy  # noqa: E402
from explain.trust import trust_figures  # noqa: E402

#: Pointing-game tolerance in image pixels, from Zhang et al.'s "Top-down neural attention".
TOLERANCE_PIXELS = 15


def make_phantoms(folder: Path, count: int, seed: int) -> list[tuple[Path, Path, bool]]:
    """Write held-out phantoms with the repository's generator; (image, mask, has effusion)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_phantoms.py"), "--out", str(folder),
                    "--count", str(count), "--seed", str(seed)], check=True, capture_output=True)
    with open(folder / "labels.csv", newline="") as labels:
        rows = list(csv.DictReader(labels))
    return [(folder / f"{row['name']}.dcm", folder / f"{row['name']}.mask.png", row["effusion"] == "1") for row in rows]


def pointing_hit(heatmap: np.ndarray, mask: np.ndarray) -> bool:
    """The hottest pixel lies in the lesion grown by the tolerance."""
    grown = ndimage.binary_dilation(mask, iterations=TOLERANCE_PIXELS)
    return bool(grown[np.unravel_index(np.nanargmax(heatmap), heatmap.shape)])


def relevance_mass(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive heat inside the lesion."""
    positive = np.clip(np.nan_to_num(heatmap), 0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def evaluate(method_name: str, model, cases: list[tuple[Path, Path, bool]]) -> dict[str, float]:
    """Explain every effusion case with one method and score the maps against the masks."""
    method = METHODS[method_name]
    target = model.card.labels.index("effusion")
    hits, masses, shares, seconds, trusted = [], [], [], [], []
    for image_path, mask_path, effusion in cases:
        if not effusion:
            continue
        image = load_frame(open_paths([image_path]).all_series()[0].frames[0])
        x = to_model_input(model_unit_image(image, model.card.window), model.card.input)
        started = time.perf_counter()
        params = method.params()
        final = list(method.run(model, x, target, params))[-1]
        seconds.append(time.perf_counter() - started)
        removed = method.baseline(x, params)
        trusted.append(list(trust_figures(model, x, target, final.heatmap, removed))[-1].figures)
        heatmap = to_image_grid(final.heatmap, image.stored.shape[:2])
        mask = imread(mask_path) > 0
        hits.append(pointing_hit(heatmap, mask))
        masses.append(relevance_mass(heatmap, mask))
        shares.append(float(mask.mean()))
    averaged = {key: statistics.mean(t[key] for t in trusted)
                for key in ("deletion_auc", "insertion_auc", "aopc", "aopc_random")}
    return {"cases": len(hits), "pointing": float(np.mean(hits)), "mass": statistics.mean(masses),
            "area": statistics.mean(shares), "seconds": statistics.median(seconds), **averaged}


def accuracy(model, cases: list[tuple[Path, Path, bool]]) -> float:
    """Share of phantoms the model classifies right at probability 0.5."""
    right = []
    target = model.card.labels.index("effusion")
    with torch.inference_mode():
        for image_path, _, effusion in cases:
            image = load_frame(open_paths([image_path]).all_series()[0].frames[0])
            score = float(model.probabilities(to_model_input(model_unit_image(image, model.card.window), model.card.input)[None])[0, target])
            right.append((score >= 0.5) == effusion)
    return float(np.mean(right))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--seed", type=int, default=7000)
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--methods", nargs="+", default=sorted(METHODS), choices=sorted(METHODS))
    args = parser.parse_args()
    model = load_model(args.model, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as scratch:
        cases = make_phantoms(Path(scratch), args.count, args.seed)
        print(f"{args.count} held-out phantoms (seed {args.seed}), {sum(c[2] for c in cases)} with effusion;"
              f" {model.card.name}: accuracy {accuracy(model, cases):.2f}")
        print("| model | method | pointing game | relevance mass in lesion (lesion share) | deletion area |"
              " insertion area | AOPC (random order) | seconds per map |")
        print("|---|---|---|---|---|---|---|---|")
        for label, scored in (("demo", model), ("demo, top layers randomized", randomized_copy(model))):
            for name in args.methods:
                r = evaluate(name, scored, cases)
                print(f"| {label} | {METHODS[name].title} | {r['pointing']:.2f} | {r['mass']:.3f} ({r['area']:.3f}) |"
                      f" {r['deletion_auc']:.3f} | {r['insertion_auc']:.3f} | {r['aopc']:.3f} ({r['aopc_random']:.3f}) |"
                      f" {r['seconds']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
