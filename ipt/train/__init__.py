"""Training: the loop shared by pretraining and fine-tuning, losses, checkpoints, distributed set-up."""

from .config import PRESETS, TrainConfig, load_config
from .contrastive import contrastive_loss
from .loop import DivergedError, Trainer
from .state import NonFiniteWeightsError

__all__ = ["PRESETS", "TrainConfig", "load_config", "contrastive_loss", "Trainer", "DivergedError",
           "NonFiniteWeightsError"]


def __getattr__(name):
    # contrastive_loss_direct is the tests' oracle for contrastive_loss, no longer part of the training API.
    if name == "contrastive_loss_direct":
        import warnings

        from . import contrastive

        warnings.warn("ipt.train.contrastive_loss_direct is deprecated: it is a test oracle "
                      "(ipt.train.contrastive.contrastive_loss_direct); use ipt.train.contrastive_loss",
                      DeprecationWarning, stacklevel=2)
        return contrastive.contrastive_loss_direct
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
