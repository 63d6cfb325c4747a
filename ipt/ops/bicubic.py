"""MATLAB-exact bicubic downsampling: how every SR benchmark's low-resolution images were made."""

from __future__ import annotations

import math
import numbers

import torch

from . import checks, reference
from ._dispatch import use_kernel


def resize_plan(height: int, width: int, scale=None, size=None) -> tuple[list[int], list[float]]:
    """Output size and MATLAB's per-axis scale (output/input) of imresize(x, 1/scale) or
    imresize(x, size)."""
    if (scale is None) == (size is None):
        raise ValueError("bicubic_downsample: give exactly one of scale (a factor >= 1) or size=(H, W)")
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale) or scale < 1:
            raise ValueError(f"bicubic_downsample: scale must be a number >= 1, got {scale!r}")
        if float(scale).is_integer():  # exact integer arithmetic: ceil(H / s)
            s = int(scale)
            return [-(-height // s), -(-width // s)], [1.0 / s, 1.0 / s]
        return [math.ceil(height / scale), math.ceil(width / scale)], [1.0 / scale, 1.0 / scale]
    if len(size) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in size):
        raise ValueError(f"bicubic_downsample: size must be two integers >= 1, got {size!r}")
    out_h, out_w = int(size[0]), int(size[1])
    return [out_h, out_w], [out_h / height, out_w / width]


def bicubic_downsample(x: torch.Tensor, scale: float | None = None, *, size: tuple[int, int] | None = None):
    """MATLAB imresize(x, 1/scale, 'bicubic') -- or imresize(x, size) -- of a batch of images.

    x: (B, C, H, W), uint8 or float (float32/float64/bfloat16/float16), any C, any strides.
    scale: factor >= 1; output is ceil(H/scale) x ceil(W/scale) and the kernel uses exactly 1/scale,
    as MATLAB does (even when H is not a multiple of scale).
    size: (H_out, W_out) instead of scale, for any (also non-integer, also enlarging) factor.
    Keys cubic (a = -0.5), antialiased when shrinking (kernel widened to 4*scale), symmetric borders
    that repeat the edge pixel, the axis shrunk more resized first (rows on a tie).
    uint8 in -> uint8 out, rounded and saturated after each pass like MATLAB's uint8 path; float in ->
    same float dtype out, not rounded or clamped. Not differentiable (a data-path op).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"bicubic_downsample: x must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"bicubic_downsample: x must be 4-D (B, C, H, W), got shape {list(x.shape)}")
    out_size, matlab_scale = resize_plan(x.shape[2], x.shape[3], scale, size)
    if use_kernel("bicubic_resize", x.device):
        if not checks.fits_int64(out_size):  # the schema's int64 cannot carry it to the C++ checks
            checks.check_bicubic_resize(x, out_size, matlab_scale)
        return torch.ops.ipt.bicubic_resize(x, out_size, matlab_scale)
    return reference.bicubic_resize(x, out_size, matlab_scale)
