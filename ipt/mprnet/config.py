"""Sizes of an MPRNet. The three official networks differ only in their widths (SPEC section 6); the
presets here name them, plus two small ones for CPU work and tests."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields

from ..errors import ConfigError
from ..model.config import reject_unknown_fields

_POSITIVE_INTS = ("n_feat", "scale_unetfeats", "scale_orsnetfeats", "num_cab", "kernel_size", "reduction", "in_c",
                  "out_c")


@dataclass(frozen=True)
class MPRNetConfig:
    # Channels of the stage-1/2 U-Nets at full resolution; each halving of the resolution adds
    # scale_unetfeats channels, and stage 3 (ORSNet) works with n_feat + scale_orsnetfeats.
    n_feat: int
    scale_unetfeats: int
    scale_orsnetfeats: int
    num_cab: int = 8  # channel-attention blocks per ORSNet block
    kernel_size: int = 3
    reduction: int = 4  # channel attention squeezes C channels to C // reduction
    bias: bool = False
    in_c: int = 3
    # The restored image is the input plus a residual (and SAM adds the input to its image): out_c == in_c.
    out_c: int = 3

    def __post_init__(self):
        problems = []
        for name in _POSITIVE_INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.bias, bool):
            problems.append(f"bias must be True or False, got {self.bias!r}")
        if not problems:
            if self.kernel_size % 2 == 0:
                problems.append(f"kernel_size must be odd (the convolutions keep the image size), got "
                                f"{self.kernel_size}")
            if self.n_feat < self.reduction:
                # the narrowest channel attention (n_feat channels) would squeeze to zero channels
                problems.append(f"n_feat {self.n_feat} must be >= reduction {self.reduction}")
            if self.out_c != self.in_c:
                problems.append(f"out_c {self.out_c} must equal in_c {self.in_c}: MPRNet adds its output to its input")
        if problems:
            raise ConfigError("invalid MPRNetConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MPRNetConfig":
        reject_unknown_fields(cls, d, "MPRNetConfig fields")
        absent = [f.name for f in fields(cls) if f.default is MISSING and f.name not in d]
        if absent:
            raise ConfigError(f"MPRNetConfig fields {absent} are missing (they have no default)")
        return cls(**d)

    def describe(self) -> str:
        """The sizes that tell the networks apart (and any other field off its default), for messages."""
        main = ("n_feat", "scale_unetfeats", "scale_orsnetfeats", "num_cab")
        parts = [f"{name} {getattr(self, name)}" for name in main]
        parts += [f"{f.name} {getattr(self, f.name)}" for f in fields(self)
                  if f.name not in main and getattr(self, f.name) != f.default]
        return ", ".join(parts)


PRESETS: dict[str, MPRNetConfig] = {
    # The official networks (parameter counts measured on the official code: 20,127,073 / 15,741,025 / 3,637,249).
    "deblur": MPRNetConfig(n_feat=96, scale_unetfeats=48, scale_orsnetfeats=32),
    "denoise": MPRNetConfig(n_feat=80, scale_unetfeats=48, scale_orsnetfeats=32),
    "derain": MPRNetConfig(n_feat=40, scale_unetfeats=20, scale_orsnetfeats=16),
    # 99,301 parameters: a forward and backward pass of four 64x64 crops takes ~0.2 s on 2 CPU cores.
    "small": MPRNetConfig(n_feat=8, scale_unetfeats=4, scale_orsnetfeats=4, num_cab=1),
    # 25,687 parameters, for tests: a forward pass of a small image in milliseconds.
    "tiny": MPRNetConfig(n_feat=4, scale_unetfeats=2, scale_orsnetfeats=2, num_cab=1, reduction=2),
}

# The task kind (ipt.tasks.Task.kind) each official preset was trained for: a new model of a task gets the
# preset of its kind, and a release file used for another kind is worth a warning.
PRESET_KINDS: dict[str, str] = {"deblur": "deblur", "denoise": "denoise", "derain": "derain"}


def get_config(config: str | dict | MPRNetConfig) -> MPRNetConfig:
    """The config of a preset name, a dict of fields (as checkpoints store it) or a config."""
    if isinstance(config, MPRNetConfig):
        return config
    if isinstance(config, dict):
        return MPRNetConfig.from_dict(config)
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    raise ConfigError(f"unknown MPRNet config {config!r}; presets are {sorted(PRESETS)}, or pass an MPRNetConfig")


def preset_for_kind(kind: str) -> str:
    """The official preset of a task kind: the size a new model of that kind gets when none is named."""
    by_kind = {k: name for name, k in PRESET_KINDS.items()}
    if kind not in by_kind:
        raise ConfigError(f"MPRNet restores images at their own size (deblurring, denoising, deraining), not "
                          f"{kind!r} tasks; use --model ipt for super-resolution")
    return by_kind[kind]


def preset_name(config: MPRNetConfig) -> str | None:
    """The name of the preset equal to this config, if any."""
    return next((name for name, preset in PRESETS.items() if preset == config), None)
