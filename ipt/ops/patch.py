"""Patch unfold (+ position add) and fold: the token layout of IPT's transformer body."""

from __future__ import annotations

import torch

from . import reference
from ._dispatch import use_kernel


def patch_unfold(x: torch.Tensor, patch: int, pos: torch.Tensor | None = None) -> torch.Tensor:
    """Cut images into non-overlapping patch x patch tokens, optionally adding a position embedding.

    x: (B, C, H, W) float32/float64/bfloat16/float16, H and W multiples of `patch`, any strides.
    pos: optional (N, C*patch*patch), same dtype and device as x; added to every image's tokens.
    Returns contiguous (B, N, C*patch*patch) with N = (H/patch) * (W/patch): tokens in raster order
    over the patch grid, features ordered c*patch^2 + kh*patch + kw, i.e. exactly
    F.unfold(x, patch, stride=patch).transpose(1, 2) (+ pos), computed in one pass over memory.
    Differentiable in x and pos (the gradient of pos is the batch sum).
    """
    if isinstance(x, torch.Tensor) and use_kernel("patch_unfold", x.device):
        return torch.ops.ipt.patch_unfold(x, patch, pos)
    return reference.patch_unfold(x, patch, pos)


def patch_fold(tokens: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """Put tokens back into images: the exact inverse of patch_unfold (without pos).

    tokens: (B, N, C*patch*patch) float32/float64/bfloat16/float16, any strides.
    size: (H, W), multiples of `patch` with (H/patch) * (W/patch) == N.
    Returns contiguous (B, C, H, W). Differentiable (its gradient is patch_unfold of the gradient).
    """
    if isinstance(tokens, torch.Tensor) and use_kernel("patch_fold", tokens.device):
        return torch.ops.ipt.patch_fold(tokens, patch, list(size))
    return reference.patch_fold(tokens, patch, size)
