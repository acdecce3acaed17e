"""Adaptive integrated gradients against Captum's default: time and completeness gap, as ratios.

    .venv/bin/python benchmarks/adaptive_ig.py [--models demo densenet] [--repeats 3] [--tolerance 0.01]

Captum's default is ``IntegratedGradients`` with 50 Gauss-Legendre steps; both start from the
same baseline (Lightbox's default) so that their gaps measure the same integral. The adaptive rule
runs at the given tolerance and at Captum's own gap on the input. Runs alternate and each time is
the median. A ratio below 1 favours Lightbox.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks.reference_runs import TARGET, demo_input  # noqa: E402
from benchmarks.speed import alternate, as_users_load_it, final  # noqa: E402
from dicom.bundled import DEMO_MODEL  # noqa: E402
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients, path_start  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402


def relative_gap(attribution: np.ndarray, score: float, baseline_score: float) -> float:
    """|sum of the map - (f(x) - f(baseline))| relative to f(x) - f(baseline)."""
    explained = score - baseline_score
    return abs(float(attribution.sum(dtype=np.float64)) - explained) / abs(explained)


def compare(name: str, model: LoadedModel, repeats: int, tolerance: float) -> None:
    """Times Captum's default and the adaptive rule, alternated, and prints time and gap ratios.

    The adaptive rule runs twice: at ``tolerance``, and at Captum's own gap on this input (the
    same answer, measured by completeness), which a first Captum run measures.
    """
    from captum.attr import IntegratedGradients

    x = demo_input(model.card)
    baseline = path_start(x, IntegratedGradientsParams())
    probabilities, batch = as_users_load_it(model, x)
    captum = IntegratedGradients(probabilities)
    with torch.no_grad():
        ends = probabilities(torch.stack([x, baseline]))[:, TARGET].double()

    def run_captum() -> torch.Tensor:
        return captum.attribute(x[None], baselines=baseline[None], target=TARGET, n_steps=50,
                                method="gausslegendre", internal_batch_size=batch)

    captum_gap = relative_gap(run_captum()[0].detach().numpy(), float(ends[0]), float(ends[1]))
    tolerances = {"adaptive": tolerance, "as Captum": captum_gap}

    def adaptive(tol: float) -> object:
        return final(integrated_gradients(model, x, TARGET, IntegratedGradientsParams(steps=0, tolerance=tol)))

    runs = {"captum": run_captum, **{label: lambda tol=tol: adaptive(tol) for label, tol in tolerances.items()}}
    times, results = alternate(runs, repeats)
    print(f"\n[{name}] adaptive integrated gradients against Captum's 50 Gauss-Legendre steps, from the default "
          f"baseline ({IntegratedGradientsParams().baseline}), {repeats} alternated repeats")
    print(f"  captum             {times['captum']:7.2f} s  gap {captum_gap:.3%}  nodes 50 (batch {batch})")
    for label, tol in tolerances.items():
        ours = results[label]
        gap = ours.figures["relative_completeness_gap"]
        capped = "  (cap reached)" if ours.figures["cap_reached"] else ""
        print(f"  tolerance {tol:6.3%}  {times[label]:7.2f} s  gap {gap:.3%}  nodes {ours.figures['steps_used']:.0f}"
              f"{capped}  time ratio {times[label] / times['captum']:.2f} (target <= 0.5), "
              f"gap ratio {gap / captum_gap:.2f} (target <= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("demo", "densenet"), default=["demo"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tolerance", type=float, default=0.01)
    args = parser.parse_args()
    device = torch.device("cpu")
    for name in args.models:
        if name == "demo":
            compare("demo model", load_model(DEMO_MODEL, device), args.repeats, args.tolerance)
            continue
        import tempfile

        from benchmarks.densenet import export_densenet
        with tempfile.TemporaryDirectory() as folder:
            path = export_densenet(Path(folder), architecture="monai")
            compare("MONAI DenseNet121", load_model(path, device), args.repeats, args.tolerance)


if __name__ == "__main__":
    main()
