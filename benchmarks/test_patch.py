"""patch_unfold (+ position add) and patch_fold: fused kernels vs the PyTorch reference, and on CUDA vs
a device-to-device copy of the same size (the bandwidth ceiling for pure data movement).

Targets: CPU kernel >= 2x the reference; CUDA kernel >= 80% of copy bandwidth.
"""

import pytest
import torch

import ipt.ops
from ipt.ops import reference

from conftest import DEVICES

# name -> (B, C, H, W, patch)
SHAPES = {
    "ipt-64x64x48x48-p3": (64, 64, 48, 48, 3),
    "vit-64x3x224x224-p16": (64, 3, 224, 224, 16),
}
CPU_SPEEDUP_TARGET = 2.0
CUDA_BANDWIDTH_TARGET = 0.8


def _data(shape, device):
    b, c, h, w, p = shape
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g).to(device)
    pos = torch.randn((h // p) * (w // p), c * p * p, generator=g).to(device)
    return x, p, pos


def _targets(device):
    if device == "cuda":
        return dict(speedup_targets={}, bandwidth_targets={"copy": CUDA_BANDWIDTH_TARGET})
    return dict(speedup_targets={"reference": CPU_SPEEDUP_TARGET}, bandwidth_targets={})


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("impl", ["kernel", "reference", "copy"])
def test_patch_unfold_with_pos(measure, device, shape_name, impl):
    if impl == "copy" and device == "cpu":
        pytest.skip("the copy baseline is a GPU bandwidth ceiling")
    x, p, pos = _data(SHAPES[shape_name], device)
    moved = (2 * x.numel() + pos.numel()) * x.element_size()  # read x and pos, write tokens
    if impl == "copy":
        out = torch.empty_like(x)
        fn, moved = (lambda: out.copy_(x)), 2 * x.numel() * x.element_size()
    elif impl == "kernel":
        fn = lambda: ipt.ops.patch_unfold(x, p, pos)  # noqa: E731
    else:
        fn = lambda: reference.patch_unfold(x, p, pos)  # noqa: E731
    measure(fn, group=f"patch_unfold+pos {shape_name} {device}", role=impl, device=device, bytes_moved=moved,
            items=x.shape[0], **(_targets(device) if impl == "kernel" else {}))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape_name", list(SHAPES))
@pytest.mark.parametrize("impl", ["kernel", "reference", "copy"])
def test_patch_fold(measure, device, shape_name, impl):
    if impl == "copy" and device == "cpu":
        pytest.skip("the copy baseline is a GPU bandwidth ceiling")
    x, p, _ = _data(SHAPES[shape_name], device)
    tokens = ipt.ops.patch_unfold(x, p)
    size = tuple(x.shape[2:])
    moved = 2 * tokens.numel() * tokens.element_size()
    if impl == "copy":
        out = torch.empty_like(tokens)
        fn = lambda: out.copy_(tokens)  # noqa: E731
    elif impl == "kernel":
        fn = lambda: ipt.ops.patch_fold(tokens, p, size)  # noqa: E731
    else:
        fn = lambda: reference.patch_fold(tokens, p, size)  # noqa: E731
    measure(fn, group=f"patch_fold {shape_name} {device}", role=impl, device=device, bytes_moved=moved,
            items=x.shape[0], **(_targets(device) if impl == "kernel" else {}))
