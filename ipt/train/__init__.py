"""Training: the loop shared by pretraining and fine-tuning, losses, checkpoints, distributed set-up."""

from .config import PRESETS, TrainConfig, load_config
from .contrastive import contrastive_loss
from .loop import Trainer

__all__ = ["PRESETS", "TrainConfig", "load_config", "contrastive_loss", "Trainer"]
