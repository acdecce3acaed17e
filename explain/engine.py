"""What every explanation method shares: updates, cancellation and batched scoring.

A method is a generator of :class:`Update`: each one a fresh heatmap that is an honest estimate
of the final one, how far the work has come, and whether it is done. The caller (a Qt worker,
the command line, a test) decides what to do with them; the method never knows who listens.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
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
#: A settled batch size tries its neighbours again after this many batches (the load a
#: measurement was taken under may have gone, or come), twice as long after each trial that
#: lost, up to :data:`LONGEST_REVISIT`, so that a well-chosen size pays little for the checks.
REVISIT = 8
LONGEST_REVISIT = 64
#: A size's speed is judged on its last this many batches.
RECENT = 3


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


#: The size each model's last tuned run settled on, kept while the model is: a later run on the same
#: model (the trust figures after its map) can start there instead of growing from one again.
_SETTLED_SIZES: weakref.WeakKeyDictionary[torch.nn.Module, int] = weakref.WeakKeyDictionary()


class BatchScorer:
    """Scores perturbed inputs in batches on the model's device, tuning the batch size as it goes.

    The batch size starts at one, so the first partial map comes after a single forward pass
    (or, with ``resume``, at the size the model's last tuned run settled on), and doubles
    until a size is clearly slower per input than the fastest so far (by a tenth, seen twice);
    it then settles on the fastest. It grows only while enough work remains to
    repay a new size's set-up (:data:`TRIAL_PAYBACK`). Stopping only on a clear loss matters: a
    large CNN on a CPU gains little from each doubling, so a rule that waited for gains would
    stop at one or two, where Python's overhead per layer dominates, and too large a batch is
    slow again once its activations no longer fit the caches. Out-of-memory halves it.

    Timings on a busy machine are noisy, and the noise goes one way: another process can only
    slow a batch. So a size's speed is the fastest of its last few batches (:meth:`speed`), not
    their mean, and a settled size is never final: every :data:`REVISIT` batches or more (less
    often while the trials lose), one batch of the next larger or smaller size is tried and
    compared with the settled size's recent speed, measured under the same load. A larger size
    that wins resumes the growth, so a tuner that settled low while the machine was busy climbs
    back once it is not. Every trial batch is real work that counts toward the result; none is
    spent on measuring alone.
    """

    def __init__(
        self, model: LoadedModel, target: int, cancel: CancelToken | None = None, batch_size: int | None = None,
        clock: Callable[[], float] = time.perf_counter, resume: bool = False,
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
        # What the tuning has learned, kept across runs: a method that scores in stages (the
        # coarse grid, then the rest) goes on from there rather than growing again from scratch.
        self.tuning = not self.fixed and model.batched
        self.growing = self.tuning
        self.settled, self.since_settled, self.upward, self.revisit = self.size, 0, True, REVISIT
        self.rates: dict[int, deque[float]] = {}
        remembered = _SETTLED_SIZES.get(model.module) if resume and self.tuning else None
        if remembered:
            # Settled from the first batch; the revisits still try its neighbours as they would.
            self._settle(min(remembered, self.max_batch))

    def target_scores(self, batch: Any, forward: Callable[[Any], torch.Tensor] | None = None) -> np.ndarray:
        """The target's score of each input (its probability, or its log-odds as the model's ``score``
        says), as float64 on the host (one synchronisation)."""
        with torch.inference_mode():
            scores = self.model.target_scores(batch, self.target, forward)
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
        together: int = 1,
    ) -> Iterator[tuple[int, Any]]:
        """Yield ``(start, results)`` for inputs ``start ..`` in order until all ``count`` are done.

        ``make_batch(start, stop)`` builds the inputs on the device; ``evaluate`` turns a batch
        into results, the target's scores by default (gradient methods pass their own).
        Batches hold at least ``together`` inputs (within the largest batch): a caller whose
        inputs come a few at a time, each few waiting for the last, knows a batch of them costs
        less than their share of growing one. Such a larger batch teaches the tuning nothing.
        Stops quietly when the cancel token is set, at the latest one batch after it was.
        """
        evaluate = evaluate or self.target_scores
        start = 0
        while start < count:
            if self.cancel.cancelled:
                return
            stop = min(start + max(self.size, min(together, self.max_batch)), count)
            began = self.clock()
            try:
                results = evaluate(make_batch(start, stop))
            except RuntimeError as error:
                if not is_out_of_memory(error) or self.size == 1:
                    raise
                self._shrink()
                continue
            self.evaluations += stop - start
            rate = (stop - start) / max(self.clock() - began, 1e-9)
            yield start, results
            if self.tuning and stop - start == self.size:
                self._learn(rate, count - stop)
            start = stop

    def _shrink(self) -> None:
        """Out of memory: half the size, and never more than that again."""
        self.size = self.max_batch = self.settled = self.size // 2
        self.growing = False
        if self.model.device.type == "cuda":
            torch.cuda.empty_cache()

    def speed(self, size: int) -> float:
        """Inputs per second of a size: the fastest of its recent batches, as load only slows one."""
        return max(self.rates.get(size, ()), default=0.0)

    def fastest(self) -> int:
        """The size with the highest :meth:`speed`; the larger of two equally fast."""
        return max(self.rates, key=lambda size: (self.speed(size), size))

    def _learn(self, rate: float, remaining: int) -> None:
        """One full batch's throughput: grow, settle, or judge a trial of a neighbouring size."""
        self.rates.setdefault(self.size, deque(maxlen=RECENT)).append(rate)
        if self.growing:
            self._grow(remaining)
        elif self.size != self.settled:
            self._judge_trial(rate)
        else:
            self._maybe_revisit(remaining)

    def _grow(self, remaining: int) -> None:
        """Double while no size is clearly slower than the fastest (seen twice), then settle on the fastest.

        Where too little work remains for a larger size to pay back, the size stays; a later
        stage of the same method, with more work, may grow it then.
        """
        if self.speed(self.size) < self.speed(self.fastest()) * 0.9:
            if len(self.rates[self.size]) >= 2:  # the same size once more before giving up on it
                self._settle(self.fastest())
        elif self.size >= self.max_batch:
            self._settle(self.size)
        elif self.pays_back(self.size * 2, remaining):
            self.size = self.size * 2

    def _settle(self, size: int) -> None:
        self.growing, self.size, self.settled, self.since_settled = False, size, size, 0
        _SETTLED_SIZES[self.model.module] = size

    def pays_back(self, size: int, remaining: int) -> bool:
        """Whether enough work remains for batches of ``size`` to repay its set-up."""
        return size <= self.max_batch and remaining >= TRIAL_PAYBACK * size

    def _maybe_revisit(self, remaining: int) -> None:
        """Every ``revisit`` batches, try one batch of the next size up or down, in turn, where there is one."""
        self.since_settled += 1
        if self.since_settled < self.revisit:
            return
        self.since_settled, self.upward = 0, not self.upward
        larger = self.settled * 2 if self.pays_back(self.settled * 2, remaining) else 0
        turns = (larger, self.settled // 2) if self.upward else (self.settled // 2, larger)
        self.size = next((size for size in turns if size), self.settled)

    def _judge_trial(self, rate: float) -> None:
        """Keep a tried neighbour that beat the settled size's recent speed; a larger one grows on."""
        if rate <= self.speed(self.settled):
            self.size, self.revisit = self.settled, min(self.revisit * 2, LONGEST_REVISIT)
            return
        self.revisit = REVISIT
        if self.size > self.settled:
            self.growing, self.settled = True, self.size
        else:
            self._settle(self.size)


def model_device_input(x: torch.Tensor, model: LoadedModel) -> torch.Tensor:
    """The model input on the model's device, once, so that batches are built there.

    A GPU copy goes from pinned host memory without blocking; nothing crosses between host and
    device again until the scores of a batch come back.
    """
    x = x.to(torch.float32).contiguous()
    if model.device.type == "cuda":
        return x.pin_memory().to(model.device, non_blocking=True)
    return x.to(model.device)
