"""Adaptive LIME against the lime package's default 1,000 samples: time and top-5 agreement.

    .venv/bin/python benchmarks/adaptive_lime.py [--phantoms 12] [--seed 6000] [--segments 100] [--precision 0.05]
        [--lime-default-batch]

On the demo study and ``--phantoms`` phantoms of set ``--seed`` (``scripts/make_phantoms.py``;
not a training or validation set), the demo model's "effusion" score is explained by Lightbox's
adaptive LIME (``samples`` 0) and by the ``lime`` package's ``LimeImageExplainer`` at its default
1,000 samples, given Lightbox's superpixels (``segmentation_fn``) and the same fill (each
superpixel's own mean: lime's ``hide_color=None``, Lightbox's ``fill="mean"``). Both fit the same
weighted ridge surrogate, so they differ in the samples drawn and in how many.

Time: the two runs alternate on each image, in one process with the model loaded once; lime is
timed at the batch its user would find fastest for this model (and, with
``--lime-default-batch``, at its default ``batch_size=10`` too). The ratio is of the totals over
all images; below 1 favours Lightbox.

Agreement: each run's top 5 superpixels (largest coefficients, the evidence for the finding)
against those of a 5,000-sample Lightbox run with another seed than the adaptive run's, so that
the two share no samples. An image counts when the five are the same set; the mean overlap of
the sets is printed beside it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from make_phantoms import write_phantoms  # noqa: E402

from benchmarks.quality import model_input  # noqa: E402
from benchmarks.reference_runs import TARGET, demo_input  # noqa: E402
from benchmarks.speed import alternate, as_users_load_it, final  # noqa: E402
from dicom.bundled import DEMO_MODEL  # noqa: E402
from explain.lime import MAX_ADAPTIVE_SAMPLES, LimeParams, lime, superpixels, top_superpixels  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402

LIME_SAMPLES = 1000
#: The reference run's seed: not the adaptive run's (0), so that it is an independent estimate.
REFERENCE_SEED = 12345


def superpixel_coefficients(labels: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """Each superpixel's coefficient, read back from a map that carries it on every pixel."""
    return np.bincount(labels.ravel(), weights=heatmap.ravel()) / np.bincount(labels.ravel())


def lime_package_run(classify, x: torch.Tensor, labels: np.ndarray, batch_size: int) -> np.ndarray:
    """The lime package's coefficients, one per superpixel, at its default samples and kernel."""
    from lime.lime_image import LimeImageExplainer

    image = np.repeat(x[0].numpy().astype(np.float64)[..., None], 3, axis=2)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
        explanation = LimeImageExplainer(random_state=0).explain_instance(
            image, classify, labels=(TARGET,), top_labels=None, hide_color=None, num_samples=LIME_SAMPLES,
            batch_size=batch_size, segmentation_fn=lambda _: labels, random_seed=0)
    coefficients = np.zeros(int(labels.max()) + 1)
    for feature, weight in explanation.local_exp[TARGET]:
        coefficients[feature] = weight
    return coefficients


def compare(name: str, model: LoadedModel, x: torch.Tensor, params: LimeParams, default_batch: bool) -> dict:
    """Times adaptive LIME and the lime package on one image, alternated, and scores both against the reference."""
    labels = superpixels(x, params)
    probabilities, batch = as_users_load_it(model, x)

    def classify(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return probabilities(torch.as_tensor(images[..., :1], dtype=torch.float32).permute(0, 3, 1, 2)).numpy()

    runs = {
        "adaptive": lambda: final(lime(model, x, TARGET, params)),
        "lime": lambda: lime_package_run(classify, x, labels, batch),
    }
    if default_batch:
        runs["lime, batch_size=10"] = lambda: lime_package_run(classify, x, labels, 10)
    times, results = alternate(runs, 1)
    reference = final(lime(model, x, TARGET, replace(params, samples=MAX_ADAPTIVE_SAMPLES, seed=REFERENCE_SEED)))
    truth = top_superpixels(superpixel_coefficients(labels, reference.heatmap))
    ours = top_superpixels(superpixel_coefficients(labels, results["adaptive"].heatmap))
    theirs = top_superpixels(results["lime"])
    figures = results["adaptive"].figures
    row = {"name": name, "times": times, "samples": int(figures["samples_used"]), "cap": bool(figures["cap_reached"]),
           "ours": len(ours & truth) / 5, "lime": len(theirs & truth) / 5}
    capped = ", cap" if row["cap"] else ""
    print(f"  {name:14s} adaptive {times['adaptive']:6.2f} s ({row['samples']:4d} samples{capped},"
          f" top five {figures['top_confidence']:.0%} sure, error {figures['relative_error']:.1%})"
          f"  lime {times['lime']:6.2f} s (batch {batch})"
          + (f"  lime batch 10 {times['lime, batch_size=10']:6.2f} s" if default_batch else "")
          + f"  top-5 overlap with the reference: adaptive {row['ours']:.1f}, lime {row['lime']:.1f}", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=12)
    parser.add_argument("--seed", type=int, default=6000, help="phantom set (default 6000: no training set's)")
    parser.add_argument("--segments", type=int, default=LimeParams().segments)
    parser.add_argument("--precision", type=float, default=LimeParams().precision)
    parser.add_argument("--lime-default-batch", action="store_true", help="also time lime at its batch_size=10")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(DEMO_MODEL, torch.device("cpu"))
    params = LimeParams(samples=0, segments=args.segments, fill="mean", precision=args.precision)
    print(f"adaptive LIME (stability {params.stability}, precision {params.precision}, cap {MAX_ADAPTIVE_SAMPLES}) "
          f"against the lime package's "
          f"{LIME_SAMPLES} samples, {args.segments} superpixels, the demo model")
    rows = [compare("demo study", model, demo_input(model.card), params, args.lime_default_batch)]
    with tempfile.TemporaryDirectory() as folder:
        write_phantoms(Path(folder), args.phantoms, args.seed, workers=2)
        for path in sorted(Path(folder).glob("*.dcm")):
            rows.append(compare(path.stem, model, model_input(path, model)[0], params, args.lime_default_batch))
    total = {key: sum(row["times"][key] for row in rows) for key in rows[0]["times"]}
    per_image = [row["times"]["adaptive"] / row["times"]["lime"] for row in rows]
    agree = {side: sum(row[side] == 1.0 for row in rows) for side in ("ours", "lime")}
    print(f"\n{len(rows)} images; samples used: mean {np.mean([r['samples'] for r in rows]):.0f}, "
          f"median {np.median([r['samples'] for r in rows]):.0f}, max {max(r['samples'] for r in rows)}, "
          f"cap reached on {sum(r['cap'] for r in rows)}")
    print(f"  time: adaptive {total['adaptive']:.1f} s, lime {total['lime']:.1f} s: "
          f"ratio {total['adaptive'] / total['lime']:.2f} (target <= 0.5); "
          f"per image median {np.median(per_image):.2f}, max {max(per_image):.2f}")
    if "lime, batch_size=10" in total:
        print(f"  against lime at its default batch_size=10 ({total['lime, batch_size=10']:.1f} s): ratio "
              f"{total['adaptive'] / total['lime, batch_size=10']:.2f}")
    print(f"  top 5 the same set as the {MAX_ADAPTIVE_SAMPLES}-sample reference's: adaptive {agree['ours']} of "
          f"{len(rows)}, lime {agree['lime']} of {len(rows)} (target: adaptive >= lime); mean overlap adaptive "
          f"{np.mean([r['ours'] for r in rows]):.2f}, lime {np.mean([r['lime'] for r in rows]):.2f}")


if __name__ == "__main__":
    main()
