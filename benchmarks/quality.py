"""How well the heatmaps point at the true lesion, on held-out phantoms with known masks.

For every phantom with an effusion, each method explains the model's "effusion" score, and the
map, carried back to the image's pixels, is compared with the true fluid mask:

- hit rate, the pointing game (Zhang et al. 2016): does the hottest pixel lie within 0, 5 or 15
  image pixels of the lesion? 0 means inside it; 15 is the original tolerance, 5 the one the
  targets use. A blank map points nowhere and misses.
- Otsu mIoU, CheXlocalize's protocol (Saporta et al. 2022): the map scaled to [0, 1], cut at
  Otsu's threshold, and the region's intersection over union with the lesion, averaged.
- relevance mass (Arras et al. 2022): the share of the positive heat inside the lesion, beside
  the lesion's share of the image, which is what a map spread evenly would score; their ratio
  says how many times better than even the map is.
- AOPC against a random order (their ratio), deletion and insertion areas: the trust figures the
  viewer shows (``explain/trust.py``), averaged over the cases. Where a random order raises the
  score on average (a saturated model), the ratio is shown as ∞: any positive AOPC beats it.
- seconds per map: the median time of the method alone, without the trust figures.

Targets (issue 14), at 5 px: hit rate >= 0.9 for occlusion, meaningful perturbation and Grad-CAM,
>= 0.75 for integrated gradients, LIME and Grad-CAM++; relevance mass >= 5 x the lesion's share;
AOPC >= 3 x its random order. Each table marks them met (✓) or not (✗).

Models: each file given with ``--models`` (by default the current demo model, its twin trained
the same way without the fluid masks, and the previous demo model, both kept in
``benchmarks/models/``), then the first of them with its top layers randomized
(Adebayo et al. 2018), which must fail every target: a map that still points at the lesion then
shows the image, not the model.

The phantoms come from ``scripts/make_phantoms.py``; phantoms are written until ``--effusions``
of them have an effusion (about half do). The held-out seed is 7000, which no training run uses.
Parameters chosen with ``--params`` must have been chosen on validation phantoms of another seed
(``benchmarks/choose_defaults.py`` uses 8000), never on the held-out ones, or the table flatters.

    .venv/bin/python benchmarks/quality.py [--effusions 40] [--seed 7000] [--methods occlusion ...]
        [--models A.pt2 B.pt2] [--params occlusion:baseline=blur ig:noise_samples=8 ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skimage.filters import threshold_otsu
from skimage.io import imread

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from make_demo_study import mask_path  # noqa: E402
from make_phantoms import plan_phantom, write_phantoms  # noqa: E402

from cli.explain_command import build_parser as explain_parser  # noqa: E402
from dicom.bundled import DEMO_MODEL  # noqa: E402
from dicom.image import load_frame  # noqa: E402
from dicom.model_input import model_unit_image  # noqa: E402
from dicom.series import open_paths  # noqa: E402
from explain.devices import DEVICE_CHOICES, pick_device  # noqa: E402
from explain.method import Method  # noqa: E402
from explain.methods import METHODS  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402
from explain.pointing import pointing_distance  # noqa: E402
from explain.preprocessing import to_image_grid, to_model_input  # noqa: E402
from explain.sanity import randomized_copy  # noqa: E402
from explain.trust import trust_figures  # noqa: E402

HELD_OUT_SEED = 7000
#: The demo model's twin: the same recipe and seed with the fluid masks left out of training.
TWIN_MODEL = ROOT / "benchmarks" / "models" / "effusion_demo_no_masks.pt2"
PREVIOUS_MODEL = ROOT / "benchmarks" / "models" / "effusion_demo_v1.pt2"
#: Pointing-game tolerances in image pixels: inside the lesion, the targets' 5, Zhang et al.'s 15.
TOLERANCES = (0, 5, 15)
TARGET_TOLERANCE = 5
HIT_TARGETS = {"occlusion": 0.9, "perturbation": 0.9, "gradcam": 0.9, "ig": 0.75, "lime": 0.75, "gradcampp": 0.75}
MASS_TARGET = 5.0
AOPC_TARGET = 3.0
TRUST_KEYS = ("deletion_auc", "insertion_auc", "aopc", "aopc_random")


@dataclass(frozen=True)
class Case:
    """One phantom with an effusion, ready for one model: its input and the true lesion."""

    name: str
    x: torch.Tensor
    mask: np.ndarray


# --- Scoring one map against one mask (maps on the image grid, masks boolean of the same shape) ---

def otsu_iou(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """IoU with the lesion of the map scaled to [0, 1] and cut at Otsu's threshold (CheXlocalize).

    Unknown pixels count as the coldest; a blank map segments nothing and scores 0.
    """
    values = np.asarray(heatmap, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return 0.0
    low, high = values[finite].min(), values[finite].max()
    if high <= low:
        return 0.0
    unit = (np.where(finite, values, low) - low) / (high - low)
    region = unit > threshold_otsu(unit)
    union = np.logical_or(region, mask).sum()
    return float(np.logical_and(region, mask).sum() / union) if union else 0.0


def relevance_mass(heatmap: np.ndarray, mask: np.ndarray) -> float:
    """Share of the positive heat inside the lesion; 0 for a map with no positive heat."""
    positive = np.clip(np.nan_to_num(heatmap), 0, None)
    total = positive.sum()
    return float(positive[mask].sum() / total) if total > 0 else 0.0


def aopc_ratio(aopc: float, aopc_random: float) -> float:
    """How many times the random order's AOPC the map's is: infinite when only the map's drops."""
    if aopc_random > 0:
        return aopc / aopc_random
    return float("inf") if aopc > 0 else float("nan")


