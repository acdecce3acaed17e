"""Window/level drag frame time on a 2048 x 2048 16-bit radiograph, against re-windowing in float.

Each mouse move of a left-drag must end in a new picture on screen; 60 frames per second leaves
16.7 ms. Two ways are timed alternately in one run, in the same window and at the same zoom:

- Lightbox: a real mouse move through pyqtgraph into the viewer, then a synchronous repaint.
  The viewer handed pyqtgraph the index image once; a move only builds a new 8-bit table.
- The reference: what a viewer built on pydicom does, ``apply_windowing`` over the modality
  values in float, scaled to 8 bits and handed to the same image item, then the same repaint.

    .venv/bin/python benchmarks/window_level.py [--moves 150]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def reference_frame(image, center: float, width: float) -> np.ndarray:
    """The float path: pydicom's windowing of every pixel, then a scale to 8 bits."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    header = Dataset()
    header.WindowCenter, header.WindowWidth = center, width
    header.PhotometricInterpretation, header.BitsStored, header.PixelRepresentation = "MONOCHROME2", 16, 0
    shown = apply_windowing(image.modality_values().astype(np.float64), header)
    return ((shown - shown.min()) * (255.0 / max(float(np.ptp(shown)), 1e-9))).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--moves", type=int, default=150)
    args = parser.parse_args()

    import pyqtgraph as pg
    from PySide6.QtCore import QPoint, QSettings, Qt
    from PySide6.QtTest import QTest

    from tests.dicom_factory import write_radiograph
    from viewer.app import application
    from viewer.main_window import MainWindow

    app = application()
    pg.setConfigOptions(mouseRateLimit=-1)  # time every move, not pyqtgraph's 100 Hz sampling
    with tempfile.TemporaryDirectory() as scratch:
        path = write_radiograph(Path(scratch) / "dx.dcm", rows=2048, cols=2048, bits_stored=16)
        window = MainWindow(settings=QSettings(str(Path(scratch) / "s.ini"), QSettings.Format.IniFormat))
        window.resize(1400, 1000)
        window.show()
        window.open_paths([path])
        window.browser.wait_for_thumbnails()
        for _ in range(5):
            app.processEvents()
        view, viewport = window.view, window.view.viewport()
        image = view.image
        centre = QPoint(viewport.width() // 2, viewport.height() // 2)

        def lightbox_move(i: int) -> float:
            started = time.perf_counter()
            QTest.mouseMove(viewport, QPoint(centre.x() + i % 40 - 20, centre.y() + i % 30 - 15))
            viewport.repaint()
            return time.perf_counter() - started

        def reference_move(i: int) -> float:
            started = time.perf_counter()
            frame = reference_frame(image, 30000 + 40 * (i % 40), 40000 + 50 * (i % 30))
            view.image_item.setImage(frame, levels=(0, 255), autoLevels=False)
            viewport.repaint()
            return time.perf_counter() - started

        ours, theirs, changed = [], [], 0
        for zoom_label in ("fitted", "100%"):
            if zoom_label == "100%":
                view.zoom_by(1 / view.zoom)
                app.processEvents()
            for i in range(args.moves):
                QTest.mousePress(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
                before = view.voi
                ours.append((zoom_label, lightbox_move(i)))
                changed += view.voi != before
                QTest.mouseRelease(viewport, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
                theirs.append((zoom_label, reference_move(i)))
                view.show_image(image, (0, 1), keep_display=True)  # give the viewer its own pixels back
        window.close()

    print(f"2048 x 2048 16-bit radiograph, {args.moves} moves per zoom, alternating, medians (p95);"
          f" {changed} of {len(ours)} Lightbox moves changed the window")
    for zoom_label in ("fitted", "100%"):
        a = [t * 1000 for z, t in ours if z == zoom_label]
        b = [t * 1000 for z, t in theirs if z == zoom_label]
        print(f"  {zoom_label:>6}: Lightbox {statistics.median(a):6.2f} ms ({np.percentile(a, 95):5.1f})"
              f"  float re-windowing {statistics.median(b):6.2f} ms ({np.percentile(b, 95):5.1f})"
              f"  ratio {statistics.median(a) / statistics.median(b):5.3f}"
              f"  = {1000 / statistics.median(a):4.0f} frames per second")


if __name__ == "__main__":
    main()
