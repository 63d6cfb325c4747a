"""Fused data-path ops of the IPT toolkit.

Each op is one function whose docstring is its contract. Calls go to the compiled kernels
(torch.ops.ipt.*, from ipt._C) for every device that has one, and to the pure-PyTorch reference
(ipt.ops.reference) otherwise, with one warning per device. They work under torch.compile; the patch
ops are differentiable and exportable.
"""

from . import reference
from .bicubic import bicubic_downsample
from .blur import BLUR_PRESETS, HEAVY_BLUR, LIGHT_BLUR, BlurConfig, add_motion_blur, blur, motion_blur_kernels
from ._dispatch import EXTENSION, kernel_devices, op_names
from ._extension import ExtensionMismatchError, ExtensionStatus
from .noise import add_gaussian_noise
from .patch import patch_fold, patch_unfold
from .rain import HEAVY_RAIN, LIGHT_RAIN, RAIN_PRESETS, RainConfig, add_rain, rain_streaks

__all__ = [
    "patch_unfold",
    "patch_fold",
    "bicubic_downsample",
    "add_gaussian_noise",
    "rain_streaks",
    "add_rain",
    "RainConfig",
    "LIGHT_RAIN",
    "HEAVY_RAIN",
    "RAIN_PRESETS",
    "motion_blur_kernels",
    "blur",
    "add_motion_blur",
    "BlurConfig",
    "LIGHT_BLUR",
    "HEAVY_BLUR",
    "BLUR_PRESETS",
    "EXTENSION",
    "ExtensionStatus",
    "ExtensionMismatchError",
    "kernel_devices",
    "op_names",
    "reference",
]
