"""Freed activations are reused instead of faulted in again, in the main thread and others."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Runs a small convolutional network, whose activations (64 MiB each) are over glibc's largest
#: mmap threshold, four times in a worker thread, as the GUI's explanation thread does, and
#: counts the page faults of each round.
PROBE = """
import json, resource, sys, threading
import torch
from explain.heap import give_back_freed_memory, keep_freed_memory

kept = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(32, 32, 3, padding=1), torch.nn.ReLU()).eval()
image = torch.rand(8, 1, 256, 256)
faults = []

def rounds():
    for _ in range(4):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        with torch.inference_mode():
            model(image)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)

thread = threading.Thread(target=rounds)
thread.start()
thread.join()
give_back_freed_memory()
print(json.dumps({"kept": kept, "faults": faults}))
"""

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings apply to glibc only")


def probe(mode: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@glibc_only
def test_without_the_settings_every_round_faults_its_activations_in_again():
    result = probe("default")
    assert not result["kept"]
    first, *later = result["faults"]
    assert min(later) > 0.5 * first


@glibc_only
def test_with_them_later_rounds_reuse_the_freed_pages():
    result = probe("keep")
    assert result["kept"]
    first, _, *later = result["faults"]  # the second round may still be settling
    assert first > 64 * 2**20 // 4096  # at least one activation's pages were new
    assert sum(later) < 0.05 * first


@glibc_only
def test_giving_memory_back_returns_the_peak_to_the_system():
    code = """
import torch
from explain.heap import give_back_freed_memory, keep_freed_memory

def resident() -> int:
    return int(open("/proc/self/statm").read().split()[1])

keep_freed_memory()
buffer = torch.ones(256 * 2**20, dtype=torch.uint8)
peak = resident()
del buffer
kept = resident()
give_back_freed_memory()
print(peak, kept, resident())
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    peak, kept, after = (int(value) for value in done.stdout.split())
    buffer_pages = 256 * 2**20 // 4096
    assert kept > peak - 0.1 * buffer_pages  # held while an explanation may still need it
    assert after < peak - 0.9 * buffer_pages  # and handed back once it is over