# --- Phantoms and models ---

def phantoms_needed(seed: int, effusions: int) -> int:
    """How many phantoms of set ``seed`` to write for ``effusions`` of them to have one.

    Phantom ``i`` is drawn before any pixel is made and is the same whatever the count, so the
    count is known without rendering.
    """
    count = found = 0
    while found < effusions:
        found += bool(plan_phantom(seed, count).effusions)
        count += 1
    return count


def make_phantoms(folder: Path, seed: int, effusions: int) -> list[tuple[Path, bool]]:
    """Write phantoms until ``effusions`` have an effusion; (image path, has effusion) of each."""
    labels = write_phantoms(folder, phantoms_needed(seed, effusions), seed, workers=2)
    return [(folder / f"{name}.dcm", bool(effusion)) for name, effusion, _ in labels]


def model_input(path: Path, model: LoadedModel) -> tuple[torch.Tensor, tuple[int, int]]:
    """The model's input for a phantom, and the image's shape that maps are carried back to."""
    image = load_frame(open_paths([path]).all_series()[0].frames[0])
    return to_model_input(model_unit_image(image, model.card.window), model.card.input), image.stored.shape[:2]


def effusion_cases(phantoms: Sequence[tuple[Path, bool]], model: LoadedModel) -> list[Case]:
    """The phantoms with an effusion, as this model sees them."""
    cases = []
    for path, effusion in phantoms:
        if effusion:
            x, shape = model_input(path, model)
            mask = imread(mask_path(path)) > 0
            assert mask.shape == shape, f"{path.name}: mask {mask.shape} against image {shape}"
            cases.append(Case(path.stem, x, mask))
    return cases


def accuracy(model: LoadedModel, phantoms: Sequence[tuple[Path, bool]]) -> float:
    """Share of all phantoms the model classifies right at probability 0.5."""
    target = model.card.labels.index("effusion")
    right = []
    with torch.inference_mode():
        for path, effusion in phantoms:
            x, _ = model_input(path, model)
            score = float(model.probabilities(x[None].to(model.device))[0, target])
            right.append((score >= 0.5) == effusion)
    return float(np.mean(right))


# --- Parameters ---

def parse_override(text: str) -> tuple[str, str, Any]:
    """``METHOD:KEY=VALUE``, the value parsed as ``main.py explain --KEY VALUE`` parses it."""
    method_name, _, setting = text.partition(":")
    key, equals, value = setting.partition("=")
    key = key.replace("-", "_")
    if not equals or method_name not in METHODS:
        raise argparse.ArgumentTypeError(f"expected METHOD:KEY=VALUE with METHOD one of {', '.join(METHODS)}, "
                                         f"not {text!r}")
    method = METHODS[method_name]
    if key not in {field.name for field in fields(method.params)}:
        raise argparse.ArgumentTypeError(f"{method_name} has no parameter {key!r}")
    parser = explain_parser()
    parser.exit_on_error = False
    try:
        return method_name, key, getattr(parser.parse_args([f"--{key.replace('_', '-')}={value}"]), key)
    except argparse.ArgumentError as error:
        raise argparse.ArgumentTypeError(f"{text}: {error}") from None


