"""The device a tool runs on, from what the user typed (--device / device=): checked here, once, so that a
GPU that is not there is one clear line before any model is built, not a CUDA traceback in the middle."""

from __future__ import annotations

import os

import torch

from .cuda_support import sm
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


# CUDA GPUs compute in bfloat16 from compute capability 8.0 (Ampere: A100, RTX 30xx) on. Older ones (V100 sm_70,
# T4 sm_75) have no bfloat16 units: torch emulates it there, slowly and not for every op, so
# torch.cuda.is_bf16_supported() -- which counts emulation by default -- says True on a V100 and cannot decide.
NATIVE_BF16_CAPABILITY = (8, 0)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bfloat16 natively: every CPU and Apple GPU (as the toolkit has always
    assumed), a CUDA GPU of compute capability 8.0 or more. Training (ipt.train.precision) and inference
    (ipt.inference) ask here; tests replace it to stand in for an older GPU."""
    if device.type != "cuda":
        return True
    return tuple(torch.cuda.get_device_capability(device)) >= NATIVE_BF16_CAPABILITY


def describe_gpu(device: torch.device) -> str:
    """A CUDA device as messages name it: 'Tesla V100-SXM2-32GB (sm_70)'; another device by its name ('cpu')."""
    if device.type != "cuda":
        return str(device)
    return f"{torch.cuda.get_device_name(device)} ({sm(torch.cuda.get_device_capability(device))})"
