"""IPT as a model family (ipt.families): its presets, files, tiles and loss, as the shared pieces ask."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..families import ModelFamily
from ..errors import ConfigError
from .config import PRESETS, get_config
from .ipt import IPT
from .loading import check_stored_heads


class IPTFamily(ModelFamily):
    name = "ipt"
    presets = PRESETS
    find_unused_parameters = True  # one task's head and tail per step
    loss_names = ("l1", "contrastive")
    weights_hint = "an official IPT file (e.g. IPT_sr2.pt)"
    # Without native bfloat16: float16 with loss scaling, as the official code trained it on 32 V100s (float16,
    # LayerNorm in float32 -- as float16 autocast keeps it --, gradients clipped to norm 1). Measured on a
    # photograph, its module outputs peak below 1,000 (random and demo-trained weights): float16 reaches 65504.
    fp16_training = True

    def get_config(self, config):
        return get_config(config)

    def default_preset(self, tasks) -> str:
        return "ipt"

    def build(self, tasks, config) -> IPT:
        return IPT(tasks, config)

    def from_payload(self, payload: dict, source: str, *, num_heads: int | None = None) -> IPT:
        model = IPT.from_payload(payload, source)
        check_stored_heads(model, num_heads, source)
        return model

    def claims(self, content) -> bool:
        from .checkpoint import official_state_dict

        try:
            state = official_state_dict(content, "file")
        except ValueError:
            return False
        return "head.0.0.weight" in state and "body.linear_encoding.weight" in state

    def load_official(self, path, content, task, *, num_heads: int | None = None) -> IPT:
        return IPT.from_official_state_dict(content, str(path), task, num_heads=num_heads)

    def restoration_fn(self, model: IPT, task):
        index = model.task_index(task.name)
        return lambda tiles: model(tiles, index)

    def tiling(self, model: IPT, tile, overlap) -> dict:
        # The body takes inputs of exactly one side: every tile has it, smaller images are mirror-padded.
        side = model.config.patch_size
        if tile is not None and tile != side:
            raise ConfigError(f"an IPT model takes tiles of its patch_size, {side} px, only; leave the tile size "
                              f"out (got {tile})")
        return {"patch_size": side, "overlap": overlap, "whole": False}

    def losses(self, forward, inputs, target, task, task_index, config, autocast):
        from ..train.contrastive import contrastive_loss

        with autocast:
            output, tokens = forward(inputs, task_index, return_features=True)
        l1 = F.l1_loss(output.float(), target)
        if config.contrastive_weight > 0:
            contrastive = contrastive_loss(tokens, config.temperature, config.contrastive_chunk)
        else:
            contrastive = torch.zeros((), device=l1.device)
        return l1 + config.contrastive_weight * contrastive, torch.stack([l1.detach(), contrastive.detach()])

    def train_crop(self, model_config, config) -> int:
        side = model_config.patch_size
        if config.crop is not None and config.crop != side:
            raise ConfigError(f"crop {config.crop}: an IPT model trains on inputs of its patch_size, {side} px "
                              "(leave crop unset)")
        return side


FAMILY = IPTFamily()