# --- Explaining and summarising ---

def score_case(method: Method, params: Any, model: LoadedModel, case: Case, trust: bool) -> dict[str, Any]:
    """Explain one case and score its map; the trust figures too when asked (they cost ~130 passes)."""
    target = model.card.labels.index("effusion")
    started = time.perf_counter()
    final = list(method.explain(model, case.x, target, params))[-1]
    seconds = time.perf_counter() - started
    heatmap = to_image_grid(final.heatmap, case.mask.shape)
    scored = {"name": case.name, "seconds": seconds, "distance": pointing_distance(heatmap, case.mask),
              "iou": otsu_iou(heatmap, case.mask), "mass": relevance_mass(heatmap, case.mask),
              "area": float(case.mask.mean())}
    if trust:
        removed = method.baseline(case.x, params)
        figures = list(trust_figures(model, case.x, target, final.heatmap, removed))[-1].figures
        scored.update({key: figures[key] for key in TRUST_KEYS})
    return scored


def summarise(scored: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The table's figures over the cases: hit rates, means, ratios of means, the median time."""
    distances = np.array([s["distance"] for s in scored])
    mass, area = statistics.mean(s["mass"] for s in scored), statistics.mean(s["area"] for s in scored)
    figures = {"cases": len(scored), **{f"hit_{t}px": float(np.mean(distances <= t)) for t in TOLERANCES},
               "miou": statistics.mean(s["iou"] for s in scored), "mass": mass, "area": area,
               "mass_ratio": mass / area, "seconds": statistics.median(s["seconds"] for s in scored)}
    if TRUST_KEYS[0] in scored[0]:
        figures.update({key: statistics.mean(s[key] for s in scored) for key in TRUST_KEYS})
        figures["aopc_ratio"] = aopc_ratio(figures["aopc"], figures["aopc_random"])
    return figures


def evaluate(method: Method, params: Any, model: LoadedModel, cases: Sequence[Case],
             trust: bool = True) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Explain every case with one method; the summary and the figures per case."""
    scored = [score_case(method, params, model, case, trust) for case in cases]
    return summarise(scored), scored


def targets_met(method_name: str, figures: Mapping[str, float]) -> dict[str, bool]:
    """Which of issue 14's targets the figures meet (a method without a hit target has none)."""
    met = {"mass": figures["mass_ratio"] >= MASS_TARGET}
    if method_name in HIT_TARGETS:
        met["hit"] = figures[f"hit_{TARGET_TOLERANCE}px"] >= HIT_TARGETS[method_name]
    if "aopc_ratio" in figures:
        met["aopc"] = figures["aopc"] > 0 and figures["aopc_ratio"] >= AOPC_TARGET
    return met


# --- Output ---

def mark(met: bool | None) -> str:
    """A target's check mark; none for a method without that target."""
    return "" if met is None else " ✓" if met else " ✗"


def times(ratio: float) -> str:
    """A ratio as the table shows it: infinite when the random order gains nothing, undefined as a dash."""
    return "—" if np.isnan(ratio) else "∞" if np.isinf(ratio) else f"{ratio:.1f}×"


TABLE_HEAD = ("| method | hit@0 | hit@5 | hit@15 | Otsu mIoU | relevance mass (lesion share) | mass / share |"
              " AOPC (random) | AOPC / random | deletion area | insertion area | s per map | targets met |\n"
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def table_row(method: Method, figures: Mapping[str, float]) -> str:
    """One method's line of the Markdown table, with the targets' marks."""
    met = targets_met(method.name, figures)
    return (f"| {method.title} | {figures['hit_0px']:.2f} | {figures['hit_5px']:.2f}{mark(met.get('hit'))} |"
            f" {figures['hit_15px']:.2f} | {figures['miou']:.3f} | {figures['mass']:.3f} ({figures['area']:.3f}) |"
            f" {times(figures['mass_ratio'])}{mark(met['mass'])} |"
            f" {figures['aopc']:.3f} ({figures['aopc_random']:.3f}) |"
            f" {times(figures['aopc_ratio'])}{mark(met['aopc'])} | {figures['deletion_auc']:.3f} |"
            f" {figures['insertion_auc']:.3f} | {figures['seconds']:.2f} | {sum(met.values())}/{len(met)} |")


def json_ready(value: Any) -> Any:
    """Numbers JSON can hold: infinity and NaN (a blank map's distance, an undefined ratio) as null."""
    if isinstance(value, dict):
        return {key: json_ready(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_ready(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


# --- The benchmark ---

def models_to_measure(paths: Sequence[Path], device: torch.device,
                      randomized: str = "also") -> list[tuple[str, LoadedModel]]:
    """Each model file, labelled by its file name, then the first one with its top layers randomized;
    ``randomized`` "no" leaves that one out, "only" measures it alone."""
    loaded = [(path.name, load_model(path, device)) for path in paths]
    control = [(f"{loaded[0][0]}, top layers randomized", randomized_copy(loaded[0][1]))]
    return {"also": [*loaded, *control], "no": loaded, "only": control}[randomized]


def overrides_by_method(overrides: Sequence[tuple[str, str, Any]]) -> dict[str, dict[str, Any]]:
    """``--params`` grouped by method; a later value of one key wins."""
    grouped: dict[str, dict[str, Any]] = {}
    for method_name, key, value in overrides:
        grouped.setdefault(method_name, {})[key] = value
    return grouped


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--effusions", type=int, default=40, help="phantoms with an effusion to explain (default 40)")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED,
                        help=f"phantom set (default {HELD_OUT_SEED}, the held-out one)")
    parser.add_argument("--models", type=Path, nargs="+", default=[DEMO_MODEL, TWIN_MODEL, PREVIOUS_MODEL],
                        help="model files, each with its .json card (default: the current demo model, its twin "
                             "trained without the fluid masks, and the previous demo model); the first is also "
                             "measured with its top layers randomized")
    parser.add_argument("--randomized", choices=("also", "no", "only"), default="also",
                        help="the first model with its top layers randomized: after the others (default), "
                             "not at all, or alone")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--params", nargs="+", type=parse_override, default=[], metavar="METHOD:KEY=VALUE",
                        help="a method's parameter, as main.py explain parses it (black: the darkest input); "
                             "choose them on validation phantoms only")
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write every figure, per case too, to OUT")
    return parser


def main() -> None:
    parser = build_parser()
    args = parser.parse_args()
    overrides = overrides_by_method(args.params)
    models = models_to_measure(args.models, pick_device(args.device), args.randomized)
    report: dict[str, Any] = {"seed": args.seed, "effusions": args.effusions, "models": []}
    with tempfile.TemporaryDirectory() as scratch:
        phantoms = make_phantoms(Path(scratch), args.seed, args.effusions)
        report["phantoms"] = len(phantoms)
        print(f"{len(phantoms)} phantoms of seed {args.seed}, {args.effusions} with an effusion;"
              f" hit rates at 0, 5 and 15 image pixels; targets at {TARGET_TOLERANCE} px.")
        for label, model in models:
            try:
                params = {name: METHODS[name].make_params(overrides.get(name, {})) for name in args.methods}
            except (TypeError, ValueError) as error:
                parser.error(str(error))
            cases = effusion_cases(phantoms, model)
            right = accuracy(model, phantoms)
            print(f"\n### {label}: {model.card.name}, accuracy {right:.2f}\n\n{TABLE_HEAD}", flush=True)
            measured = {}
            for name in args.methods:
                figures, per_case = evaluate(METHODS[name], params[name], model, cases)
                print(table_row(METHODS[name], figures), flush=True)
                measured[name] = {"params": asdict(params[name]), "figures": figures,
                                  "targets_met": targets_met(name, figures), "cases": per_case}
            report["models"].append({"label": label, "path": str(model.path), "card": model.card.name,
                                    "accuracy": right, "methods": measured})
    if args.json:
        args.json.write_text(json.dumps(json_ready(report), indent=1) + "\n")


if __name__ == "__main__":
    main()
