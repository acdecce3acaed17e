"""What an ML engineer would run instead of Lightbox, each as a whole process, for ``speed.py``.

    python benchmarks/reference_runs.py {captum-occlusion,monai-occlusion} MODEL.pt2 OUT.npz [--batch N]
        [--keep-freed-memory]
    python benchmarks/reference_runs.py sweep MODEL.pt2 [--keep-freed-memory]

The model is loaded as its user would load it (``torch.export.load(...).module()``) and the input
is the demo study preprocessed exactly as Lightbox does it, so both sides explain the same tensor.
Prints the seconds from the model being loaded to the map being done, as ``elapsed=S``;
``sweep`` prints the batch at which the model scores fastest in such a process, as ``batch=N``.
``--keep-freed-memory`` gives the run Lightbox's allocator settings (``explain/heap.py``), to
show how much of a difference is the allocator and how much the method.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dicom.bundled import DEMO_STUDY  # noqa: E402
from dicom.image import load_frame  # noqa: E402
from dicom.model_input import model_unit_image
from dicom.series import open_paths  # noqa: E402
from explain.heap import keep_freed_memory  # noqa: E402
from explain.model_card import ModelCard  # noqa: E402
from explain.model_file import card_path  # noqa: E402
from explain.preprocessing import to_model_input  # noqa: E402

WINDOW, STRIDE, TARGET = 16, 8, 1
#: The batch sizes (Captum's ``perturbations_per_eval``, MONAI's ``n_batch``) a sweep tries.
CANDIDATE_BATCHES = (8, 16, 32, 64)


def demo_input(card: ModelCard) -> torch.Tensor:
    return to_model_input(model_unit_image(load_frame(open_paths([str(DEMO_STUDY)]).all_series()[0].frames[0]), card.window), card.input)


def fastest_batch(module: torch.nn.Module, x: torch.Tensor) -> int:
    """The candidate batch at which the model scores most copies of ``x`` per second here.

    The answer depends on the process as much as the machine: with glibc's default allocator
    large batches fault their activations in afresh, so it is measured where the run will be.
    """
    def rate(batch: int) -> float:
        copies = x[None].repeat(batch, 1, 1, 1)
        rounds = max(64 // batch, 1)
        with torch.no_grad():
            torch.softmax(module(copies), dim=1)
            started = time.perf_counter()
            for _ in range(rounds):
                torch.softmax(module(copies), dim=1)
        return rounds * batch / (time.perf_counter() - started)
    return max(CANDIDATE_BATCHES, key=rate)


def captum_occlusion(module: torch.nn.Module, x: torch.Tensor, batch: int) -> np.ndarray:
    """``captum.attr.Occlusion`` on the target's softmax probability, zero baseline."""
    from captum.attr import Occlusion

    explainer = Occlusion(lambda inputs: torch.softmax(module(inputs), dim=1))
    result = explainer.attribute(x[None], sliding_window_shapes=(x.shape[0], WINDOW, WINDOW),
                                 strides=(1, STRIDE, STRIDE), baselines=0.0, target=TARGET,
                                 perturbations_per_eval=batch)
    return result[0].detach().numpy()


def monai_occlusion(module: torch.nn.Module, x: torch.Tensor, batch: int) -> np.ndarray:
    """MONAI's ``OcclusionSensitivity``: a 16-pixel mask, half overlap (stride 8), zero fill.

    MONAI maps, per label, the probability with each window hidden, averaged per pixel; the
    unhidden probability less it is the drop that Captum and Lightbox map.
    """
    from monai.visualize import OcclusionSensitivity

    class Probabilities(torch.nn.Module):
        """The exported program in a module MONAI can switch to eval mode (exported ones refuse)."""

        def forward(self, inputs: torch.Tensor) -> torch.Tensor:
            return module(inputs)

    occlusion = OcclusionSensitivity(Probabilities(), mask_size=WINDOW, n_batch=batch, overlap=1 - STRIDE / WINDOW,
                                     mode=0.0, activate=True, verbose=False)
    with torch.no_grad():
        probability_map, _ = occlusion(x[None])
        original = torch.softmax(module(x[None]), dim=1)[0, TARGET]
    return (original - probability_map[0, TARGET]).numpy()[None]


RUNS = {"captum-occlusion": captum_occlusion, "monai-occlusion": monai_occlusion}
SWEEP = "sweep"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", choices=sorted([*RUNS, SWEEP]))
    parser.add_argument("model", type=Path)
    parser.add_argument("out", type=Path, nargs="?", help="where the map goes (not for sweep)")
    parser.add_argument("--batch", type=int, default=32, help="occluded copies per forward pass")
    parser.add_argument("--keep-freed-memory", action="store_true", help="Lightbox's allocator settings")
    args = parser.parse_args()
    if args.keep_freed_memory:
        keep_freed_memory()
    card = ModelCard.read(card_path(args.model))
    x = demo_input(card)
    module = torch.export.load(str(args.model)).module()
    if args.run == SWEEP:
        print(f"batch={fastest_batch(module, x)}")
        return
    started = time.perf_counter()
    attribution = RUNS[args.run](module, x, args.batch)
    print(f"elapsed={time.perf_counter() - started:.4f}")
    np.savez(args.out, attribution=attribution.astype(np.float32))


if __name__ == "__main__":
    main()
