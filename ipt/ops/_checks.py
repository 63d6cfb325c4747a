"""Argument validation for the reference ops and the fake (meta) kernels.

csrc/checks.h is the C++ twin used by the compiled kernels; the messages match so that every path
rejects bad input the same way.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


class PatchGeometry(NamedTuple):
    channels: int
    height: int
    width: int
    patch: int

    @property
    def num_tokens(self) -> int:
        return (self.height // self.patch) * (self.width // self.patch)

    @property
    def token_dim(self) -> int:
        return self.channels * self.patch * self.patch


def check_float_dtype(op: str, name: str, t: torch.Tensor) -> None:
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} has dtype {t.dtype}; supported dtypes are float32, float64, bfloat16 and float16"
        )


def check_tensor(op: str, name: str, t) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")


def check_patch_size(op: str, patch) -> None:
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ValueError(f"{op}: patch must be an integer >= 1, got {patch!r}")


def check_patch_unfold(x: torch.Tensor, patch: int, pos: torch.Tensor | None) -> PatchGeometry:
    op = "patch_unfold"
    check_tensor(op, "x", x)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D (B, C, H, W), got shape {list(x.shape)}")
    check_float_dtype(op, "x", x)
    check_patch_size(op, patch)
    g = PatchGeometry(x.shape[1], x.shape[2], x.shape[3], patch)
    if g.height % patch != 0 or g.width % patch != 0:
        raise ValueError(f"{op}: H={g.height} and W={g.width} must be multiples of patch={patch}")
    if pos is not None:
        check_tensor(op, "pos", pos)
        if pos.dim() != 2 or pos.shape[0] != g.num_tokens or pos.shape[1] != g.token_dim:
            raise ValueError(
                f"{op}: pos must have shape (N, C*patch^2) = ({g.num_tokens}, {g.token_dim}), got {list(pos.shape)}"
            )
        if pos.dtype != x.dtype:
            raise TypeError(f"{op}: pos has dtype {pos.dtype} but x has dtype {x.dtype}; they must match")
        if pos.device != x.device:
            raise ValueError(f"{op}: pos is on {pos.device} but x is on {x.device}; they must be on the same device")
    return g


def check_patch_fold(tokens: torch.Tensor, patch: int, size) -> PatchGeometry:
    op = "patch_fold"
    check_tensor(op, "tokens", tokens)
    if tokens.dim() != 3:
        raise ValueError(f"{op}: tokens must be 3-D (B, N, C*patch^2), got shape {list(tokens.shape)}")
    check_float_dtype(op, "tokens", tokens)
    check_patch_size(op, patch)
    if len(size) != 2:
        raise ValueError(f"{op}: size must be (H, W), got {tuple(size)}")
    height, width = size
    if height < 1 or width < 1 or height % patch != 0 or width % patch != 0:
        raise ValueError(f"{op}: size (H={height}, W={width}) must be positive multiples of patch={patch}")
    patch_area = patch * patch
    if tokens.shape[2] % patch_area != 0:
        raise ValueError(f"{op}: token length {tokens.shape[2]} is not a multiple of patch^2={patch_area}")
    g = PatchGeometry(tokens.shape[2] // patch_area, height, width, patch)
    if tokens.shape[1] != g.num_tokens:
        raise ValueError(
            f"{op}: got {tokens.shape[1]} tokens but size ({height}, {width}) with patch {patch} needs {g.num_tokens}"
        )
    return g


# --- degradations ----------------------------------------------------------------------------------

IMAGE_DTYPES = (torch.uint8, *FLOAT_DTYPES)


def degraded_dtype(x: torch.Tensor) -> torch.dtype:
    """Degraded images are float: uint8 gives float32, float keeps its dtype."""
    return torch.float32 if x.dtype == torch.uint8 else x.dtype


def check_image_batch(op: str, x) -> None:
    check_tensor(op, "x", x)
    if x.dim() != 4:
        raise ValueError(f"{op}: x must be 4-D (B, C, H, W), got shape {list(x.shape)}")
    if x.dtype not in IMAGE_DTYPES:
        raise TypeError(
            f"{op}: x has dtype {x.dtype}; supported dtypes are uint8, float32, float64, bfloat16 and float16"
        )


def check_sample_ids(op: str, ids, batch: int, device: torch.device) -> None:
    check_tensor(op, "sample_ids", ids)
    if ids.dim() != 1 or ids.shape[0] != batch:
        raise ValueError(f"{op}: sample_ids must have shape (B,) = ({batch},), got {list(ids.shape)}")
    if ids.dtype != torch.int64:
        raise TypeError(f"{op}: sample_ids must be int64, got {ids.dtype}")
    if ids.device != device:
        raise ValueError(f"{op}: sample_ids is on {ids.device} but the images are on {device}; they must be on the same device")


def check_seed(op: str, seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"{op}: seed must be an integer in [0, 2**63), got {seed!r}")


# Allowed parameter ranges of the rain recipe (csrc/checks.h check_rain_ranges has the same bounds).
RAIN_BOUNDS = {"amount": (0.0, 1.0), "thickness": (0.05, 64.0), "length": (0.0, 512.0), "angle": (-360.0, 360.0),
               "alpha": (0.0, 4.0)}


def check_range(op: str, name: str, value) -> None:
    lo_bound, hi_bound = RAIN_BOUNDS[name]
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{op}: {name} must be a (low, high) pair, got {value!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo_bound <= lo <= hi <= hi_bound):
        raise ValueError(f"{op}: {name} range ({lo}, {hi}) must satisfy {lo_bound} <= low <= high <= {hi_bound}")


def check_rain_config(config) -> None:
    for name in RAIN_BOUNDS:
        check_range("RainConfig", name, getattr(config, name))


def check_resize_args(x, size, scale) -> None:
    op = "bicubic_resize"
    check_image_batch(op, x)
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError(f"{op}: H and W must be >= 1, got {list(x.shape)}")
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"{op}: size must be two output lengths >= 1, got {list(size)}")
    if len(scale) != 2 or not all(math.isfinite(s) and 1 / 1024 <= s <= 1024 for s in scale):
        raise ValueError(f"{op}: scale must be two output/input length ratios in [1/1024, 1024], got {list(scale)}")
