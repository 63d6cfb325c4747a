"""Procedural rain streaks (the deraining task), seeded like the noise.

A streak layer is made from sparse bright seeds smeared along a line of `length` pixels at `angle`
degrees from vertical and widened by a Gaussian of standard deviation thickness / 2, then min-max
normalised to [0, 255]; rain is added as clip(x + alpha * layer, 0, 255). Every sample draws its own
parameters from the (low, high) ranges of a RainConfig, deterministically from (seed, sample id).
"""

from __future__ import annotations

from dataclasses import astuple, make_dataclass

import torch

from . import checks, reference
from ._dispatch import use_kernel
from .contract import RAIN_LAYER_PARAMS, RAIN_PARAMS
from .noise import default_sample_ids, id_vector


def _ranges(self, with_alpha: bool = True) -> tuple[list[float], ...]:
    """The ranges as the ops take them: every parameter, or (with_alpha=False) rain_streaks' ones."""
    values = astuple(self) if with_alpha else astuple(self)[: len(RAIN_LAYER_PARAMS)]
    return tuple([float(lo), float(hi)] for lo, hi in values)


# (low, high) ranges that each sample's rain parameters are drawn from, uniformly; one field per
# parameter of ipt/ops/contract.py RAIN_PARAMS (which gives each its meaning and allowed bounds).
RainConfig = make_dataclass(
    "RainConfig",
    [(name, tuple[float, float]) for name in RAIN_PARAMS],
    frozen=True,
    namespace={"ranges": _ranges, "__module__": __name__},
)
RainConfig.__doc__ = "(low, high) ranges each sample's rain parameters are drawn from: " + "; ".join(
    f"{name}: {meaning}, within [{lo:g}, {hi:g}]" for name, (lo, hi, meaning) in RAIN_PARAMS.items()
)


# Light rain like Rain100L: sparse, thin, near-vertical streaks. Heavy rain like Rain100H: dense, wide,
# long streaks at any angle up to 60 degrees. (Recipe ranges from the IPT toolkit spec, section 2.)
LIGHT_RAIN = RainConfig(amount=(0.002, 0.004), thickness=(1.0, 3.0), length=(25.0, 35.0), angle=(-10.0, 10.0),
                        alpha=(0.6, 0.9))
HEAVY_RAIN = RainConfig(amount=(0.004, 0.01), thickness=(2.0, 9.0), length=(30.0, 60.0), angle=(-60.0, 60.0),
                        alpha=(0.7, 1.0))
RAIN_PRESETS = {"light": LIGHT_RAIN, "heavy": HEAVY_RAIN}


def resolve_rain(rain) -> RainConfig:
    return checks.resolve_config(rain, RAIN_PRESETS, RainConfig, checks.check_rain_config, "rain")


def rain_streaks(sample_ids, height: int, width: int, seed: int, rain="light", *, device=None) -> torch.Tensor:
    """Grey rain-streak layers (B, 1, height, width), float32 in [0, 255].

    sample_ids: (B,) int64 tensor (its device is the output's), or an int B for ids 0 .. B-1 on
    `device`. The layer of a sample depends only on (seed, sample id, height, width, rain).
    """
    sample_ids = id_vector(sample_ids, device)
    config = resolve_rain(rain)
    ranges = config.ranges(with_alpha=False)
    if isinstance(sample_ids, torch.Tensor) and use_kernel("rain_streaks", sample_ids.device):
        if not checks.fits_int64(height, width, seed):  # the schema's int64 cannot carry them to the C++ checks
            checks.check_rain_streaks(sample_ids, height, width, seed, *ranges)
        return torch.ops.ipt.rain_streaks(sample_ids, height, width, seed, *ranges)
    return reference.rain_streaks(sample_ids, height, width, seed, *ranges)


def add_rain(x: torch.Tensor, seed: int | None = None, sample_ids=None, rain="light", *, streak=None, alpha=None):
    """Add rain to (B, C, H, W) images: clip(x + alpha * streak, 0, 255), float output.

    Procedural: add_rain(x, seed, sample_ids=None, rain="light" | "heavy" | RainConfig) draws each
    sample's layer and alpha from (seed, sample id); one fused pass, no layer materialised.
    Given layers: add_rain(x, streak=layer, alpha=1.0) blends grey layers (B or 1, 1, H, W) on the
    0-255 scale, as the official pretraining does with pre-rendered streak images.
    uint8 input gives float32, float input keeps its dtype.
    """
    if streak is not None:
        if seed is not None or sample_ids is not None:
            raise ValueError("add_rain: give either a streak layer or a seed (with sample_ids), not both")
        return reference.blend_streak(x, streak, 1.0 if alpha is None else alpha)
    if seed is None:
        raise ValueError("add_rain: a seed is needed to draw rain (or pass streak=layer)")
    if alpha is not None:
        raise ValueError("add_rain: alpha is drawn from the RainConfig's alpha range; pass rain=RainConfig(...)")
    config = resolve_rain(rain)
    if isinstance(x, torch.Tensor):
        sample_ids = default_sample_ids(x, sample_ids)
        if use_kernel("add_rain", x.device):
            checks.check_seed("add_rain", seed)  # the schema's int64 cannot carry seeds >= 2**63
            return torch.ops.ipt.add_rain(x, sample_ids, seed, *config.ranges())
    return reference.add_rain(x, sample_ids, seed, *config.ranges())
