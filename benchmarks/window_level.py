"""Window/level frame time on a 2048 x 2048 16-bit radiograph, against re-windowing in float.

Each move of the mouse during a window/level drag costs one new display image. Lightbox builds
an 8-bit table over the image's distinct values and gathers through it; the reference is what a
script with pydicom would do, ``apply_windowing`` on the modality values and a scale to 8 bits.
Both are timed alternately in one run, on the same image and windows, and the pyqtgraph upload
(``ImageItem.setImage`` and its render to a QImage) is timed on top, as the viewer does it.

    .venv/bin/python benchmarks/window_level.py [--size 2048] [--moves 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from viewer.dicom_pixels import GreyDisplay, ModalityTransform, Window  # noqa: E402


def radiograph(size: int, seed: int = 0) -> np.ndarray:
    """A smooth 12-bit image with noise: what a chest radiograph's histogram looks like."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    body = 2500 * np.exp(-(((x - 0.5) / 0.35) ** 2 + ((y - 0.5) / 0.45) ** 2))
    return (body + 600 + rng.normal(0, 40, (size, size))).clip(0, 4095).astype(np.uint16)


def windows_of_a_drag(moves: int) -> list[Window]:
    """The windows a left-drag passes through, one per mouse move."""
    return [Window(1500 + 8 * k, 2500 - 10 * k) for k in range(moves)]


def float_rewindow(stored: np.ndarray, transform: ModalityTransform, window: Window) -> np.ndarray:
    """The reference: pydicom's windowing over the whole image in float, then to 8 bits."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    header = Dataset()
    header.WindowCenter, header.WindowWidth = window.center, window.width
    header.PhotometricInterpretation, header.BitsStored, header.PixelRepresentation = "MONOCHROME2", 12, 0
    shown = apply_windowing(transform.apply(stored), header)
    low, high = shown.min(), shown.max()
    return ((shown - low) * (255.0 / max(high - low, 1e-9))).astype(np.uint8)


def median_ms(samples: list[float]) -> float:
    return 1000.0 * statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--moves", type=int, default=60)
    args = parser.parse_args()

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    pg.setConfigOptions(imageAxisOrder="row-major")
    item = pg.ImageItem()

    stored = radiograph(args.size)
    transform = ModalityTransform(slope=1.0, intercept=0.0)
    started = time.perf_counter()
    display = GreyDisplay(stored, transform)
    prepare = time.perf_counter() - started

    ours, reference, upload = [], [], []
    for window in windows_of_a_drag(args.moves):
        t0 = time.perf_counter()
        frame = display.render(window, invert=False)
        t1 = time.perf_counter()
        float_rewindow(stored, transform, window)
        t2 = time.perf_counter()
        item.setImage(frame, levels=(0, 255), autoLevels=False)
        item.render()
        t3 = time.perf_counter()
        ours.append(t1 - t0)
        reference.append(t2 - t1)
        upload.append(t3 - t2)
    app.processEvents()

    frame_ms = median_ms(ours) + median_ms(upload)
    print(f"image {args.size} x {args.size} uint16, {args.moves} window/level moves, medians")
    print(f"  one-off preparation (index image and table): {1000 * prepare:.1f} ms")
    print(f"  Lightbox table + gather:         {median_ms(ours):7.2f} ms")
    print(f"  pydicom apply_windowing (float): {median_ms(reference):7.2f} ms")
    print(f"  ratio Lightbox / pydicom:        {median_ms(ours) / median_ms(reference):7.3f}")
    print(f"  pyqtgraph setImage + render:     {median_ms(upload):7.2f} ms")
    print(f"  whole frame (ours + upload):     {frame_ms:7.2f} ms = {1000 / frame_ms:.0f} frames per second")


if __name__ == "__main__":
    main()
