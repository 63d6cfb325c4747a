"""The model a fine-tuning starts from: a pretrained IPT's body, the task's head, tail and task-embedding
row (new ones when the checkpoint lacks the task), in the input geometry the recipe asks for.

The geometry -- n_feats, patch_size, patch_dim -- may differ from the pretrained model's as long as the
transformer body keeps its shapes (token length n_feats * patch_dim^2, layers, heads, FFN): the paper's
deblurring model (appendix A; the `ipt-deblur` preset) has n_feats 9, patch_dim 8, 256-px inputs, and the
same 576-value tokens as the pretrained model's 64 x 3 x 3. Its 32 x 32 tokens need 32 x 32 rows of
position and task embedding where pretraining learnt 16 x 16: those tables are resized as 2-D grids
(bicubic, the usual practice for ViT position embeddings); heads and tails of another n_feats are new.

    model, notes = finetuning_model(pretrained, "deblur", get_config("ipt-deblur"))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..tasks import get_task
from .config import IPTConfig, get_config
from .ipt import IPT

# The fields that decide the transformer body's weights and what they mean: a model whose config differs
# from another's only in the rest (n_feats, patch_size, patch_dim, dropout) can take the other's body.
BODY_FIELDS = ("num_heads", "num_layers", "ffn_mult", "n_colors", "rgb_range", "rgb_mean")


def same_body(a: IPTConfig, b: IPTConfig) -> bool:
    """Whether a model of config `b` can take the transformer body of a model of config `a`."""
    return a.embedding_dim == b.embedding_dim and all(getattr(a, f) == getattr(b, f) for f in BODY_FIELDS)


def describe_geometry(config: IPTConfig) -> str:
    return f"n_feats {config.n_feats}, patch_size {config.patch_size}, patch_dim {config.patch_dim}"


def resize_token_grid(table: torch.Tensor, side: int) -> torch.Tensor:
    """(n*n, E) rows laid over a square n x n grid of tokens -> (side*side, E), interpolated bicubically
    as an image of E channels. torch's antialiased bicubic (timm's choice for position embeddings) is
    Keys' a = -0.5 kernel, which keeps linear ramps straight; its plain one (a = -0.75) bends them."""
    old = math.isqrt(table.shape[0])
    if old * old != table.shape[0]:
        raise ValueError(f"{table.shape[0]} token rows are not a square grid")
    if old == side:
        return table.clone()
    grid = table.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(side, side), mode="bicubic", align_corners=False, antialias=True)
    return grid.permute(0, 2, 3, 1).reshape(side * side, -1).to(table.dtype)


def finetuning_model(pretrained: IPT, task, config: str | IPTConfig | dict | None = None) -> tuple[IPT, list[str]]:
    """(a single-task model of `task` in `config` (default: the pretrained model's), what was adapted to
    make it). From `pretrained` it takes the body; the task's head and tail when it has the task and their
    shapes fit (same n_feats); its task-embedding row, resized to the new token grid when that differs.
    What it cannot take is new (PyTorch's initialisation under the current RNG state)."""
    task = get_task(task)
    old, new = pretrained.config, get_config(config) if config is not None else pretrained.config
    if not same_body(old, new):
        raise ConfigError(f"a model of {describe_geometry(new)} and token length {new.embedding_dim} cannot start "
                          f"from this checkpoint's transformer body (token length {old.embedding_dim}, "
                          f"{old.num_layers} layers, {old.num_heads} heads)")
    if task.name in pretrained.task_names and new == old:
        return pretrained.subset([task.name]), []
    model = IPT([task], new).to(pretrained.body.query_embed.weight.device)
    state, source = model.state_dict(), pretrained.state_dict()
    side, notes = math.isqrt(new.num_tokens), []
    for key in state:
        if not key.startswith(("head.", "tail.", "body.query_embed.", "body.position_encoding.position_ids")):
            state[key] = source[key].clone()
    if new.num_tokens != old.num_tokens:
        state["body.position_encoding.pe.weight"] = resize_token_grid(source["body.position_encoding.pe.weight"], side)
        notes.append(f"position embedding resized from {math.isqrt(old.num_tokens)}x{math.isqrt(old.num_tokens)} "
                     f"to {side}x{side} tokens (bicubic)")
    if task.name in pretrained.task_names:
        i = pretrained.task_index(task.name)
        row = source["body.query_embed.weight"][i].view(old.num_tokens, old.embedding_dim)
        state["body.query_embed.weight"] = resize_token_grid(row, side).reshape(1, -1)
        if new.num_tokens != old.num_tokens:
            notes.append(f"{task.name}'s task embedding resized the same way")
        if new.n_feats == old.n_feats:
            for part in ("head", "tail"):
                for k, v in getattr(pretrained, part)[i].state_dict().items():
                    state[f"{part}.0.{k}"] = v.clone()
        else:
            notes.append(f"new head and tail for {task.name} (n_feats {new.n_feats}, the checkpoint's {old.n_feats})")
    else:
        notes.append(f"new head, tail and task embedding for {task.name} (the checkpoint has "
                     f"{', '.join(pretrained.task_names)})")
    model.load_state_dict(state)
    model.fused = pretrained.fused
    return model, notes


def finetuning_config(pretrained: IPTConfig, recipe_model) -> tuple[IPTConfig, str | None]:
    """(config, note) of the model a fine-tuning recipe trains from a checkpoint of config `pretrained`.
    recipe_model: the recipe's model (TrainConfig.model: a preset name or fields), None when no recipe was
    named. The recipe's config when it has the checkpoint's body (another geometry around it: ipt-deblur),
    else the checkpoint's own -- the recipe then sets the training only, and the note says so."""
    if recipe_model is None:
        return pretrained, None
    wanted = get_config(recipe_model)
    if same_body(pretrained, wanted):
        return wanted, None
    name = recipe_model if isinstance(recipe_model, str) else "given"
    return pretrained, (f"the recipe's model ({name}) has another transformer body than the checkpoint's: training the "
                        f"checkpoint's model ({describe_geometry(pretrained)}) with the recipe's settings")
