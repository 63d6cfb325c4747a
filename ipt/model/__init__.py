"""The IPT model (official checkpoint layout) and its configurations."""

from .checkpoint import CheckpointError, load_checkpoint, load_model, load_official
from .config import PRESETS, IPTConfig, get_config
from .ipt import IPT

__all__ = ["IPT", "IPTConfig", "PRESETS", "get_config", "CheckpointError", "load_checkpoint", "load_model",
           "load_official"]
