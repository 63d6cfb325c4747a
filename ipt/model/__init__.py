"""The IPT model (official checkpoint layout), its configurations and its checkpoint files.

Modules, each importing only the ones before it: config (sizes), layers and body (building blocks),
checkpoint (file formats; knows no model class), ipt (the model; IPT.save/load/load_official),
loading (load_model & co., the functional API), transfer (the model a fine-tuning starts from: a pretrained
body in another input geometry, new task parts)."""

from .checkpoint import CheckpointError, save_checkpoint
from .config import PRESETS, IPTConfig, get_config
from .ipt import IPT
from .loading import load_checkpoint, load_model, load_official

__all__ = ["IPT", "IPTConfig", "PRESETS", "get_config", "CheckpointError", "save_checkpoint", "load_checkpoint",
           "load_model", "load_official"]
