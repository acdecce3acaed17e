"""Lightbox against the tools an ML engineer would use instead: same model, input and parameters.

    .venv/bin/python benchmarks/speed.py [--models densenet demo] [--densenet {ours,monai}] [--repeats 3]
        [--parts ...]

Needs the benchmark extra (``pip install -e .[bench]``: Captum, MONAI, lime). Models: a
DenseNet-121 with random weights (CheXNet's architecture, exported here with ``torch.export``)
and the bundled demo model, both explaining the demo study at 224 x 224. ``--densenet`` picks
which DenseNet-121: ``ours``, hand-built in ``benchmarks/densenet.py`` (the default), or
``monai``, MONAI's ``DenseNet121`` exported unchanged, as its users export it; every table's
title names the model its figures come from. Runs alternate between the tools and each figure is the median; ratios are
Lightbox's time over the other tool's (below 1 is faster).

Parts:

- ``process``: occlusion at window 16, stride 8 (729 windows), each tool as a whole process from
  the command line, imports and model loading included: ``main.py explain`` as it runs by
  default (with its trust figures) and with ``--no-trust``, against Captum's ``Occlusion``
  (``perturbations_per_eval`` chosen by a sweep) and MONAI's ``OcclusionSensitivity``, run as
  their users run them; then Captum once more with Lightbox's allocator settings
  (``explain/heap.py``), to tell the allocator's share from the method's. Also Lightbox's first
  partial map against its final one, both counted from the model being loaded, from its
  ``--json`` lines, what the trust figures cost beside the map, and the fixed cost of each
  side: a process that only imports what it needs and loads the model, Lightbox's with its
  safety check. The ratios issue 18 sets targets for are printed last.

The parts below run in one process, which gives every tool Lightbox's allocator settings, so
they compare the methods only:

- ``occlusion``: in one process, the bare cost of the same number of batched forward passes (the
  floor for an unchanged model), Lightbox without incremental inference (its overhead above the
  floor), with it (exact), in fast mode (half precision) and with adaptive drill-down, and how far
  the approximate maps are from the exact one (SSIM, largest difference).
- ``ig``: integrated gradients, 50 Gauss-Legendre steps from a zero baseline, against Captum's.
- ``lime``: LIME with the same superpixels (each tool computes them in its timed run) and sample
  count against Captum's ``Lime`` and the ``lime`` package's ``LimeImageExplainer``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explain.heap import keep_freed_memory  # noqa: E402

keep_freed_memory()  # as main.py does, before torch starts threads; Captum runs in this process get it too

import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage.metrics import structural_similarity  # noqa: E402

from benchmarks.densenet import ARCHITECTURES, export_densenet  # noqa: E402
from benchmarks.reference_runs import STRIDE, TARGET, WINDOW, demo_input, fastest_batch  # noqa: E402
from dicom.bundled import DEMO_MODEL, DEMO_STUDY  # noqa: E402
from explain.integrated_gradients import IntegratedGradientsParams, integrated_gradients  # noqa: E402
from explain.lime import LimeParams, lime, lime_baseline, superpixels  # noqa: E402
from explain.model_file import LoadedModel, load_model  # noqa: E402
from explain.occlusion import OcclusionParams, occlusion  # noqa: E402

PARTS = ("process", "occlusion", "ig", "lime")
#: How each table names the model its figures come from.
TITLES = {"ours": "DenseNet-121, hand-built (benchmarks/densenet.py)",
          "monai": "MONAI DenseNet121, exported as its users export it", "demo": "demo model"}


def timed(run: Callable[[], object]) -> tuple[float, object]:
    began = time.perf_counter()
    result = run()
    return time.perf_counter() - began, result


def alternate(runs: dict[str, Callable[[], object]], repeats: int) -> tuple[dict[str, float], dict[str, object]]:
    """Each run ``repeats`` times, taking turns; the median time of each and its last result."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, run in runs.items():
            seconds, results[name] = timed(run)
            times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}, results


