"""Where the files that ship with Lightbox lie: the demo study and the demo model."""

from __future__ import annotations

from pathlib import Path

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
DEMO_STUDY = RESOURCES / "demo" / "chest-pa.dcm"
DEMO_MODEL = RESOURCES / "models" / "effusion_demo.pt2"
