"""Degradation kernels vs their references and peers, at the shapes training uses.

bicubic_downsample: batch 64 of 192x192 uint8 RGB at x2/x3/x4 -- our kernel, the float64 reference,
F.interpolate(bicubic, antialias=True) (fast but not MATLAB-exact at borders) and a numpy MATLAB-style
imresize applied image by image (what numpy data loaders do). Noise and rain: batch 64 of 48x48 RGB.
blur: batch 16 of 256x256 uint8 RGB with camera-shake kernels of 15x15 (LIGHT_BLUR) and 31x31 (HEAVY_BLUR) --
our kernel, the float64 reference and a grouped F.conv2d (one dense group per image channel, the obvious
peer); motion_blur_kernels: batch 64 of HEAVY_BLUR's 31x31 kernels.

Targets: CPU kernels >= 3x their reference; CUDA bicubic at least as fast as F.interpolate; blur at least as
fast as the grouped conv2d on CPU and CUDA.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ipt.ops
from ipt.ops import HEAVY_BLUR, LIGHT_BLUR, LIGHT_RAIN, reference

from conftest import DEVICES
from matlab_imresize import imresize

BATCH = 64
CPU_SPEEDUP_TARGET = 3.0


def _photos(size, device, batch=BATCH):
    from images import photo_batch  # tests/images.py: the scikit-image photographs

    crops = [photo_batch(name, crop=(size, size)) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    return torch.cat(crops).repeat(batch // 4, 1, 1, 1).to(device)


def _numpy_loader_style(x, scale):
    images = [np.moveaxis(img, 0, -1) for img in x.cpu().numpy()]
    return [imresize(img, scale=1.0 / scale) for img in images]


# The numpy peer runs on the CPU only.
BICUBIC_CASES = [pytest.param(impl, device.values[0], marks=device.marks, id=f"{impl}-{device.values[0]}")
                 for device in DEVICES for impl in ("kernel", "reference", "torch_antialias", "numpy_matlab")
                 if not (impl == "numpy_matlab" and device.values[0] == "cuda")]


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("impl, device", BICUBIC_CASES)
def test_bicubic_downsample(measure, device, scale, impl):
    x = _photos(192, device)
    out_size = (-(-192 // scale),) * 2
    fns = {
        "kernel": lambda: ipt.ops.bicubic_downsample(x, scale),
        "reference": lambda: reference.bicubic_resize(x, list(out_size), [1 / scale] * 2),
        "torch_antialias": lambda: F.interpolate(x, size=out_size, mode="bicubic", antialias=True),
        "numpy_matlab": lambda: _numpy_loader_style(x, scale),
    }
    if impl == "kernel":
        targets = ({"torch_antialias": 1.0} if device == "cuda" else {"reference": CPU_SPEEDUP_TARGET})
    else:
        targets = {}
    measure(fns[impl], group=f"bicubic x{scale} 64x3x192x192 uint8 {device}", role=impl, device=device,
            items=BATCH, speedup_targets=targets)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_add_gaussian_noise(measure, device, impl):
    x = _photos(48, device)
    fn = ipt.ops.add_gaussian_noise if impl == "kernel" else reference.add_gaussian_noise
    ids = torch.arange(BATCH, device=device)
    measure(lambda: fn(x, 30.0, 7, ids), group=f"add_gaussian_noise 64x3x48x48 uint8 {device}", role=impl,
            device=device, items=BATCH, speedup_targets={"reference": CPU_SPEEDUP_TARGET} if impl == "kernel" else {})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_add_rain(measure, device, impl):
    x = _photos(48, device)
    ids = torch.arange(BATCH, device=device)
    if impl == "kernel":
        fn = lambda: ipt.ops.add_rain(x, 7, ids, LIGHT_RAIN)  # noqa: E731
    else:
        fn = lambda: reference.add_rain(x, ids, 7, *LIGHT_RAIN.ranges())  # noqa: E731
    measure(fn, group=f"add_rain light 64x3x48x48 uint8 {device}", role=impl, device=device, items=BATCH,
            speedup_targets={"reference": CPU_SPEEDUP_TARGET} if impl == "kernel" else {})


# The reference takes seconds per call at this batch (1-3 s at 15x15, 3-5 s at 31x31 on two cores), so it is
# timed over 3 rounds, and all roles of a group blur the same images with the same kernels.
BLUR_BATCH = 16


def _grouped_conv2d(x, kernels):
    """Per-sample blur as a grouped F.conv2d: one group per (sample, channel), the sample's kernel repeated over
    its channels and flipped (conv2d correlates), every tap dense. Its border replicates the edge pixel where
    ours mirrors it (F.pad has no 'symmetric' mode): the peer does the same work, not the same borders."""
    batch, channels, height, width = x.shape
    kh, kw = kernels.shape[1:]
    weight = kernels.flip(1, 2).repeat_interleave(channels, dim=0)[:, None]
    # output (y, x) sums kernels[i, j] * x[y + kh // 2 - i, x + kw // 2 - j], as blur anchors its kernels
    padded = F.pad(x.float().reshape(1, batch * channels, height, width),
                   (kw - 1 - kw // 2, kw // 2, kh - 1 - kh // 2, kh // 2), mode="replicate")
    return F.conv2d(padded, weight, groups=batch * channels).reshape(batch, channels, height, width)


# The reference copies its inputs to the host and computes there whatever their device: the CPU group times it.
BLUR_CASES = [pytest.param(impl, device.values[0], marks=device.marks, id=f"{impl}-{device.values[0]}")
              for device in DEVICES for impl in ("kernel", "reference", "conv2d")
              if not (impl == "reference" and device.values[0] == "cuda")]


@pytest.mark.parametrize("config", [LIGHT_BLUR, HEAVY_BLUR], ids=["light15", "heavy31"])
@pytest.mark.parametrize("impl, device", BLUR_CASES)
def test_blur(measure, device, config, impl):
    x = _photos(256, device, BLUR_BATCH)
    kernels = ipt.ops.motion_blur_kernels(BLUR_BATCH, None, 7, config, device=device)
    fns = {
        "kernel": lambda: ipt.ops.blur(x, kernels),
        "reference": lambda: reference.blur(x, kernels),
        "conv2d": lambda: _grouped_conv2d(x, kernels),
    }
    if impl == "kernel":
        targets = {"conv2d": 1.0} if device == "cuda" else {"reference": CPU_SPEEDUP_TARGET, "conv2d": 1.0}
    else:
        targets = {}
    size = config.size
    measure(fns[impl], group=f"blur {size}x{size} {BLUR_BATCH}x3x256x256 uint8 {device}", role=impl, device=device,
            items=BLUR_BATCH, speedup_targets=targets, rounds=3 if impl == "reference" else None)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("impl", ["kernel", "reference"])
def test_motion_blur_kernels(measure, device, impl):
    ids = torch.arange(BATCH, device=device)
    if impl == "kernel":
        fn = lambda: ipt.ops.motion_blur_kernels(ids, None, 7, HEAVY_BLUR)  # noqa: E731
    else:
        args = (HEAVY_BLUR.size, 7, HEAVY_BLUR.steps, *HEAVY_BLUR.ranges())
        fn = lambda: reference.motion_blur_kernels(ids, *args)  # noqa: E731
    measure(fn, group=f"motion_blur_kernels heavy {BATCH}x31x31 {device}", role=impl, device=device, items=BATCH,
            speedup_targets={"reference": CPU_SPEEDUP_TARGET} if impl == "kernel" else {})
