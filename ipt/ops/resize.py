"""Deprecated alias of ipt.ops.bicubic (the bicubic op family is named bicubic in every file)."""

import warnings

from .bicubic import bicubic_downsample, resize_plan

warnings.warn("ipt.ops.resize is deprecated; import ipt.ops.bicubic (or ipt.ops.bicubic_downsample)",
              DeprecationWarning, stacklevel=2)

__all__ = ["bicubic_downsample", "resize_plan"]
