"""Choosing where the model runs: the local GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


class DeviceError(Exception):
    """The requested device is not available here; one line for the user."""


def mps_available() -> bool:
    """Apple's Metal backend, present only in macOS builds of torch."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` takes CUDA, then Apple MPS, then the CPU; a named device must exist."""
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"unknown device {name!r}; choose one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was asked for, but this machine has no usable CUDA GPU; use --device cpu")
    if name == "mps" and not mps_available():
        raise DeviceError("Apple MPS was asked for, but it is not available here; use --device cpu")
    return torch.device(name)


def describe(device: torch.device) -> str:
    """A short name for the status line: the GPU's model where there is one."""
    if device.type == "cuda":
        return f"CUDA ({torch.cuda.get_device_name(device)})"
    return {"mps": "Apple GPU (MPS)", "cpu": "CPU"}.get(device.type, str(device))
