"""The device a tool runs on, from what the user typed (--device / device=): checked here, once, so that a
GPU that is not there is one clear line before any model is built, not a CUDA traceback in the middle."""

from __future__ import annotations

import os

import torch

from .errors import ConfigError

SPELLINGS = "cpu, cuda, cuda:N or mps"  # what resolve_device accepts, for its messages


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """The torch.device `spec` names, checked to exist on this machine. None: cuda when torch sees a GPU,
    else cpu. "cuda" stays "cuda" (torch's current device), "cuda:N" must be a GPU that torch sees."""
    if spec is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec.strip().lower() if isinstance(spec, str) else spec)
    except (RuntimeError, TypeError, ValueError):  # torch's "Expected one of cpu, cuda, ... device type"
        hint = " (a GPU is cuda)" if str(spec).strip().lower() == "gpu" else ""
        raise ConfigError(f"--device {spec!r}: not a device{hint}; use {SPELLINGS}") from None
    if device.type == "cuda":
        _check_cuda(device, spec)
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device {spec}: torch {torch.__version__} sees no Apple GPU (mps) on this machine")
    elif device.type not in ("cpu", "mps"):
        raise ConfigError(f"--device {spec}: the toolkit runs on {SPELLINGS}, not {device.type}")
    return device


def _check_cuda(device: torch.device, spec) -> None:
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {spec}: no CUDA GPU is visible to torch {torch.__version__} ({_cuda_build()}"
                          f"{_visible_devices()}); use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        names = "cuda:0" if count == 1 else f"cuda:0 ... cuda:{count - 1}"
        raise ConfigError(f"--device {spec}: this machine has {count} CUDA device{'s' * (count != 1)} ({names}"
                          f"{_visible_devices()})")


def _cuda_build() -> str:
    return f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"


def _visible_devices() -> str:
    """Why fewer GPUs may be seen than the machine has."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "" if visible is None else f"; CUDA_VISIBLE_DEVICES={visible!r}"
