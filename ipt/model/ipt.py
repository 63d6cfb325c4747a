"""The Image Processing Transformer: per-task heads and tails around one shared transformer body."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import nn

from ..errors import ConfigError
from ..tasks import Task, get_task
from . import checkpoint
from .body import TransformerBody
from .config import IPTConfig, get_config
from .layers import MeanShift, make_head, make_tail


class IPT(nn.Module):
    """IPT(tasks=["sr2"]) is the official single-task x2 model; IPT(tasks=TASK_NAMES) the 6-task
    pretraining model. `model(x, task)` maps (B, 3, H, W) images in [0, 255] to (B, 3, H*s, W*s) for
    the task's scale s, with H = W = config.patch_size (tile larger images with ipt.inference).
    `task` is a task name or an index into model.tasks. Parameter names and shapes are the official
    checkpoints' (see IPT.load_official)."""

    family = "ipt"  # its model family (ipt.families), recorded in our checkpoints

    def __init__(self, tasks: Sequence[str | Task] = ("sr2",), config: str | IPTConfig | dict = "ipt"):
        super().__init__()
        if isinstance(tasks, (str, Task)):
            tasks = [tasks]
        self.tasks: list[Task] = [get_task(t) for t in tasks]
        if not self.tasks:
            raise ConfigError("IPT needs at least one task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate tasks in {names}")
        self.config = cfg = get_config(config)
        self.sub_mean = MeanShift(cfg.rgb_range, cfg.rgb_mean, sign=-1)
        self.add_mean = MeanShift(cfg.rgb_range, cfg.rgb_mean, sign=+1)
        self.head = nn.ModuleList([make_head(cfg.n_colors, cfg.n_feats) for _ in self.tasks])
        self.body = TransformerBody(cfg, num_tasks=len(self.tasks))
        self.tail = nn.ModuleList([make_tail(t.scale, cfg.n_feats, cfg.n_colors) for t in self.tasks])

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task_index(self, task: str | int | Task) -> int:
        """Index into self.tasks of a task given by name, index or Task."""
        if isinstance(task, int) and not isinstance(task, bool):
            if not 0 <= task < len(self.tasks):
                raise ConfigError(f"task index {task} is out of range for a model with tasks {self.task_names}")
            return task
        name = task.name if isinstance(task, Task) else task
        if name not in self.task_names:
            raise ConfigError(f"this model has no task {name!r}; its tasks are {self.task_names}")
        return self.task_names.index(name)

    def scale_of(self, task) -> int:
        """Deprecated: use model.tasks[model.task_index(task)].scale."""
        warnings.warn("IPT.scale_of is deprecated; use model.tasks[model.task_index(task)].scale",
                      DeprecationWarning, stacklevel=2)
        return self.tasks[self.task_index(task)].scale

    @property
    def fused(self) -> bool:
        """True: the body runs the fused ipt.ops kernels; False: the plain PyTorch path."""
        return self.body.fused

    @fused.setter
    def fused(self, value: bool) -> None:
        self.body.fused = bool(value)

    def forward(self, x: torch.Tensor, task: str | int | Task = 0, return_features: bool = False):
        """x: (B, 3, patch_size, patch_size) in [0, 255]. With return_features, also the body's
        (B, N, E) tokens (the contrastive loss's features). No clamp: outputs may leave [0, 255]."""
        i = self.task_index(task)
        x = self.sub_mean(x)
        x = self.head[i](x)
        res, tokens = self.body(x, i, return_tokens=True)
        out = self.add_mean(self.tail[i](res + x))
        return (out, tokens) if return_features else out

    def subset(self, tasks: Sequence[str | Task]) -> "IPT":
        """A model with only these tasks' heads, tails and task-embedding rows, sharing nothing with
        this one (e.g. for fine-tuning a pretrained 6-task model on one task)."""
        if isinstance(tasks, (str, Task)):
            tasks = [tasks]
        indices = [self.task_index(t) for t in tasks]
        new = IPT([self.tasks[i] for i in indices], self.config).to(self.body.query_embed.weight.device)
        with torch.no_grad():
            state = {k: v for k, v in self.state_dict().items() if not k.startswith(("head.", "tail.", "body.query_embed"))}
            for new_i, old_i in enumerate(indices):
                for part in ("head", "tail"):
                    for k, v in getattr(self, part)[old_i].state_dict().items():
                        state[f"{part}.{new_i}.{k}"] = v
            state["body.query_embed.weight"] = self.body.query_embed.weight[indices]
            new.load_state_dict({k: v.clone() for k, v in state.items()})
        new.fused = self.fused
        return new

    # --- checkpoints (the file formats: ipt.model.checkpoint) ------------------------------------------------

    def save(self, path, **extra_metadata) -> None:
        """Config, tasks and weights to path: safetensors unless the name ends in .pt/.pth."""
        checkpoint.save_checkpoint(self, path, **extra_metadata)

    @classmethod
    def from_payload(cls, payload: dict, source: str = "checkpoint") -> "IPT":
        """The model a payload of ours describes (ipt.model.checkpoint.model_payload), loaded strictly."""
        checkpoint.check_payload(payload, source)  # the entries' types; their values are checked below
        try:
            model = cls(payload["tasks"], IPTConfig.from_dict(payload["config"]))
        except (ValueError, TypeError) as error:
            raise checkpoint.CheckpointError(f"{source}: cannot rebuild the model it describes: {error}") from None
        checkpoint.load_state_strict(model, payload["state_dict"], source, layout=f"tasks {payload['tasks']}")
        return model

    @classmethod
    def from_official_state_dict(cls, content, source: str = "state_dict", task=None, config: IPTConfig | None = None,
                                 *, num_heads: int | None = None) -> "IPT":
        """The model an official-style state_dict describes, loaded strictly (see load_official)."""
        state = checkpoint.official_state_dict(content, source)
        layout = checkpoint.official_layout(state, source)
        model = cls(checkpoint.official_tasks(layout, source, task),
                    checkpoint.official_config(layout, source, config, num_heads))
        checkpoint.load_state_strict(model, state, source, checkpoint.describe_layout(layout))
        return model

    @classmethod
    def load(cls, path, map_location="cpu") -> "IPT":
        """A model saved by this toolkit (IPT.save, pretraining or fine-tuning checkpoints)."""
        kind, content = checkpoint.read_checkpoint(path, map_location)
        if kind != "ours":
            raise checkpoint.CheckpointError(
                f"{path} is not a checkpoint of this toolkit; for the official IPT files use "
                "IPT.load_official(path) (or ipt.model.load_model, which takes either)")
        return cls.from_payload(content, str(path))

    @classmethod
    def load_official(cls, path, task=None, map_location="cpu", config: IPTConfig | None = None, *,
                      num_heads: int | None = None) -> "IPT":
        """An official IPT release file (IPT_sr2.pt ... IPT_derain.pt, IPT_pretrain.pt), loaded strictly.

        The task of a single-task file comes from `task`, else from the file name (IPT_denoise30.pt ->
        noise30), else from its tail scale for SR. The sizes are read off the weights, except the number
        of attention heads, which no file stores: the paper's layout (that of the released files) has the
        paper's head count; any other layout needs `num_heads` (or a whole `config`), else a
        CheckpointError says so.
        """
        kind, content = checkpoint.read_checkpoint(path, map_location)
        if kind == "ours":
            raise checkpoint.CheckpointError(
                f"{path} is a checkpoint of this toolkit, not an official file: use IPT.load(path)")
        return cls.from_official_state_dict(content, str(path), task, config, num_heads=num_heads)
