"""Write synthetic chest radiographs, about half with a pleural effusion, with their true lesions.

Usage::

    python scripts/make_phantoms.py --out DIR --count N --seed S [--rows R] [--workers W]

Each phantom is ``phantom-NNNN.dcm`` with ``phantom-NNNN.mask.png`` beside it (255 where the
fluid is, all zero without an effusion), and ``labels.csv`` lists every phantom's name, whether
it has an effusion (0/1) and on which side (``right``, ``left``, ``both`` or ``none``).

The phantoms train the demo model and are the ground truth that explanations are measured
against, so two things matter. Every film is a different body, exposed differently, so that a
model cannot learn one picture by heart. And whether a film has an effusion is drawn apart from
everything else: three independent random streams per phantom (the body, the finding, the
texture and noise) make a film with fluid and the same film without it differ only where the
fluid is (beyond a shift of a few grey levels overall from the detector's automatic scaling),
so the fluid is the only thing that tells the two classes apart.

Phantom ``i`` of seed ``S`` is the same file whatever the count, so a held-out set only needs a
seed that no training set used.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_demo_study import (  # noqa: E402 - found beside this script
    COLUMNS,
    ROWS,
    SPACING_MM,
    Effusion,
    Identity,
    Patient,
    Pose,
    Radiograph,
    chest_radiograph,
    write_radiograph,
)

DEFAULT_ROWS = 512  # large enough for a 224-pixel model, small enough to write 800 in minutes
LABELS_FILE = "labels.csv"
EFFUSION_RATE = 0.5
BILATERAL_RATE = 0.1  # of the films with an effusion


@dataclass(frozen=True)
class Phantom:
    """Everything that decides one phantom's file, drawn before any pixel is made."""

    name: str
    identity: Identity
    patient: Patient
    effusions: tuple[Effusion, ...]
    texture: np.random.SeedSequence

    @property
    def side(self) -> str:
        """The side of the effusion as ``labels.csv`` gives it."""
        sides = {effusion.side for effusion in self.effusions}
        return "none" if not sides else "both" if len(sides) == 2 else sides.pop()


def random_patient(rng: np.random.Generator) -> Patient:
    """A body and an exposure around the demo patient's: the spread of an adult chest clinic.

    The ranges keep both costophrenic angles inside the field, where the finding lives.
    """
    size = rng.uniform(0.93, 1.04)
    pose = Pose(
        scale_x=size * rng.uniform(0.94, 1.06),
        scale_y=size * rng.uniform(0.93, 1.05),
        rotation=rng.uniform(-3.0, 3.0),
        shift_x=rng.uniform(-6.0, 6.0),
        shift_y=rng.uniform(-8.0, 8.0),
    )
    right_dome = rng.uniform(250.0, 275.0)
    return Patient(
        pose=pose,
        diaphragm_right=right_dome,
        diaphragm_left=right_dome + rng.uniform(4.0, 18.0),
        heart_scale=rng.uniform(0.88, 1.15),
        heart_shift=rng.uniform(-6.0, 8.0),
        rib_spacing=rng.uniform(19.5, 22.5),
        depth=rng.uniform(0.85, 1.2),
        gastric_air=rng.uniform(0.3, 1.5),
        dose=float(np.exp(rng.uniform(np.log(0.5), np.log(1.6)))),
        scatter=rng.uniform(0.35, 0.6),
        compression=rng.uniform(0.6, 0.78),
        sharpening=rng.uniform(0.4, 0.9),
    )


def random_effusion(side: str, rng: np.random.Generator) -> Effusion:
    """Fluid on one side, from just blunting the angle to reaching the middle of the lung."""
    return Effusion(
        side=side,
        height=rng.uniform(15.0, 100.0),
        meniscus=rng.uniform(0.3, 0.6),
        softness=rng.uniform(10.0, 30.0),
        fullness=rng.uniform(0.85, 1.0),
    )


def random_effusions(rng: np.random.Generator) -> tuple[Effusion, ...]:
    """Half the films have no effusion; of the rest, one in ten has one on each side."""
    if rng.random() >= EFFUSION_RATE:
        return ()
    if rng.random() < BILATERAL_RATE:
        return random_effusion("right", rng), random_effusion("left", rng)
    return (random_effusion(str(rng.choice(["right", "left"])), rng),)


def plan_phantom(seed: int, index: int) -> Phantom:
    """Draw phantom ``index`` of set ``seed`` from its own three independent streams."""
    body, finding, texture = np.random.SeedSequence(seed, spawn_key=(index,)).spawn(3)
    name = f"phantom-{index:04d}"
    identity = Identity(
        patient_id=f"PHANTOM-{seed}-{index:04d}",
        patient_name=f"Phantom^{seed}-{index:04d}",
        accession=f"P{seed}-{index:04d}"[-16:],
        study="Chest X-ray (synthetic phantom)",
        uid_source=f"lightbox-phantom-{seed}-{index}",
    )
    patient = random_patient(np.random.default_rng(body))
    effusions = random_effusions(np.random.default_rng(finding))
    return Phantom(name, identity, patient, effusions, texture)


def detector(rows: int) -> tuple[int, int, float]:
    """Rows, columns and pixel spacing (mm) of the demo's field of view at ``rows`` rows."""
    return rows, round(rows * COLUMNS / ROWS), SPACING_MM * ROWS / rows


def render_phantom(phantom: Phantom, rows: int = DEFAULT_ROWS,
                   with_fluid: bool = True) -> Radiograph:
    """Expose the phantom; ``with_fluid=False`` gives the same film without its effusion."""
    effusions = phantom.effusions if with_fluid else ()
    return chest_radiograph(*detector(rows), seed=phantom.texture, patient=phantom.patient,
                            effusions=effusions)


def write_phantom(job: tuple[Phantom, Path, int]) -> tuple[str, int, str]:
    """Render and write one phantom; return its row of ``labels.csv``."""
    phantom, out, rows = job
    write_radiograph(render_phantom(phantom, rows), out / f"{phantom.name}.dcm", phantom.identity)
    return phantom.name, int(bool(phantom.effusions)), phantom.side


def write_phantoms(out: Path, count: int, seed: int, rows: int = DEFAULT_ROWS,
                   workers: int = 2) -> list[tuple[str, int, str]]:
    """Write ``count`` phantoms and ``labels.csv`` into ``out``; return the label rows.

    Workers are started fresh (not forked), so a caller that has already started threads of
    its own, such as PyTorch's, is safe.
    """
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(plan_phantom(seed, index), out, rows) for index in range(count)]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            labels = pool.map(write_phantom, jobs, chunksize=4)
    else:
        labels = [write_phantom(job) for job in jobs]
    with open(out / LABELS_FILE, "w", newline="", encoding="ascii") as stream:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(["name", "effusion", "side"])
        writer.writerows(labels)
    return labels


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder to write the phantoms into")
    parser.add_argument("--count", type=int, required=True, help="how many phantoms")
    parser.add_argument("--seed", type=int, required=True, help="seed of the set")
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS, help="image height in pixels")
    parser.add_argument("--workers", type=int, default=2, help="processes that render in parallel")
    args = parser.parse_args(argv)
    labels = write_phantoms(args.out, args.count, args.seed, args.rows, args.workers)
    effusions = sum(row[1] for row in labels)
    print(f"{len(labels)} phantoms, {effusions} with an effusion, in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
