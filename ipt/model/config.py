"""Size of an IPT model. The defaults are the paper's model (SPEC section 1), and the one place where
its sizes are stated (everything else reads them from a config); presets name smaller ones for CPU
work and tests."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import ConfigError


def reject_unknown_fields(cls, d: dict, what: str) -> None:
    """A clear error for keys of `d` that are not fields of the dataclass `cls`."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown}; known ones are {sorted(known)}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class IPTConfig:
    n_feats: int = 64  # channels of the heads' and tails' feature maps
    # Side of the model's input (and of the feature map the body sees): images of another size are cut
    # into tiles of this side (ipt.inference); training crops are patch_size * scale, plus a deblurring crop's
    # margin (Task.hr_crop_for).
    patch_size: int = 48
    patch_dim: int = 3  # side of a token's patch cut from that map: tokens of n_feats * patch_dim^2 values
    num_heads: int = 12  # attention heads; no weight shape depends on it, so official files cannot tell it
    num_layers: int = 12  # encoder layers, and as many decoder layers
    ffn_mult: int = 4  # FFN hidden size = ffn_mult * embedding dim
    dropout: float = 0.0
    n_colors: int = 3
    rgb_range: float = 255.0
    rgb_mean: tuple[float, float, float] = (0.4488, 0.4371, 0.4040)

    def __post_init__(self):
        problems = []
        for name in ("n_feats", "patch_size", "patch_dim", "num_heads", "num_layers", "ffn_mult", "n_colors"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if not problems:
            if self.patch_size % self.patch_dim:
                problems.append(f"patch_size {self.patch_size} must be a multiple of patch_dim {self.patch_dim}")
            if self.embedding_dim % self.num_heads:
                problems.append(
                    f"the embedding dim n_feats * patch_dim^2 = {self.embedding_dim} must be divisible by "
                    f"num_heads {self.num_heads}"
                )
        if not _is_number(self.dropout) or not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not _is_number(self.rgb_range) or not 0 < self.rgb_range < math.inf:
            problems.append(f"rgb_range must be a number > 0, got {self.rgb_range!r}")
        mean = self.rgb_mean
        if isinstance(mean, (str, bytes)) or not hasattr(mean, "__len__") or len(mean) != 3 or not all(
                _is_number(m) and math.isfinite(m) for m in mean):
            problems.append(f"rgb_mean must be 3 numbers (one per RGB channel), got {mean!r}")
        if problems:
            raise ConfigError("invalid IPTConfig: " + "; ".join(problems))

    @property
    def embedding_dim(self) -> int:
        return self.n_feats * self.patch_dim * self.patch_dim

    @property
    def num_tokens(self) -> int:
        return (self.patch_size // self.patch_dim) ** 2

    def to_dict(self) -> dict:
        d = asdict(self)
        d["rgb_mean"] = list(self.rgb_mean)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "IPTConfig":
        reject_unknown_fields(cls, d, "IPTConfig fields")
        d = dict(d)
        if isinstance(d.get("rgb_mean"), list):  # JSON has no tuples
            d["rgb_mean"] = tuple(d["rgb_mean"])
        return cls(**d)


PRESETS: dict[str, IPTConfig] = {
    "ipt": IPTConfig(),  # the paper's 114M-parameter body
    # ~0.6M parameters: trains visibly on a 2-core CPU in minutes
    "small": IPTConfig(n_feats=16, patch_size=24, patch_dim=3, num_heads=4, num_layers=2),
    # for tests: a forward pass in milliseconds
    "tiny": IPTConfig(n_feats=8, patch_size=12, patch_dim=3, num_heads=2, num_layers=1),
    # The paper's deblurring model (appendix A: "patch size as 256, patch dim as 8 and number of features as 9"),
    # as we read it: 256-px inputs cut into 8x8 patches of 9 feature channels -- tokens of 8*8*9 = 576 values, the
    # pretrained body's 3*3*64, so the pretrained body loads unchanged (ipt.model.transfer); 32x32 tokens.
    "ipt-deblur": IPTConfig(n_feats=9, patch_size=256, patch_dim=8),
}


def get_config(config: str | IPTConfig | dict) -> IPTConfig:
    if isinstance(config, IPTConfig):
        return config
    if isinstance(config, dict):
        return IPTConfig.from_dict(config)
    if isinstance(config, str) and config in PRESETS:
        return PRESETS[config]
    raise ConfigError(f"unknown model config {config!r}; presets are {sorted(PRESETS)}, or pass an IPTConfig")
