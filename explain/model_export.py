"""Turning a user's trained ``nn.Module`` into what Lightbox opens: a ``.pt2`` with a dynamic batch and its card.

The batch dimension is exported free, so the methods can score many perturbed copies at once
(a fixed batch of one still works, one image at a time, and many times slower). The card is
validated by :class:`~explain.model_card.ModelCard` before anything is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from explain.model_card import ModelCard
from explain.model_file import card_path

#: The largest batch the exported program accepts; the methods' batches stay far below it.
MAX_BATCH = 4096


def export_with_card(module: torch.nn.Module, card: ModelCard, out: Path) -> Path:
    """Export ``module`` (in eval mode) with a dynamic batch to ``out`` and write ``card`` beside it."""
    spec = card.input
    example = torch.randn(2, spec.channels, spec.height, spec.width)  # 2: a batch of 1 would be specialised
    program = torch.export.export(module.eval(), (example,),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=MAX_BATCH)},))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(out))
    card_path(out).write_text(json.dumps(card.to_dict(), indent=2))
    return out
