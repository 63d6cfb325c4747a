"""The Image Processing Transformer: per-task heads and tails around one shared transformer body."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..tasks import Task, get_task
from .body import TransformerBody
from .config import IPTConfig, get_config
from .layers import MeanShift, make_head, make_tail


class IPT(nn.Module):
    """IPT(tasks=["sr2"]) is the official single-task x2 model; IPT(tasks=TASK_NAMES) the 6-task
    pretraining model. `model(x, task)` maps (B, 3, H, W) images in [0, 255] to (B, 3, H*s, W*s) for
    the task's scale s, with H = W = config.patch_size (tile larger images with ipt.inference).
    `task` is a task name or an index into model.tasks. Parameter names and shapes are the official
    checkpoints' (see IPT.load_official)."""

    def __init__(self, tasks: Sequence[str | Task] = ("sr2",), config: str | IPTConfig | dict = "ipt"):
        super().__init__()
        if isinstance(tasks, (str, Task)):
            tasks = [tasks]
        self.tasks: list[Task] = [get_task(t) for t in tasks]
        if not self.tasks:
            raise ValueError("IPT needs at least one task")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate tasks in {names}")
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
                raise ValueError(f"task index {task} is out of range for a model with tasks {self.task_names}")
            return task
        name = task.name if isinstance(task, Task) else task
        if name not in self.task_names:
            raise ValueError(f"this model has no task {name!r}; its tasks are {self.task_names}")
        return self.task_names.index(name)

    def scale_of(self, task) -> int:
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

    # Checkpoints: see ipt.model.checkpoint for the formats.
    def save(self, path, **extra_metadata) -> None:
        from .checkpoint import save_checkpoint

        save_checkpoint(self, path, **extra_metadata)

    @classmethod
    def load(cls, path, map_location="cpu") -> "IPT":
        from .checkpoint import load_checkpoint

        return load_checkpoint(path, map_location)

    @classmethod
    def load_official(cls, path, task=None, map_location="cpu", config=None) -> "IPT":
        from .checkpoint import load_official

        return load_official(path, task, map_location, config)
