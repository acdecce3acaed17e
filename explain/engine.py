"""What every explanation method shares: updates, cancellation and batched scoring.

A method is a generator of :class:`Update`: each one a fresh heatmap that is an honest estimate
of the final one, how far the work has come, and whether it is done. The caller (a Qt worker,
the command line, a test) decides what to do with them; the method never knows who listens.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from explain.model_file import LoadedModel

#: Largest batch tried on the CPU: beyond this, throughput no longer grows and memory does.
CPU_MAX_BATCH = 64
#: Largest batch tried on a GPU; out-of-memory halves it.
GPU_MAX_BATCH = 512
#: A larger batch is tried only while this many batches of it remain. Each new size costs a
#: one-off set-up (oneDNN builds kernels per shape: about 0.8 s for DenseNet-121's forward and
#: backward passes at 16 on a 2-core CPU), which a short run such as integrated gradients'
#: 50 steps would not earn back.
TRIAL_PAYBACK = 4


@dataclass(frozen=True, eq=False)
class Update:
    """One step of an explanation; never changed after it is made.

    ``heatmap`` is float32 on the model's input grid ``(height, width)``, NaN where nothing is
    known yet. ``attribution`` is the full ``(channels, height, width)`` result as Captum
    defines it for the method, present on the final update. ``figures`` holds numbers the
    method reports beside its map (the score explained, a fit, a completeness gap). ``notes``
    holds one-line messages the reader must see beside the map, such as why it is blank: a
    blank map must never pass for an explanation.
    """

    heatmap: np.ndarray
    progress: float
    final: bool
    evaluations: int
    attribution: np.ndarray | None = None
    figures: Mapping[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def same_for_every_channel(heatmap: np.ndarray, channels: int, progress: float, final: bool, evaluations: int,
                           figures: Mapping[str, float]) -> Update:
    """An update of a method that attributes one value per pixel, shared by all its channels
    (occlusion's windows and LIME's superpixels span every channel), as Captum reports it."""
    return Update(heatmap=heatmap, progress=progress, final=final, evaluations=evaluations,
                  attribution=np.broadcast_to(heatmap, (channels, *heatmap.shape)).copy() if final else None,
                  figures=figures)


class CancelToken:
    """A thread-safe flag the GUI sets and the method checks once per batch.

    A flag rather than a Qt slot: while the generator runs, its thread has no event loop
    turning, so a queued cancel signal would only arrive after the work was done.
    """

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


def is_out_of_memory(error: BaseException) -> bool:
    """True for the device running out of memory, which a smaller batch can avoid."""
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


class BatchScorer:
    """Scores perturbed inputs in batches on the model's device, tuning the batch size as it goes.

    The batch size starts at one, so the first partial map comes after a single forward pass,
    and doubles until a size is clearly slower per input than the best so far (by a tenth, seen
    twice, as timings on a busy machine are noisy); it then settles on the best. It grows only
    while enough work remains to repay a new size's set-up (:data:`TRIAL_PAYBACK`). Stopping only
    on a clear loss matters: a large CNN on a CPU gains little from each doubling, so a rule that
    waited for gains would stop at one or two, where Python's overhead per layer dominates, and
    too large a batch is slow again once its activations no longer fit the caches. Every trial
    batch is real work that counts toward the result; none is spent on measuring alone.
    Out-of-memory halves it.
    """

    def __init__(
        self, model: LoadedModel, target: int, cancel: CancelToken | None = None, batch_size: int | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.model = model
        self.clock = clock
        self.target = target
        self.cancel = cancel or CancelToken()
        self.fixed = batch_size is not None
        gpu = model.device.type != "cpu"
        self.max_batch = 1 if not model.batched else (batch_size or (GPU_MAX_BATCH if gpu else CPU_MAX_BATCH))
        self.size = 1 if not model.batched else (batch_size or 1)
        self.evaluations = 0
        # What the growth has learned, kept across runs: a method that scores in stages (the
        # coarse grid, then the rest) goes on from there rather than growing again from scratch.
        self.growing = not self.fixed and model.batched
        self.best_rate, self.best_size, self.misses = 0.0, self.size, 0

    def target_scores(self, batch: Any, forward: Callable[[Any], torch.Tensor] | None = None) -> np.ndarray:
        """The target probability of each input, as float64 on the host (one synchronisation)."""
        with torch.inference_mode():
            scores = self.model.probabilities(batch, forward)[:, self.target]
        return scores.detach().to("cpu", torch.float64).numpy()

    def score(self, batch: torch.Tensor) -> np.ndarray:
        """:meth:`target_scores` for inputs outside :meth:`run`, counted as evaluations."""
        self.evaluations += len(batch)
        return self.target_scores(batch)

    def run(
        self,
        count: int,
        make_batch: Callable[[int, int], torch.Tensor],
        evaluate: Callable[[torch.Tensor], Any] | None = None,
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(start, results)`` for inputs ``start ..`` in order until all ``count`` are done.

        ``make_batch(start, stop)`` builds the inputs on the device; ``evaluate`` turns a batch
        into results, the target's probabilities by default (gradient methods pass their own).
        Stops quietly when the cancel token is set, at the latest one batch after it was.
        """
        evaluate = evaluate or self.target_scores
        start = 0
        while start < count:
            if self.cancel.cancelled:
                return
            stop = min(start + self.size, count)
            began = self.clock()
            try:
                results = evaluate(make_batch(start, stop))
            except RuntimeError as error:
                if not is_out_of_memory(error) or self.size == 1:
                    raise
                self.size, self.max_batch, self.growing = self.size // 2, self.size // 2, False
                if self.model.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            self.evaluations += stop - start
            rate = (stop - start) / max(self.clock() - began, 1e-9)
            yield start, results
            if self.growing and stop - start == self.size:
                self._learn(rate, count - stop)
            start = stop

    def _learn(self, rate: float, remaining: int) -> None:
        """One full batch's throughput: grow, try the size again, or settle on the best.

        Where too little work remains for a larger size to pay back, the size stays; a later
        stage of the same method, with more work, may grow it then.
        """
        if rate > self.best_rate:
            self.best_rate, self.best_size = rate, self.size
        if rate < self.best_rate * 0.9:
            self.misses += 1  # the same size once more before giving up on it
            if self.misses >= 2:
                self.growing, self.size = False, self.best_size
        elif self.size >= self.max_batch:
            self.growing = False
        elif remaining >= TRIAL_PAYBACK * 2 * self.size:
            self.misses, self.size = 0, min(self.size * 2, self.max_batch)


def model_device_input(x: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    """The model input on the model's device, once, so that batches are built there.

    A GPU copy goes from pinned host memory without blocking; nothing crosses between host and
    device again until the scores of a batch come back.
    """
    x = x.to(torch.float32).contiguous()
    if model.device.type == "cuda":
        return x.pin_memory().to(model.device, non_blocking=True)
    return x.to(model.device)
