"""PSNR and SSIM as the super-resolution and restoration literature computes them (SPEC section 4).

Outputs are quantised first (round(clamp(x, 0, 255))), then compared on the Y channel of BT.601
(Y = (65.481 R + 128.553 G + 24.966 B) / 255 + 16, not rounded) or on RGB, after shaving `shave`
pixels off every border (the SR scale for SR, 0 otherwise), with data range 255. SSIM uses an 11x11
Gaussian window (sigma 1.5), c1 = (0.01*255)^2, c2 = (0.03*255)^2 and population covariances, averaged
over the positions where the window fits -- scikit-image's structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=255); RGB SSIM is the mean over channels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ConfigError

Y_WEIGHTS = (65.481, 128.553, 24.966)
DATA_RANGE = 255.0


def _as_bchw64(image) -> torch.Tensor:
    """(H, W, 3) array or (3, H, W) / (B, 3, H, W) tensor -> float64 (B, 3, H, W)."""
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
        if t.dim() == 3 and t.shape[-1] == 3:
            t = t.permute(2, 0, 1)
    else:
        t = image.detach().cpu()
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[1] != 3:
        raise ValueError(f"expected RGB images (H, W, 3), (3, H, W) or (B, 3, H, W), got shape {list(t.shape)}")
    return t.to(torch.float64)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """The official output quantisation: round(clamp(x, 0, 255))."""
    return x.clamp(0, 255).round()


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) in [0, 255] -> (B, 1, H, W) BT.601 luma in [16, 235]."""
    w = torch.tensor(Y_WEIGHTS, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) / 255.0 + 16.0


def _prepare(output, target, shave: int, y_channel: bool):
    out, ref = quantize(_as_bchw64(output)), _as_bchw64(target)
    if out.shape != ref.shape:
        raise ValueError(f"output {list(out.shape)} and target {list(ref.shape)} differ in shape")
    if shave < 0 or 2 * shave >= min(out.shape[-2:]):  # images too small for the task: the user's data
        raise ConfigError(f"cannot shave {shave} px from each border of {list(out.shape[-2:])} images")
    if y_channel:
        out, ref = rgb_to_y(out), rgb_to_y(ref)
    if shave:
        out, ref = out[..., shave:-shave, shave:-shave], ref[..., shave:-shave, shave:-shave]
    return out, ref


def _per_image(values: torch.Tensor):
    return values.item() if values.numel() == 1 else values


def psnr(output, target, *, shave: int = 0, y_channel: bool = True):
    """Peak signal-to-noise ratio in dB (a float for one image, a tensor of B values for a batch)."""
    out, ref = _prepare(output, target, shave, y_channel)
    mse = (out - ref).pow(2).flatten(1).mean(1)
    return _per_image(10 * torch.log10(DATA_RANGE**2 / mse))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)  # 5: the 11x11 window
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(output, target, *, shave: int = 0, y_channel: bool = True):
    """Structural similarity (a float for one image, a tensor of B values for a batch)."""
    out, ref = _prepare(output, target, shave, y_channel)
    window = _gaussian_window()
    if min(out.shape[-2:]) < window.numel():
        raise ConfigError(f"SSIM needs images of at least {window.numel()} px per side, got {list(out.shape[-2:])}")
    channels = out.shape[1]

    def blur(t):  # separable 'valid' Gaussian filter, per channel
        t = F.conv2d(t, window.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        return F.conv2d(t, window.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)

    c1, c2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    mu_x, mu_y = blur(out), blur(ref)
    var_x = blur(out * out) - mu_x**2
    var_y = blur(ref * ref) - mu_y**2
    cov = blur(out * ref) - mu_x * mu_y
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return _per_image(s.flatten(2).mean(2).mean(1))


def shave_for(task) -> int:
    """The border shaved for a task: its scale for SR, none for denoising and deraining."""
    from .tasks import get_task  # here, so that importing ipt.metrics alone does not load the kernels

    scale = get_task(task).scale
    return scale if scale > 1 else 0
