"""MPRNet as a model family (ipt.families): its presets, files, tiles and loss, as the shared pieces ask."""

from __future__ import annotations

import warnings

import torch

from ..errors import ConfigError
from ..families import ModelFamily
from ..tasks import get_task
from . import official
from .config import PRESET_KINDS, PRESETS, get_config, preset_for_kind, preset_name
from .losses import mprnet_loss
from .network import SIZE_MULTIPLE, MPRNet

# Whole-image inference cuts large images into tiles of this side, overlapping by this much (the official
# code restores images whole, which runs out of memory on large photographs: issues 13, 32, 35, 111).
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64
MIN_TILE = 16

# The official training crops: 128 px for denoising (SIDD), 256 for deblurring and deraining.
OFFICIAL_CROPS = {"denoise": 128}
DEFAULT_CROP = 256

# The official edge-loss weight: 0.05, none for denoising (Charbonnier only).
OFFICIAL_EDGE_WEIGHTS = {"denoise": 0.0}
DEFAULT_EDGE_WEIGHT = 0.05


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse_heads(num_heads) -> None:
    """The tools pass IPT's num_heads to every family; MPRNet has none."""
    if num_heads is not None:
        raise ConfigError(f"num_heads {num_heads}: MPRNet has no attention heads; leave it out (it is IPT's)")


class MPRNetFamily(ModelFamily):
    name = "mprnet"
    presets = PRESETS
    find_unused_parameters = False  # every parameter takes part in every step
    loss_names = ("charbonnier", "edge")
    weights_hint = ("an official MPRNet file (model_deblurring.pth, model_denoising.pth, model_deraining.pth or "
                    "PaddleGAN's MPR_Deblurring.pdparams, ...)")
    # Without native bfloat16: float32, as the official recipe trained it (on V100s). Not for overflow: on a
    # photograph its module outputs peak at 3.4 (random deblur/denoise/derain presets) or 1.1 (trained
    # small models), inputs in [0, 1] -- far below float16's 65504; float16 training of it is untried.
    fp16_training = False
    fp32_reason = "its official recipe trains in float32 on V100s"

    def get_config(self, config):
        return get_config(config)

    def default_preset(self, tasks) -> str:
        if not tasks:
            raise ConfigError("an MPRNet model needs a task")
        return preset_for_kind(get_task(tasks[0]).kind)

    def build(self, tasks, config) -> MPRNet:
        return MPRNet(tasks, config)

    def from_payload(self, payload: dict, source: str, *, num_heads: int | None = None) -> MPRNet:
        _refuse_heads(num_heads)
        return MPRNet.from_payload(payload, source)

    def claims(self, content) -> bool:
        keys = official.official_keys(content)
        return keys is not None and official.looks_like_mprnet(keys)

    def official_reader(self, path):
        return official.read_pdparams if official.is_pdparams(path) else None

    def load_official(self, path, content, task, *, num_heads: int | None = None, config=None) -> MPRNet:
        _refuse_heads(num_heads)
        return MPRNet.from_official_state_dict(content, str(path), task, config)

    def check_task(self, model: MPRNet, task, source: str) -> None:
        super().check_task(model, task, source)  # scale != 1: a CheckpointError
        preset = preset_name(model.config)
        made_for = PRESET_KINDS.get(preset)
        if made_for is not None and made_for != task.kind:
            warnings.warn(f"{source} holds MPRNet's {preset} preset, the official network for {made_for} tasks, and "
                          f"is asked to restore {task.name!r} (a {task.kind} task)", UserWarning, stacklevel=3)

    # --- inference -------------------------------------------------------------------------------------------

    def restoration_fn(self, model: MPRNet, task):
        index = model.task_index(task)
        return lambda tiles: model(tiles / 255, index)[0] * 255

    def tiling(self, model: MPRNet, tile, overlap) -> dict:
        """Tiles of `tile` px (DEFAULT_TILE), overlapping by `overlap` (DEFAULT_OVERLAP, at most half the tile);
        any side works (the model pads to a multiple of 8 itself), multiples of 8 waste nothing."""
        tile = DEFAULT_TILE if tile is None else tile
        if not _is_int(tile) or tile < MIN_TILE:
            raise ConfigError(f"tile {tile!r}: MPRNet's tiles are at least {MIN_TILE} px")
        if overlap is None:
            overlap = min(DEFAULT_OVERLAP, tile // 2)
        if not _is_int(overlap) or not 0 <= overlap <= tile // 2:
            raise ConfigError(f"overlap {overlap!r}: it must be between 0 and half the tile ({tile // 2} px)")
        return {"patch_size": tile, "overlap": overlap, "whole": True}

    # --- training --------------------------------------------------------------------------------------------

    def losses(self, forward, inputs, target, task, task_index, config, autocast):
        x, y = inputs / 255, target / 255
        with autocast:
            outputs = forward(x, task_index)
        edge_weight = config.edge_weight
        if edge_weight is None:
            edge_weight = OFFICIAL_EDGE_WEIGHTS.get(task.kind, DEFAULT_EDGE_WEIGHT)
        total, charbonnier, edge = mprnet_loss([output.float() for output in outputs], y.float(), edge_weight,
                                               eps=config.charbonnier_eps, clamp=task.kind == "denoise")
        return total, torch.stack([charbonnier, edge]).detach()

    def train_crop(self, model_config, config) -> int:
        crop = config.crop
        if crop is None:  # the official crop of the task trained (config.tasks: one task)
            crop = OFFICIAL_CROPS.get(get_task(config.tasks[0]).kind, DEFAULT_CROP)
        if not _is_int(crop) or crop < SIZE_MULTIPLE or crop % SIZE_MULTIPLE:
            raise ConfigError(f"crop {crop!r}: MPRNet trains on crops whose side is a multiple of {SIZE_MULTIPLE} "
                              "(its stages split the image in halves and quarters)")
        return crop


FAMILY = MPRNetFamily()

__all__ = ["MPRNetFamily", "FAMILY", "DEFAULT_TILE", "DEFAULT_OVERLAP"]
