"""The batch size grows past flat gains and settles on the fastest size, on a known cost curve."""

from __future__ import annotations

import torch

from explain.engine import BatchScorer
from explain.model_file import LoadedModel
from tests.model_factory import card_for

#: Seconds per input at each batch size: a large CNN on a CPU, little gain past 4, slow past 16.
PER_INPUT = {1: 10.0, 2: 6.0, 4: 5.0, 8: 4.9, 16: 4.8, 32: 7.0, 64: 9.0}


def sizes_used(count: int, hiccup_at: int | None = None) -> list[int]:
    now = [0.0]
    model = LoadedModel(card_for(4, 4), torch.nn.Identity(), torch.device("cpu"), batched=True)
    scorer = BatchScorer(model, 1, clock=lambda: now[0])
    sizes: list[int] = []

    def evaluate(batch: range) -> list[int]:
        slow = 3.0 if len(sizes) == hiccup_at else 1.0  # one batch slowed by something else
        now[0] += slow * len(batch) * PER_INPUT[scorer.size]
        sizes.append(len(batch))
        return list(batch)

    done = [start for start, _ in scorer.run(count, lambda a, b: range(a, b), evaluate)]
    assert done == sorted(done) and sum(sizes) == count
    return sizes


def test_growth_passes_flat_gains_and_settles_on_the_best_size():
    sizes = sizes_used(400)
    assert sizes[:7] == [1, 2, 4, 8, 16, 32, 32]
    assert set(sizes[7:-1]) == {16}


def test_one_slow_batch_does_not_end_the_growth():
    sizes = sizes_used(400, hiccup_at=3)
    assert sizes[:8] == [1, 2, 4, 8, 8, 16, 32, 32] and set(sizes[8:-1]) == {16}


def test_a_short_run_tries_no_size_it_cannot_pay_back():
    # 50 inputs (integrated gradients' steps): 16 would be a little faster on this curve, but
    # only two batches of it would remain to repay its set-up.
    assert sizes_used(50) == [1, 2, 4, 8, 8, 8, 8, 8, 3]
