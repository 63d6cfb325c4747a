"""Fused data-path ops of the IPT toolkit.

Each op here is one function whose docstring is its contract. Calls go to the compiled kernels
(torch.ops.ipt.*, from ipt._C) for every device that has one, and to the pure-PyTorch reference
(ipt.ops.reference) otherwise, with one warning per device. All ops are differentiable and work under
torch.compile and torch.export.
"""

from __future__ import annotations

import warnings

import torch

from . import reference
from ._extension import ExtensionMismatchError, ExtensionStatus, load as _load_extension

__all__ = ["patch_unfold", "patch_fold", "EXTENSION", "ExtensionMismatchError", "kernel_devices", "op_names"]

EXTENSION: ExtensionStatus = _load_extension()

if EXTENSION.module is not None:
    from ._registrations import register as _register

    _register()


def op_names() -> list[str]:
    """Names of the ops the library defines (from the compiled schemas when the extension is loaded)."""
    if EXTENSION.module is None:
        return [name for name in __all__ if callable(getattr(reference, name, None))]
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("ipt::"))


def kernel_devices(op: str) -> dict[str, bool]:
    """Which devices have a compiled kernel for `op` (e.g. {'cpu': True, 'cuda': False})."""
    if EXTENSION.module is None:
        return {"cpu": False, "cuda": False}
    return {
        device: torch._C._dispatch_has_kernel_for_dispatch_key(f"ipt::{op}", key)
        for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
    }


_warned_devices: set[str] = set()
_has_kernel_cache: dict[tuple[str, str], bool] = {}


def _use_kernel(op: str, device: torch.device) -> bool:
    """True when a compiled kernel of `op` serves `device`; otherwise warn once and use the reference."""
    if EXTENSION.module is None:
        return False
    key = (op, device.type)
    if key not in _has_kernel_cache:
        _has_kernel_cache[key] = kernel_devices(op).get(device.type, False)
    if not _has_kernel_cache[key] and device.type not in _warned_devices and device.type != "meta":
        _warned_devices.add(device.type)
        warnings.warn(
            f"ipt._C has no {device.type} kernels (built with CUDA: {EXTENSION.with_cuda}); ipt.ops runs the "
            f"pure-PyTorch reference on {device.type}. Rebuild with a CUDA torch and toolkit to get them.",
            RuntimeWarning,
            stacklevel=3,
        )
    return _has_kernel_cache[key] or device.type == "meta"


def patch_unfold(x: torch.Tensor, patch: int, pos: torch.Tensor | None = None) -> torch.Tensor:
    """Cut images into non-overlapping patch x patch tokens, optionally adding a position embedding.

    x: (B, C, H, W) float32/float64/bfloat16/float16, H and W multiples of `patch`, any strides.
    pos: optional (N, C*patch*patch), same dtype and device as x; added to every image's tokens.
    Returns contiguous (B, N, C*patch*patch) with N = (H/patch) * (W/patch): tokens in raster order
    over the patch grid, features ordered c*patch^2 + kh*patch + kw, i.e. exactly
    F.unfold(x, patch, stride=patch).transpose(1, 2) (+ pos), computed in one pass over memory.
    Differentiable in x and pos (the gradient of pos is the batch sum).
    """
    if isinstance(x, torch.Tensor) and _use_kernel("patch_unfold", x.device):
        return torch.ops.ipt.patch_unfold(x, patch, pos)
    return reference.patch_unfold(x, patch, pos)


def patch_fold(tokens: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Put tokens back into images: the exact inverse of patch_unfold (without pos).

    tokens: (B, N, C*patch*patch) float32/float64/bfloat16/float16, any strides.
    size: (H, W), multiples of `patch` with (H/patch) * (W/patch) == N.
    Returns contiguous (B, C, H, W). Differentiable (its gradient is patch_unfold of the gradient).
    """
    if isinstance(tokens, torch.Tensor) and _use_kernel("patch_fold", tokens.device):
        return torch.ops.ipt.patch_fold(tokens, patch, list(size))
    return reference.patch_fold(tokens, patch, size)
