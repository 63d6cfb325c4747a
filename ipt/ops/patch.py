"""Patch unfold (+ position add) and fold: the token layout of IPT's transformer body.

patch_dim is the side of a token's patch (3 in IPT), not the side of the model's input (patch_size, 48).
"""

from __future__ import annotations

import torch

from ..deprecation import renamed_keyword
from . import checks, reference
from ._dispatch import use_kernel

@renamed_keyword("patch", "patch_dim")
def patch_unfold(x: torch.Tensor, patch_dim: int, pos: torch.Tensor | None = None):
    """Cut images into non-overlapping patch_dim x patch_dim tokens, optionally adding a position embedding.

    x: (B, C, H, W) float32/float64/bfloat16/float16, H and W multiples of `patch_dim`, any strides.
    pos: optional (N, C*patch_dim^2), same dtype and device as x; added to every image's tokens.
    Returns contiguous (B, N, C*patch_dim^2) with N = (H/patch_dim) * (W/patch_dim): tokens in raster
    order over the patch grid, features ordered c*patch_dim^2 + kh*patch_dim + kw, i.e. exactly
    F.unfold(x, patch_dim, stride=patch_dim).transpose(1, 2) (+ pos), computed in one pass over memory.
    Differentiable in x and pos (the gradient of pos is the batch sum).
    """
    if isinstance(x, torch.Tensor) and use_kernel("patch_unfold", x.device):
        if not checks.fits_int64(patch_dim):  # the schema's int64 cannot carry it to the C++ checks
            checks.check_patch_unfold(x, patch_dim, pos)
        return torch.ops.ipt.patch_unfold(x, patch_dim, pos)
    return reference.patch_unfold(x, patch_dim, pos)


@renamed_keyword("patch", "patch_dim")
def patch_fold(tokens: torch.Tensor, patch_dim: int, size: tuple[int, int]):
    """Put tokens back into images: the exact inverse of patch_unfold (without pos).

    tokens: (B, N, C*patch_dim^2) float32/float64/bfloat16/float16, any strides.
    size: (H, W), multiples of `patch_dim` with (H/patch_dim) * (W/patch_dim) == N.
    Returns contiguous (B, C, H, W). Differentiable (its gradient is patch_unfold of the gradient).
    """
    if isinstance(tokens, torch.Tensor) and use_kernel("patch_fold", tokens.device):
        if not checks.fits_int64(patch_dim, list(size)):  # the schema's int64 cannot carry them to the C++ checks
            checks.check_patch_fold(tokens, patch_dim, size)
        return torch.ops.ipt.patch_fold(tokens, patch_dim, list(size))
    return reference.patch_fold(tokens, patch_dim, size)
