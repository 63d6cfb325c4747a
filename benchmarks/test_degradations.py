"""Degradation kernels vs their references and peers, at the shapes training uses.

bicubic_downsample: batch 64 of 192x192 uint8 RGB at x2/x3/x4 -- our kernel, the float64 reference,
F.interpolate(bicubic, antialias=True) (fast but not MATLAB-exact at borders) and a numpy MATLAB-style
imresize applied image by image (what numpy data loaders do). Noise and rain: batch 64 of 48x48 RGB.

Targets: CPU kernels >= 3x their reference; CUDA bicubic at least as fast as F.interpolate.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import ipt.ops
from ipt.ops import LIGHT_RAIN, reference

from conftest import DEVICES
from matlab_imresize import imresize

BATCH = 64
CPU_SPEEDUP_TARGET = 3.0


def _photos(size, device):
    from images import photo_batch  # tests/images.py: the scikit-image photographs

    crops = [photo_batch(name, crop=(size, size)) for name in ("astronaut", "chelsea", "coffee", "rocket")]
    return torch.cat(crops).repeat(BATCH // 4, 1, 1, 1).to(device)


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
