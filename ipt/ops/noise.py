"""Seeded additive Gaussian noise (the denoising tasks)."""

from __future__ import annotations

import torch

from . import checks, reference
from ._dispatch import use_kernel


def id_vector(sample_ids, device=None):
    """The sample ids of an op that makes one output per id: an int B means ids 0 .. B-1 on `device`;
    anything else is passed on as it is (the op checks it)."""
    if isinstance(sample_ids, int) and not isinstance(sample_ids, bool):
        return torch.arange(sample_ids, device=device)
    return sample_ids


def default_sample_ids(x: torch.Tensor, sample_ids) -> torch.Tensor:
    if sample_ids is None:
        return torch.arange(x.shape[0], device=x.device)
    if not isinstance(sample_ids, torch.Tensor):
        return torch.as_tensor(sample_ids, dtype=torch.int64, device=x.device)
    return sample_ids


def add_gaussian_noise(x: torch.Tensor, sigma: float, seed: int, sample_ids: torch.Tensor | None = None):
    """clip(x + sigma * N(0, 1), 0, 255) on the 0-255 scale; float output, not rounded.

    x: (B, C, H, W) uint8 or float; uint8 gives float32, float keeps its dtype.
    The noise of a sample depends only on (seed, its sample id, element position): it is the same
    whatever batch the sample is in, in any order, on CPU and CUDA (Philox4x32-10, counter-based).
    sample_ids: (B,) int64 on x's device; defaults to 0 .. B-1. seed: integer in [0, 2**63).
    """
    if isinstance(x, torch.Tensor):
        sample_ids = default_sample_ids(x, sample_ids)
        if use_kernel("add_gaussian_noise", x.device):
            checks.check_seed("add_gaussian_noise", seed)  # the schema's int64 cannot carry seeds >= 2**63
            return torch.ops.ipt.add_gaussian_noise(x, float(sigma), seed, sample_ids)
    return reference.add_gaussian_noise(x, sigma, seed, sample_ids)
