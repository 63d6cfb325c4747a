"""MPRNet (Zamir et al., CVPR 2021; swz30/MPRNet), the toolkit's second model family (ipt.families).

Modules: config (sizes and presets), network (the model, official parameter names; MPRNet.save / load /
load_official), official (the release files: .pth and PaddleGAN's .pdparams), losses (Charbonnier and edge
losses), family (what the shared trainer, inference and CLIs ask of a family)."""

from .config import PRESET_KINDS, PRESETS, MPRNetConfig, get_config
from .losses import charbonnier_loss, edge_loss, mprnet_loss
from .network import MPRNet
from .official import read_pdparams

__all__ = ["MPRNet", "MPRNetConfig", "PRESETS", "PRESET_KINDS", "get_config", "charbonnier_loss", "edge_loss",
           "mprnet_loss", "read_pdparams"]
