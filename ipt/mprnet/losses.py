"""MPRNet's training loss (SPEC section 6): a Charbonnier loss, plus an edge loss (Charbonnier of Laplacians)
for deblurring and deraining, summed over the three stage outputs, each compared with the clean target.

Unlike the official code, nothing is built at import or tied to a device: the Gaussian kernel is made for
the input's channel count, device and dtype on every call (25 numbers).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

GAUSSIAN_TAPS = (0.05, 0.25, 0.4, 0.25, 0.05)  # the official 1-D kernel; the 2-D one is its outer product


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean(sqrt((x - y)^2 + eps^2)): a differentiable L1 (eps keeps the gradient finite where x == y)."""
    difference = x - y
    return torch.sqrt(difference * difference + eps * eps).mean()


def _gaussian_blur(images: torch.Tensor) -> torch.Tensor:
    """Each channel filtered by the 5x5 Gaussian, the border replicated so that the size is kept."""
    channels = images.shape[1]
    taps = torch.tensor(GAUSSIAN_TAPS, device=images.device, dtype=images.dtype)
    kernel = torch.outer(taps, taps).expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="replicate"), kernel, groups=channels)


def laplacian(images: torch.Tensor) -> torch.Tensor:
    """One level of a Laplacian pyramid: the image minus its blurred, subsampled (every second pixel) and
    re-expanded version (zeros between the kept pixels, times 4 for the lost ones, blurred again). What
    is left is the detail at the finest scale: edges."""
    blurred = _gaussian_blur(images)
    kept = torch.zeros(images.shape[-2:], device=images.device, dtype=images.dtype)
    kept[::2, ::2] = 4.0
    return images - _gaussian_blur(blurred * kept)


def edge_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """The Charbonnier loss of the Laplacians of x and y (B, C, H, W), any channel count."""
    return charbonnier_loss(laplacian(x), laplacian(y), eps)


def mprnet_loss(outputs: Sequence[torch.Tensor], target: torch.Tensor, edge_weight: float, eps: float = 1e-3,
                clamp: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, Charbonnier sum, edge sum) over the stage outputs (MPRNet's [restored, stage 2, stage 1]):
    total = sum of Charbonnier + edge_weight * sum of edge losses. clamp: outputs clamped to [0, 1] first,
    as the official denoising recipe does. With edge_weight 0 the edge loss is still computed, for the
    log, but outside autograd (it is no part of the total)."""
    if clamp:
        outputs = [output.clamp(0, 1) for output in outputs]
    charbonnier = torch.stack([charbonnier_loss(output, target, eps) for output in outputs]).sum()
    with torch.set_grad_enabled(torch.is_grad_enabled() and edge_weight != 0):
        edge = torch.stack([edge_loss(output, target, eps) for output in outputs]).sum()
    total = charbonnier + edge_weight * edge if edge_weight != 0 else charbonnier
    return total, charbonnier, edge
