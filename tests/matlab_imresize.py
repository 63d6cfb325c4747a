"""MATLAB imresize(..., 'bicubic') in numpy float64, written independently of ipt for the tests (and used
by the benchmarks as the CPU-loader peer: what numpy-based SR toolkits run in their data loaders).

It follows MATLAB's structure: a contributions() table per dimension (weights and 1-based indices,
zero-weight columns dropped), then a resize along each dimension in the order of the scale factors,
with uint8 results rounded (half away from zero) and saturated after each dimension.
"""

import math

import numpy as np


# MATLAB's .^ rounds the power once; numpy's SIMD power does not always (it misses the correctly
# rounded cube ~5% of the time), which changes outputs that land exactly on x.5. libm's pow does.
_pow = np.frompyfunc(math.pow, 2, 1)


def cubic(x):
    absx = np.abs(x)
    absx2, absx3 = absx * absx, _pow(absx, 3.0).astype(np.float64)
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * (
        (absx > 1) & (absx <= 2)
    )


def contributions(in_length, out_length, scale, kernel_width=4.0, antialiasing=True):
    """MATLAB's contributions(): (out_length, P) weights and 1-based indices; scale = out/in."""
    if scale < 1 and antialiasing:
        h = lambda x: scale * cubic(scale * x)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        h = cubic
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    p = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(p)[None, :]
    weights = h(u[:, None] - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
    indices = aux[np.mod(indices.astype(np.int64) - 1, aux.size)]
    keep = np.any(weights != 0, axis=0)
    return weights[:, keep], indices[:, keep]


def _resize_along(a, dim, weights, indices, is_uint8):
    moved = np.moveaxis(a, dim, 0)  # (in_length, ...)
    out = np.zeros((weights.shape[0],) + moved.shape[1:], dtype=np.float64)
    for k in range(weights.shape[1]):
        out += weights[:, k].reshape((-1,) + (1,) * (moved.ndim - 1)) * moved[indices[:, k] - 1]
    if is_uint8:
        out = np.clip(np.sign(out) * np.floor(np.abs(out) + 0.5), 0, 255)  # MATLAB round, saturate
    return np.moveaxis(out, 0, dim)


def imresize(image, scale=None, output_shape=None):
    """imresize(image, scale) or imresize(image, [rows cols]) of an (H, W[, C]) array, bicubic.

    scale is MATLAB's (0.5 halves the image). uint8 in -> uint8 out; float in -> float64 out.
    """
    is_uint8 = image.dtype == np.uint8
    in_shape = image.shape[:2]
    if output_shape is None:
        scales = (float(scale), float(scale))
        output_shape = tuple(int(math.ceil(s * n)) for s, n in zip(scales, in_shape))
    else:
        scales = tuple(o / n for o, n in zip(output_shape, in_shape))
    order = np.argsort(scales, kind="stable")  # the dimension shrunk most first
    a = image.astype(np.float64)
    for dim in order:
        w, idx = contributions(in_shape[dim], output_shape[dim], scales[dim])
        a = _resize_along(a, int(dim), w, idx, is_uint8)
    return a.astype(np.uint8) if is_uint8 else a