def report(title: str, times: dict[str, float], ours: str, notes: dict[str, str] | None = None) -> None:
    """A small table: each run's median seconds and its ratio against ours."""
    print(f"\n{title}")
    for name, seconds in times.items():
        ratio = "" if name == ours else f"   Lightbox / this = {times[ours] / seconds:.2f}"
        print(f"  {name:<44} {seconds:8.2f} s{ratio}   {(notes or {}).get(name, '')}")


def final(updates) -> object:
    *_, last = updates
    return last


def map_difference(approximate: np.ndarray, exact: np.ndarray) -> str:
    """SSIM over the exact map's range, and the largest difference as a share of that range."""
    span = float(exact.max() - exact.min()) or 1.0
    ssim = structural_similarity(exact, approximate, data_range=span)
    return f"SSIM {ssim:.3f}, largest difference {np.abs(approximate - exact).max() / span:.1%} of the range"


def same_map(a: np.ndarray, b: np.ndarray) -> str:
    """How far apart two maps of the same thing are, in their own units and against the peak."""
    largest = float(np.abs(a - b).max())
    return f"largest difference {largest:.1e}, {largest / (np.abs(b).max() or 1.0):.1e} of the map's peak"


# --- whole processes -----------------------------------------------------------------------------


def lightbox_process(model: Path, out: Path, trust: bool = True) -> tuple[float, dict]:
    """``main.py explain`` as a user runs it, by default with its trust figures; the wall time, and
    the seconds from the model being loaded to the first partial map and to the last line."""
    command = [sys.executable, str(ROOT / "main.py"), "explain", str(DEMO_STUDY), "--model", str(model),
               "--method", "occlusion", "--window", str(WINDOW), "--stride", str(STRIDE), "--baseline", "0",
               "--json", "--out", str(out),
               *([] if trust else ["--no-trust"])]
    seconds, done = timed(lambda: subprocess.run(command, check=True, capture_output=True, text=True))
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return seconds, {"first": lines[0]["elapsed"], "final": lines[-1]["elapsed"]}


#: A process that gets a model ready and stops: Lightbox's imports for ``main.py explain`` and its
#: checked load (the archive's safety check, the load, the check against the card), against what a
#: Captum user's script pays before its first evaluation.
READY = {
    "Lightbox: main.py explain's imports and load_model": (
        "import sys; sys.path.insert(0, {root!r}); import main; main.keep_freed_memory(); "
        "import cli.explain_command, torch; from explain.model_file import load_model; "
        "load_model({model!r}, torch.device('cpu'))"),
    "Captum script: import torch and captum, torch.export.load(...).module()": (
        "import torch; from captum.attr import Occlusion; torch.export.load({model!r}).module()"),
}


def ready_process(code: str, model: Path) -> float:
    """Wall seconds of a process that runs ``code`` (a :data:`READY` line) on ``model``."""
    command = [sys.executable, "-c", code.format(root=str(ROOT), model=str(model))]
    seconds, _ = timed(lambda: subprocess.run(command, check=True, capture_output=True, text=True))
    return seconds


def reference_command(*arguments: str, keep: bool) -> list[str]:
    """``reference_runs.py`` with these arguments; ``keep`` gives it Lightbox's allocator settings."""
    return ([sys.executable, str(ROOT / "benchmarks" / "reference_runs.py"), *arguments]
            + (["--keep-freed-memory"] if keep else []))


def reference_process(run: str, model: Path, out: Path, batch: int, keep: bool = False) -> tuple[float, dict]:
    command = reference_command(run, str(model), str(out), "--batch", str(batch), keep=keep)
    seconds, done = timed(lambda: subprocess.run(command, check=True, capture_output=True, text=True))
    return seconds, {"final": float(done.stdout.strip().rsplit("=", 1)[1])}


def as_users_load_it(model: LoadedModel, x: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], int]:
    """The probabilities of the model loaded as a Captum or lime user would (no checks, weights
    not frozen: Lightbox freezes them, which spares backward passes the weight gradients), and
    the reference tools' batch: the fastest for that model in this process."""
    module = torch.export.load(str(model.path)).module().to(model.device)
    return (lambda inputs: torch.softmax(module(inputs), dim=1)), fastest_batch(module, x)


