"""Pure-PyTorch reference of every fused op: the executable spec the kernels are tested against, and
the path ipt.ops takes where no compiled kernel exists. Written for clarity, not speed."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_patch_fold, check_patch_unfold


def patch_unfold(x: torch.Tensor, patch: int, pos: torch.Tensor | None = None) -> torch.Tensor:
    check_patch_unfold(x, patch, pos)
    tokens = F.unfold(x, patch, stride=patch).transpose(1, 2)
    return tokens + pos if pos is not None else tokens.contiguous()


def patch_fold(tokens: torch.Tensor, patch: int, size) -> torch.Tensor:
    check_patch_fold(tokens, patch, size)
    return F.fold(tokens.transpose(1, 2), tuple(size), patch, stride=patch)
