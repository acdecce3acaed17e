"""Time to the first image: of a 300-slice CT folder against reading it whole, and of the app as a process.

Lightbox reads every header without pixel data, sorts the slices and decodes only the slice it
shows. The reference is the plain pydicom approach of a script or a simple viewer: read every
file with its pixels, then sort. Both run alternately on the same folder (written once with
the test factory, 512 x 512 slices), and the peak Python memory of each is reported too.

The whole process: ``main.py PATH --screenshot OUT.png`` starts Python, paints the window with
the image (offscreen) and saves it, without torch, against a bare ``python -c "import torch"``
in the same environment, alternated, on the demo, the CT folder and a large radiograph.

    .venv/bin/python benchmarks/first_image.py [--slices 300] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pydicom  # noqa: E402

from dicom.image import FrameCache  # noqa: E402
from dicom.series import open_paths  # noqa: E402
from tests.dicom_factory import write_ct_series, write_radiograph  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
#: A large radiograph: a 43 x 35 cm detector at 0.14 mm.
LARGE_RADIOGRAPH = (3072, 2500)


def lightbox_first_image(folder: Path) -> None:
    """Headers, grouping and sorting, then the first slice decoded and rendered."""
    (series,) = open_paths([folder]).all_series()
    image = FrameCache().get(series.frames[0])
    image.render(image.default_voi(), image.inverted_by_default)


def read_everything(folder: Path) -> None:
    """The reference: every file read with its pixels, then sorted by position."""
    datasets = [pydicom.dcmread(path) for path in sorted(folder.iterdir())]
    for dataset in datasets:
        dataset.pixel_array  # noqa: B018 - decoding is the point
    datasets.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))


def seconds(function, folder: Path) -> float:
    """Wall time of one call."""
    started = time.perf_counter()
    function(folder)
    return time.perf_counter() - started


def peak_mib(function, folder: Path) -> float:
    """Peak memory Python allocated during one call; traced apart, as tracing slows it."""
    tracemalloc.start()
    function(folder)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return peak


def process_seconds(command: list[str]) -> float:
    """Wall time of a whole process, from its start to its exit."""
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def whole_process(cases: dict[str, list[str]], repeats: int, scratch: Path) -> None:
    """Print each case's first image, as a process, beside ``import torch``, alternated, medians."""
    torch_import = [sys.executable, "-c", "import torch"]
    print(f"First image painted as a whole process (main.py PATH --screenshot), median of {repeats} alternating runs")
    for name, paths in cases.items():
        shot = [sys.executable, "main.py", *paths, "--screenshot", str(scratch / "shot.png")]
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(process_seconds(shot))
            theirs.append(process_seconds(torch_import))
        ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
        print(f"  {name:28s} {ours_s:6.2f} s   import torch {theirs_s:6.2f} s   ratio {ours_s / theirs_s:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_ct_series(folder, args.slices, rows=512, cols=512)
        ours, theirs = [], []
        for _ in range(args.repeats):
            ours.append(seconds(lightbox_first_image, folder))
            theirs.append(seconds(read_everything, folder))
        ours_mib, theirs_mib = peak_mib(lightbox_first_image, folder), peak_mib(read_everything, folder)
        with tempfile.TemporaryDirectory() as elsewhere:  # not in the CT folder
            radiograph = write_radiograph(Path(elsewhere) / "large.dcm", rows=LARGE_RADIOGRAPH[0],
                                          cols=LARGE_RADIOGRAPH[1])
            whole_process({"demo": [], f"CT folder ({args.slices} slices)": [str(folder)],
                           "radiograph {} x {}".format(*LARGE_RADIOGRAPH): [str(radiograph)]},
                          args.repeats, Path(elsewhere))
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    print(f"{args.slices} CT slices of 512 x 512, median of {args.repeats} alternating runs")
    print(f"  Lightbox, first image shown:  {ours_s:6.3f} s, peak {ours_mib:7.1f} MiB")
    print(f"  pydicom, read all then sort:  {theirs_s:6.3f} s, peak {theirs_mib:7.1f} MiB")
    print(f"  ratio Lightbox / read-all:    {ours_s / theirs_s:6.3f} in time, {ours_mib / theirs_mib:6.3f} in memory")


if __name__ == "__main__":
    main()
