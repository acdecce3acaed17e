"""Choose each method's default parameters by measurement, on validation phantoms.

Tries a small grid of a method's key parameters on the current demo model and prints a table
ranked by the 5-pixel hit rate, then by relevance mass (the figures of ``benchmarks/quality.py``,
without the trust figures, which the ranking does not use and which cost ~130 passes a map).
The winner is then confirmed on the held-out table with ``quality.py --params``.

The phantoms are validation ones, seed 8000 by default; the held-out seed (7000) is refused, so
that the defaults are never fitted to the set that reports them.

Cost per validation effusion, on two CPU cores shared with other work: occlusion about a minute
for its 12 settings, integrated gradients up to 2 minutes for its 18, Grad-CAM under a second;
LIME 15 to 40 s per setting (9), meaningful perturbation 2 to 3 minutes per setting (4) at a load
average of 10, so sweep those on fewer effusions (``--effusions 8``) or on a GPU (``--device
cuda``). Methods can be swept one at a time.

    .venv/bin/python benchmarks/choose_defaults.py METHOD [METHOD ...] [--effusions 20] [--seed 8000]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from quality import (
    HELD_OUT_SEED,
    TOLERANCES,
    effusion_cases,
    evaluate,
    make_phantoms,
)

from dicom.bundled import DEMO_MODEL
from explain.devices import DEVICE_CHOICES, pick_device
from explain.methods import METHODS
from explain.model_file import load_model

VALIDATION_SEED = 8000

#: Per method, axes of settings; the grid is every combination of one setting from each axis.
#: Settings that only make sense together (a stride with its window, a noise level with noise)
#: share an axis. Grad-CAM's only knob is its layer, so its grid is its default.
GRIDS: dict[str, tuple[tuple[dict[str, Any], ...], ...]] = {
    "occlusion": (
        ({"window": 8, "stride": 4}, {"window": 16, "stride": 8}, {"window": 32, "stride": 16}),
        tuple({"baseline": baseline} for baseline in (0.0, "mean", "blur", "black")),
    ),
    "ig": (
        ({"steps": 16}, {"steps": 50}),
        tuple({"baseline": baseline} for baseline in (0.0, "black", "blur")),
        ({"noise_samples": 0}, {"noise_samples": 8, "noise_level": 0.1}, {"noise_samples": 8, "noise_level": 0.2}),
    ),
    "lime": (
        tuple({"segments": segments} for segments in (50, 100, 200)),
        tuple({"fill": fill} for fill in ("mean", "black", "blur")),
    ),
    "perturbation": (
        tuple({"fill": fill} for fill in ("blur", "black")),
        tuple({"mask_cell": cell} for cell in (8, 4)),
    ),
    "gradcam": (),
    "gradcampp": (),
}


def settings(method_name: str) -> list[dict[str, Any]]:
    """Every combination of the method's grid, each a mapping of parameter overrides."""
    return [{key: value for part in combination for key, value in part.items()}
            for combination in itertools.product(*GRIDS[method_name])]


def describe(overrides: Mapping[str, Any]) -> str:
    """A setting as the table names it, in ``--params`` form without the method."""
    return " ".join(f"{key}={value}" for key, value in overrides.items()) or "(its only setting)"


def ranked(rows: Sequence[tuple[str, dict[str, float]]]) -> list[tuple[str, dict[str, float]]]:
    """Best first: by the 5-pixel hit rate, ties broken by relevance mass."""
    return sorted(rows, key=lambda row: (row[1]["hit_5px"], row[1]["mass"]), reverse=True)


def print_table(rows: Sequence[tuple[str, dict[str, float]]]) -> None:
    """The ranked settings as a Markdown table."""
    hits = " | ".join(f"hit@{t}" for t in TOLERANCES)
    print(f"| rank | parameters | {hits} | Otsu mIoU | relevance mass | mass / share | s per map |")
    print("|---|---|" + "---|" * (len(TOLERANCES) + 4))
    for rank, (label, f) in enumerate(rows, 1):
        hit_cells = " | ".join(f"{f[f'hit_{t}px']:.2f}" for t in TOLERANCES)
        print(f"| {rank} | {label} | {hit_cells} | {f['miou']:.3f} | {f['mass']:.3f} | {f['mass_ratio']:.1f}× |"
              f" {f['seconds']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("methods", nargs="+", choices=list(METHODS), metavar="METHOD")
    parser.add_argument("--effusions", type=int, default=20, help="validation phantoms with an effusion (default 20)")
    parser.add_argument("--seed", type=int, default=VALIDATION_SEED,
                        help=f"validation set (default {VALIDATION_SEED}; never the held-out {HELD_OUT_SEED})")
    parser.add_argument("--model", type=Path, default=DEMO_MODEL)
    parser.add_argument("--device", choices=DEVICE_CHOICES, default="cpu")
    args = parser.parse_args()
    if args.seed == HELD_OUT_SEED:
        parser.error(f"seed {HELD_OUT_SEED} is the held-out set: choose defaults on another (default {VALIDATION_SEED})")
    model = load_model(args.model, pick_device(args.device))
    with tempfile.TemporaryDirectory() as scratch:
        cases = effusion_cases(make_phantoms(Path(scratch), args.seed, args.effusions), model)
    for name in args.methods:
        method = METHODS[name]
        print(f"\n### {method.title}: {len(cases)} validation effusions (seed {args.seed}), {model.card.name}\n")
        rows = []
        for overrides in settings(name):
            params = method.make_params(overrides)
            label = describe(overrides) + (" (default)" if params == method.params() else "")
            rows.append((label, evaluate(method, params, model, cases, trust=False)[0]))
        print_table(ranked(rows))


if __name__ == "__main__":
    main()
