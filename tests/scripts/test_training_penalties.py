"""The demo model's "right for the right reasons" penalties measure what lies off the fluid."""

from __future__ import annotations

import pytest
import torch
from train_demo_model import GRADIENT_MARGIN, gradient_outside, main, votes_outside

SIZE = 32


def fluid_mask(top: int = 10, left: int = 10, size: int = 6) -> torch.Tensor:
    """One film's mask, ``(1, 1, SIZE, SIZE)``, with a square of fluid."""
    mask = torch.zeros(1, 1, SIZE, SIZE)
    mask[..., top:top + size, left:left + size] = 1
    return mask


def score_reading(row: int, column: int) -> tuple[torch.Tensor, torch.Tensor]:
    """An input, and a score that reads only the pixel ``(row, column)`` of it."""
    inputs = torch.rand(1, 1, SIZE, SIZE, requires_grad=True)
    return inputs, 2.0 * inputs[:, 0, row, column]


@pytest.mark.parametrize(("row", "column", "share"), [
    (12, 12, 0.0),  # inside the fluid
    (10 - GRADIENT_MARGIN, 12, 0.0),  # on its edge, within the margin
    (10 - GRADIENT_MARGIN - 1, 12, 1.0),  # one pixel beyond the margin
    (30, 30, 1.0),  # far away
])
def test_the_gradient_penalty_is_the_share_of_the_gradient_off_the_fluid(row: int, column: int,
                                                                         share: float) -> None:
    inputs, score = score_reading(row, column)
    assert float(gradient_outside(score, inputs, fluid_mask()).detach()) == pytest.approx(share, abs=1e-6)


def test_the_gradient_penalty_trains_the_weights_off_the_fluid_down() -> None:
    inputs = torch.rand(1, 1, SIZE, SIZE, requires_grad=True)
    weight = torch.full((1, 1, SIZE, SIZE), 0.1, requires_grad=True)
    score = (weight * inputs).sum(dim=(1, 2, 3))
    gradient_outside(score, inputs, fluid_mask()).backward()
    inside, outside = weight.grad[..., 12, 12], weight.grad[..., 30, 30]
    assert float(outside) > 0 > float(inside), "a descent step shrinks what is read off the fluid, grows what is on it"


def test_clear_films_add_no_penalty() -> None:
    inputs, score = score_reading(30, 30)
    assert float(gradient_outside(score, inputs, torch.zeros(1, 1, SIZE, SIZE)).detach()) == 0.0
    assert float(votes_outside(torch.randn(1, 1, 4, 4), torch.zeros(1, 1, SIZE, SIZE))) == 0.0


def test_the_vote_penalty_is_the_winning_votes_share_off_the_fluid() -> None:
    votes = torch.full((2, 1, 4, 4), -20.0)
    votes[0, 0, 1, 1] = 20.0  # a cell holding fluid: the 8 x 8 block from (8, 8) to (16, 16)
    votes[1, 0, 3, 3] = 20.0  # a cell without any
    masks = fluid_mask().expand(2, 1, SIZE, SIZE)
    assert float(votes_outside(votes[:1], masks[:1])) == pytest.approx(0.0, abs=1e-6)
    assert float(votes_outside(votes[1:], masks[1:])) == pytest.approx(1.0, abs=1e-6)
    assert float(votes_outside(votes, masks)) == pytest.approx(0.5, abs=1e-6), "averaged over the effusion films"


@pytest.mark.parametrize("every", ["0", "-2"])
def test_a_gradient_penalty_never_applied_is_refused_before_any_work(every, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--gradient-every", every, "--data", "/nonexistent/phantoms"])
    assert stopped.value.code == 2
    assert f"--gradient-every must be 1 or more, not {every}" in capsys.readouterr().err
