"""Camera-shake motion blur (the deblurring task), seeded like the noise and the rain.

A sample's blur kernel (PSF) is the path of a shaking camera (Boracchi & Foi 2012, the model DeblurGAN
synthesises with): `steps` positions moving `length / (steps - 1)` pixels per step from a random initial
direction, the velocity nudged by a Gaussian shake and pulled back towards the start (both scaled by
`anxiety`), with rare impulsive jerks that turn it back. The shutter sees the first `exposure` fraction of
the path; those positions, centred by their bounding box and rounded to 1/256 pixel, are splatted
bilinearly and normalised to sum 1. Every sample draws its parameters from the (low, high) ranges of a
BlurConfig, deterministically from (seed, sample id), so its kernel is the same in any batch, at any
position, on any rank and device.

    kernels = motion_blur_kernels(ids, 15, seed=7)          # (B, 15, 15) float32, each sums to 1
    blurred = blur(images, kernels)                          # per-sample convolution, mirrored borders
    blurred = add_motion_blur(images, seed=7, blur="heavy")  # both
"""

from __future__ import annotations

from dataclasses import astuple, make_dataclass

import torch

from . import checks, reference
from ._dispatch import use_kernel
from .contract import BLUR_PARAMS
from .noise import default_sample_ids, id_vector


# A BlurConfig's fields: these integers, then one (low, high) range per parameter of ipt/ops/contract.py
# BLUR_PARAMS (which gives each its meaning and allowed bounds).
_SCALARS = (("size", int), ("steps", int))


def _ranges(self) -> tuple[list[float], ...]:
    """The ranges as the op takes them, in contract.BLUR_PARAMS order."""
    return tuple([float(lo), float(hi)] for lo, hi in astuple(self)[len(_SCALARS):])


BlurConfig = make_dataclass(
    "BlurConfig",
    [*_SCALARS, *((name, tuple[float, float]) for name in BLUR_PARAMS)],
    frozen=True,
    namespace={"ranges": _ranges, "__module__": __name__},
)
BlurConfig.__doc__ = (
    "A camera-shake recipe: size, the kernel side in pixels (the path's length must stay below it); steps, "
    "positions per trajectory; and (low, high) ranges each sample's parameters are drawn from: "
    + "; ".join(f"{name}: {meaning}, within [{lo:g}, {hi:g}]" for name, (lo, hi, meaning) in BLUR_PARAMS.items())
)

# Light blur: paths up to 13 px long, whose kernels span 7 px on average (9 px or more for one in ten);
# heavy: paths up to 30 px long that shake more, spanning 12 px on average (17 px or more for one in ten).
# (Measured over 400 samples; a shaking path curls, so it spans less than its length.) The shake ranges
# are SPEC section 7's (centripetal ~ 0.7 U, prob_big_shake ~ 0.2 U, gaussian_shake ~ 10 U, anxiety
# 0.001-0.01); the lengths, exposures and kernel sizes are ours.
_SHAKE = dict(centripetal=(0.0, 0.7), big_shake=(0.0, 0.2), gaussian_shake=(0.0, 10.0), angle=(0.0, 360.0))
LIGHT_BLUR = BlurConfig(size=15, steps=1000, length=(3.0, 13.0), exposure=(0.5, 1.0), anxiety=(0.001, 0.004),
                        **_SHAKE)
HEAVY_BLUR = BlurConfig(size=31, steps=1000, length=(12.0, 30.0), exposure=(0.75, 1.0), anxiety=(0.002, 0.008),
                        **_SHAKE)
BLUR_PRESETS = {"light": LIGHT_BLUR, "heavy": HEAVY_BLUR}


def resolve_blur(blur) -> BlurConfig:
    return checks.resolve_config(blur, BLUR_PRESETS, BlurConfig, checks.check_blur_config, "blur")


def motion_blur_kernels(sample_ids, size: int | None, seed: int, blur="light", *, device=None) -> torch.Tensor:
    """Camera-shake blur kernels (B, size, size), float32, each non-negative and summing to 1.

    sample_ids: (B,) int64 tensor (its device is the output's), or an int B for ids 0 .. B-1 on `device`.
    size: the kernel side (None: the BlurConfig's); the config's longest path must fit it: at most size - 1
    (size - 2 for an even size, whose anchor size // 2 is off-centre).
    blur: "light", "heavy" or a BlurConfig. A sample's kernel depends only on (seed, sample id, size, blur).
    """
    sample_ids = id_vector(sample_ids, device)
    config = resolve_blur(blur)
    size = config.size if size is None else size
    args = (size, seed, config.steps, *config.ranges())
    if isinstance(sample_ids, torch.Tensor) and use_kernel("motion_blur_kernels", sample_ids.device):
        if not checks.fits_int64(size, seed):  # the schema's int64 cannot carry them to the C++ checks
            checks.check_motion_blur_kernels(sample_ids, *args)
        return torch.ops.ipt.motion_blur_kernels(sample_ids, *args)
    return reference.motion_blur_kernels(sample_ids, *args)


def _check_sums(x: torch.Tensor, kernels: torch.Tensor, tolerance: float) -> None:
    checks.check_blur(x, kernels)
    sums = kernels.double().sum(dim=(1, 2))
    bad = ~((sums - 1.0).abs() <= tolerance)  # NaN sums are bad too
    if bool(bad.any()):
        index = int(bad.nonzero()[0, 0])
        checks.fail("kernel_sum", op="blur", index=index, total=float(sums[index]), tolerance=float(tolerance))


def blur(x: torch.Tensor, kernels: torch.Tensor, *, check_sum: bool = False, tolerance: float = 1e-4) -> torch.Tensor:
    """Convolves each image with its own kernel: out[b] = x[b] * kernels[b], per channel, borders mirrored
    with the edge repeated (MATLAB's 'symmetric', scipy.ndimage's 'reflect'); the kernel's anchor is
    (kH // 2, kW // 2), as scipy.ndimage.convolve has it.

    x: (B, C, H, W) uint8 or float, any C; kernels: (B, kH, kW) float, each side at most the image's.
    uint8 gives float32, float keeps its dtype; sums run over the non-zero taps in float32 (float64 for
    float64 images), in the same order on every device, so the CPU and CUDA kernels agree bit for bit.
    check_sum=True first refuses kernels whose sum is not 1 within `tolerance` (one host sync).
    """
    if check_sum:
        _check_sums(x, kernels, tolerance)
    if isinstance(x, torch.Tensor) and use_kernel("blur", x.device):
        return torch.ops.ipt.blur(x, kernels)
    return reference.blur(x, kernels)


_convolve = blur  # add_motion_blur's `blur` argument hides the function's name there


def add_motion_blur(x: torch.Tensor, seed: int, sample_ids=None, blur="light") -> torch.Tensor:
    """Blurs (B, C, H, W) images with each sample's camera-shake kernel (motion_blur_kernels of the
    config's size): float output (float32 for uint8), in [0, 255] for images in [0, 255]. Deterministic
    in (seed, sample id); images must be at least the kernel size on each side."""
    op = "add_motion_blur"
    config = resolve_blur(blur)
    checks.check_image_batch(op, x)
    sample_ids = default_sample_ids(x, sample_ids)
    checks.check_sample_ids(op, sample_ids, x)
    if x.shape[2] < config.size or x.shape[3] < config.size:
        checks.fail("blur_image", op=op, shape=list(x.shape), size=config.size)
    return _convolve(x, motion_blur_kernels(sample_ids, config.size, seed, config))