def gradient_floor(model: LoadedModel, x: torch.Tensor, count: int, batch: int) -> Callable[[], None]:
    """``count`` forward and backward passes for the input's gradient: integrated gradients' floor."""
    copies = x[None].repeat(batch, 1, 1, 1)

    def run() -> None:
        for start in range(0, count, batch):
            inputs = copies[: min(batch, count - start)].clone().requires_grad_(True)
            torch.autograd.grad(model.probabilities(inputs)[:, TARGET].sum(), inputs)
    return run


def floor_note(times: dict[str, float], floor: str, ours: str) -> str:
    return f"(above the floor: {times[ours] / times[floor] - 1:+.1%})"


def reference_sweep(model: Path, keep: bool = False) -> int:
    """The fastest batch for a reference tool's own process, measured in such a process."""
    done = subprocess.run(reference_command("sweep", str(model), keep=keep), check=True, capture_output=True,
                          text=True)
    return int(done.stdout.strip().rsplit("=", 1)[1])


def process_part(name: str, path: Path, model: LoadedModel, x: torch.Tensor, repeats: int, folder: Path) -> None:
    batch, kept_batch = reference_sweep(path), reference_sweep(path, keep=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    outputs = {tool: folder / f"{slug}-{tool}.npz" for tool in ("lightbox", "captum", "monai")}
    default, no_trust, captum = ("Lightbox (main.py explain, with its trust figures: the default)",
                                 "Lightbox (main.py explain --no-trust)",
                                 f"Captum Occlusion (perturbations_per_eval={batch})")
    runs = {
        default: lambda: lightbox_process(path, outputs["lightbox"]),
        no_trust: lambda: lightbox_process(path, outputs["lightbox"], trust=False),
        captum: lambda: reference_process("captum-occlusion", path, outputs["captum"], batch),
        f"MONAI OcclusionSensitivity (n_batch={batch})":
            lambda: reference_process("monai-occlusion", path, outputs["monai"], batch),
        f"Captum Occlusion, given Lightbox's allocator settings (perturbations_per_eval={kept_batch})":
            lambda: reference_process("captum-occlusion", path, outputs["captum"], kept_batch, keep=True),
    }
    times, results = alternate(runs, repeats)
    ours = np.load(outputs["lightbox"])["attribution"]
    captum_map, monai_map = (np.load(outputs[tool])["attribution"] for tool in ("captum", "monai"))
    correlation = np.corrcoef(monai_map.ravel(), ours.ravel())[0, 1]
    notes = {captum: f"(map: {same_map(captum_map, ours)})",
             list(runs)[3]: f"(its own window placement and averaging: correlation {correlation:.2f} with ours)"}
    report(f"[{name}] occlusion, window {WINDOW}, stride {STRIDE}, whole processes", times, default, notes)
    with_figures, without = results[default][1], results[no_trust][1]
    print(f"  Lightbox's first partial map at {without['first']:.3f} s of {without['final']:.2f} s from the model "
          f"being loaded: {without['first'] / without['final']:.3f} of the explanation's time")
    trust = with_figures["final"] - without["final"]
    print(f"  the trust figures after the map: {trust:.2f} s, {trust / without['final']:.2f} of the map's "
          f"{without['final']:.2f} s (last runs)")
    ready, _ = alternate({label: lambda code=code: ready_process(code, path) for label, code in READY.items()},
                         repeats)
    report(f"[{name}] fixed cost: a process that gets the model ready and stops", ready, list(READY)[0])
    print(f"  targets (issue 18): default main.py explain / Captum's occlusion = {times[default] / times[captum]:.2f}"
          f" (at most 0.5); --no-trust / Captum = {times[no_trust] / times[captum]:.2f} (at most 0.4);"
          f" model ready / Captum's = {ready[list(READY)[0]] / ready[list(READY)[1]]:.2f} (at most 1)")


# --- in one process ------------------------------------------------------------------------------


def forward_floor(model: LoadedModel, x: torch.Tensor, count: int, batch: int) -> Callable[[], None]:
    """``count`` forward passes in batches of ``batch``: what any unchanged-model occlusion costs."""
    copies = x[None].repeat(batch, 1, 1, 1)

    def run() -> None:
        with torch.inference_mode():
            for start in range(0, count, batch):
                model.module(copies[: min(batch, count - start)])
    return run


def occlusion_part(name: str, model: LoadedModel, x: torch.Tensor, repeats: int) -> None:
    from captum.attr import Occlusion

    params = OcclusionParams(WINDOW, STRIDE, 0.0)
    probabilities, batch = as_users_load_it(model, x)
    captum = Occlusion(probabilities)
    fast = replace(model, fast=True)
    runs = {
        f"bare forward passes (730, batches of {batch})": forward_floor(model, x, 730, batch),
        "Lightbox, plain batches": lambda: final(occlusion(model, x, TARGET, params, incremental=False)),
        "Lightbox, incremental (exact)": lambda: final(occlusion(model, x, TARGET, params)),
        "Lightbox, incremental, fast mode": lambda: final(occlusion(fast, x, TARGET, params)),
        "Lightbox, incremental, drill-down 0.25": lambda: final(occlusion(model, x, TARGET, replace(params, drill_down=0.25))),
        f"Captum Occlusion (perturbations_per_eval={batch})": lambda: captum.attribute(
            x[None], sliding_window_shapes=(1, WINDOW, WINDOW), strides=(1, STRIDE, STRIDE), baselines=0.0,
            target=TARGET, perturbations_per_eval=batch),
    }
    times, results = alternate(runs, repeats)
    exact = results["Lightbox, incremental (exact)"].heatmap
    notes = {
        "Lightbox, plain batches": floor_note(times, list(runs)[0], "Lightbox, plain batches"),
        "Lightbox, incremental (exact)": f"(against the floor: {times['Lightbox, incremental (exact)'] / times[list(runs)[0]]:.2f}; "
                                         f"{same_map(exact, results[list(runs)[-1]][0, 0].numpy())} against Captum)",
        "Lightbox, incremental, fast mode": f"({map_difference(results['Lightbox, incremental, fast mode'].heatmap, exact)})",
        "Lightbox, incremental, drill-down 0.25": f"({map_difference(results['Lightbox, incremental, drill-down 0.25'].heatmap, exact)})",
    }
    report(f"[{name}] occlusion in one process, window {WINDOW}, stride {STRIDE}", times,
           "Lightbox, incremental (exact)", notes)


def ig_part(name: str, model: LoadedModel, x: torch.Tensor, repeats: int) -> None:
    from captum.attr import IntegratedGradients

    params = IntegratedGradientsParams(steps=50, rule="gausslegendre", baseline=0.0)
    probabilities, batch = as_users_load_it(model, x)
    captum = IntegratedGradients(probabilities)
    floor = f"bare forward+backward passes (50, batches of {batch})"
    runs = {
        floor: gradient_floor(model, x, 50, batch),
        "Lightbox integrated gradients": lambda: final(integrated_gradients(model, x, TARGET, params)),
        f"Captum IntegratedGradients (internal_batch_size={batch})": lambda: captum.attribute(
            x[None], baselines=torch.zeros_like(x)[None], target=TARGET, n_steps=50, method="gausslegendre",
            internal_batch_size=batch),
    }
    times, results = alternate(runs, repeats)
    ours, captum_name = list(runs)[1:]
    captum_map = results[captum_name][0].detach().numpy()
    exact = float64_integrated_gradients(model, x)
    notes = {captum_name: f"(map: {same_map(captum_map, results[ours].attribution)}; {against(exact, captum_map)})",
             ours: f"{floor_note(times, floor, ours)} ({against(exact, results[ours].attribution)})"}
    report(f"[{name}] integrated gradients, 50 Gauss-Legendre steps", times, ours, notes)


def against(exact: np.ndarray, approximate: np.ndarray) -> str:
    """How a float32 map compares with the float64 one: overall, and at its worst pixel (where a
    ReLU or max-pool that flips between the two precisions moves a gradient locally)."""
    correlation = np.corrcoef(exact.ravel(), approximate.ravel())[0, 1]
    return f"against float64: correlation {correlation:.5f}, {same_map(approximate, exact)}"


def float64_integrated_gradients(model: LoadedModel, x: torch.Tensor) -> np.ndarray:
    """Captum's integrated gradients in float64: the reference both float32 maps are judged by,
    where a map is so faint (a random network's) that float32 rounding is a visible part of it."""
    from captum.attr import IntegratedGradients

    module = torch.export.load(str(model.path)).module().to(model.device, torch.float64)
    inputs = x[None].to(torch.float64)
    attribution = IntegratedGradients(lambda batch: torch.softmax(module(batch), dim=1)).attribute(
        inputs, baselines=torch.zeros_like(inputs), target=TARGET, n_steps=50, method="gausslegendre",
        internal_batch_size=10)
    return attribution[0].detach().cpu().numpy()


def lime_part(name: str, model: LoadedModel, x: torch.Tensor, repeats: int, samples: int) -> None:
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime
    from lime.lime_image import LimeImageExplainer

    params = LimeParams(samples=samples, fill=0.0)
    labels = superpixels(x, params)
    probabilities, batch = as_users_load_it(model, x)
    captum = Lime(probabilities, interpretable_model=SkLearnRidge(alpha=1.0))
    image = x[0].numpy().astype(np.float64)

    def classify(images: np.ndarray) -> np.ndarray:
        batch_input = torch.as_tensor(images[..., 0], dtype=torch.float32)[:, None]
        with torch.no_grad():
            return probabilities(batch_input).numpy()

    def lime_package(batch_size: int) -> object:
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
            return LimeImageExplainer(random_state=0).explain_instance(
                np.repeat(image[..., None], 3, axis=2), classify, labels=(TARGET,), top_labels=None, hide_color=0.0,
                num_samples=samples, batch_size=batch_size, segmentation_fn=lambda _: superpixels(x, params),
                random_seed=0)

    floor = f"bare forward passes ({samples}, batches of {batch})"
    runs = {
        floor: forward_floor(model, x, samples, batch),
        "Lightbox LIME": lambda: final(lime(model, x, TARGET, params)),
        f"Captum Lime (perturbations_per_eval={batch})": lambda: captum.attribute(
            x[None], target=TARGET, n_samples=samples, feature_mask=torch.as_tensor(superpixels(x, params))[None, None],
            baselines=lime_baseline(x, params)[None], perturbations_per_eval=batch),
        f"lime package LimeImageExplainer (batch_size={batch})": lambda: lime_package(batch),
        "lime package, its default batch_size=10": lambda: lime_package(10),
    }
    times, _ = alternate(runs, repeats)
    report(f"[{name}] LIME, {samples} samples, {labels.max() + 1} superpixels", times, "Lightbox LIME",
           {"Lightbox LIME": floor_note(times, floor, "Lightbox LIME")})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=("densenet", "demo"), default=["densenet", "demo"])
    parser.add_argument("--densenet", choices=ARCHITECTURES, default="ours",
                        help="which DenseNet-121: ours (benchmarks/densenet.py) or MONAI's, as users export it")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lime-samples", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads), device {args.device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        paths = {"densenet": export_densenet(folder, f"densenet121-{args.densenet}", args.densenet)
                 if "densenet" in args.models else None, "demo": DEMO_MODEL}
        for name in args.models:
            title = TITLES[args.densenet if name == "densenet" else name]
            print(f"\nmodel: {title}")
            model = load_model(paths[name], device)
            x = demo_input(model.card).to(device)
            if "process" in args.parts and device.type == "cpu":
                process_part(title, paths[name], model, x, args.repeats, folder)
            if "occlusion" in args.parts:
                occlusion_part(title, model, x, args.repeats)
            if "ig" in args.parts:
                ig_part(title, model, x, args.repeats)
            if "lime" in args.parts:
                lime_part(title, model, x, args.repeats, args.lime_samples)


if __name__ == "__main__":
    main()
