"""The batch size grows past flat gains, settles on the fastest size and finds it again after a busy spell.

Timings come from a fake clock on a known cost curve, never from the machine running the tests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from explain.engine import BatchScorer
from explain.model_file import LoadedModel
from tests.model_factory import card_for

#: Seconds per input at each batch size: a large CNN on a CPU, little gain past 4, slow past 16.
PER_INPUT = {1: 10.0, 2: 6.0, 4: 5.0, 8: 4.9, 16: 4.8, 32: 7.0, 64: 9.0}


def a_model() -> LoadedModel:
    return LoadedModel(card_for(4, 4), torch.nn.Identity(), torch.device("cpu"), batched=True)


def sizes_used(count: int, load: Callable[[int], float] = lambda batch: 1.0, model: LoadedModel | None = None,
               **options) -> list[int]:
    """The size of each batch a scorer runs (on a new model unless given, with ``options``); ``load(n)``
    slows the n-th batch by that factor."""
    now = [0.0]
    scorer = BatchScorer(model or a_model(), 1, clock=lambda: now[0], **options)
    sizes: list[int] = []

    def evaluate(batch: range) -> list[int]:
        now[0] += load(len(sizes)) * len(batch) * PER_INPUT[scorer.size]
        sizes.append(len(batch))
        return list(batch)

    done = [start for start, _ in scorer.run(count, lambda a, b: range(a, b), evaluate)]
    assert done == sorted(done) and sum(sizes) == count
    return sizes


def settled_on(sizes: list[int]) -> int:
    """The size most batches used."""
    return Counter(sizes).most_common(1)[0][0]


def trials_are_single_neighbours(sizes: list[int], settled: int) -> bool:
    """Every batch of another size is one batch of a neighbouring size, between two of the settled one."""
    others = [i for i, size in enumerate(sizes) if size != settled]
    return all(sizes[i] in (settled // 2, settled * 2) and sizes[i - 1] == sizes[i + 1] == settled for i in others)


def test_growth_passes_flat_gains_and_settles_on_the_best_size():
    sizes = sizes_used(400)
    assert sizes[:7] == [1, 2, 4, 8, 16, 32, 32]
    assert settled_on(sizes[7:-1]) == 16 and trials_are_single_neighbours(sizes[7:-1], 16)


def test_one_slow_batch_does_not_end_the_growth():
    sizes = sizes_used(400, load=lambda batch: 3.0 if batch == 3 else 1.0)
    assert sizes[:8] == [1, 2, 4, 8, 8, 16, 32, 32]
    assert settled_on(sizes[8:-1]) == 16 and trials_are_single_neighbours(sizes[8:-1], 16)


def test_a_short_run_tries_no_size_it_cannot_pay_back():
    # 50 inputs (integrated gradients' steps): 16 would be a little faster on this curve, but
    # only two batches of it would remain to repay its set-up.
    assert sizes_used(50) == [1, 2, 4, 8, 8, 8, 8, 8, 3]


def test_a_busy_spell_while_growing_does_not_leave_it_at_one():
    # The machine is busy while batch 2 is measured, twice: growth stops and settles on 1, as
    # the old tuner did for good. Trying 2 again once the spell is over takes it back up.
    sizes = sizes_used(1000, load=lambda batch: 4.0 if batch in (1, 2) else 1.0)
    assert sizes[:4] == [1, 2, 2, 1]
    assert settled_on(sizes[-20:-1]) == 16
    assert sizes.count(1) < 40


def test_noisy_timings_with_a_spike_settle_near_the_fastest_size():
    # Every batch slowed at random by up to half again (noise on a busy machine only ever
    # slows), and a spike of 5x over batches 1 to 3, while size 2 is first measured.
    noise = np.random.default_rng(7).uniform(1.0, 1.5, size=10_000)

    def load(batch: int) -> float:
        return noise[batch] * (5.0 if 1 <= batch <= 3 else 1.0)

    sizes = sizes_used(3000, load)
    later = sizes[len(sizes) // 2:-1]
    # Sizes 4 to 16 differ by less than the noise; the later batches cost within a tenth of the best.
    cost = sum(size * PER_INPUT[size] for size in later) / sum(later)
    assert min(later) >= 2 and cost < 1.1 * min(PER_INPUT.values())


def test_a_resumed_scorer_starts_at_the_size_the_last_run_on_the_model_settled_on():
    model = a_model()
    assert sizes_used(400, model=model)[:7] == [1, 2, 4, 8, 16, 32, 32]
    resumed = sizes_used(130, model=model, resume=True)
    assert resumed[0] == 16 and settled_on(resumed) == 16
    assert sizes_used(20, model=model)[:3] == [1, 2, 4], "only on request"
    assert sizes_used(20, resume=True)[0] == 1, "another model grows"
    assert sizes_used(20, model=model, batch_size=4, resume=True)[0] == 4


def test_inputs_that_come_together_share_a_batch_within_the_largest():
    # Rounds of 5 inputs, each waiting on the last (integrated gradients' refinements): a scorer
    # still at size one runs each round as one batch, and learns no size from it.
    now = [0.0]
    scorer = BatchScorer(a_model(), 1, clock=lambda: now[0])
    sizes: list[int] = []

    def evaluate(batch: range) -> list[int]:
        now[0] += len(batch) * PER_INPUT[1]
        sizes.append(len(batch))
        return list(batch)

    for _ in range(3):
        assert [start for start, _ in scorer.run(5, lambda a, b: range(a, b), evaluate, together=5)] == [0]
    assert sizes == [5, 5, 5] and scorer.size == 1 and not scorer.rates
    sizes.clear()
    list(scorer.run(200, lambda a, b: range(a, b), evaluate, together=100))
    assert sizes == [64, 64, 64, 8], "never past the largest batch"
    sizes.clear()
    fixed = BatchScorer(a_model(), 1, batch_size=2)
    list(fixed.run(5, lambda a, b: range(a, b), evaluate, together=5))
    assert sizes == [2, 2, 1], "a batch size the user set is the largest"
