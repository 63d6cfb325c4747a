"""Loading a model from a file, as functions: ipt.model.load_model takes either format (ours or an
official release file); load_checkpoint and load_official are IPT.load and IPT.load_official."""

from __future__ import annotations

from ..tasks import get_task
from .checkpoint import CheckpointError, read_checkpoint
from .config import IPTConfig
from .ipt import IPT


def load_checkpoint(path, map_location="cpu") -> IPT:
    """A model saved by this toolkit (IPT.save, pretraining or fine-tuning checkpoints)."""
    return IPT.load(path, map_location)


def load_official(path, task=None, map_location="cpu", config: IPTConfig | None = None, *,
                  num_heads: int | None = None) -> IPT:
    """An official IPT release file, loaded strictly: see IPT.load_official."""
    return IPT.load_official(path, task, map_location, config, num_heads=num_heads)


def check_stored_heads(model: IPT, num_heads: int | None, source) -> None:
    """A head count given for one of our checkpoints, which store theirs: only the same one is accepted."""
    if num_heads is not None and num_heads != model.config.num_heads:
        raise CheckpointError(f"{source} stores its config, with num_heads {model.config.num_heads}, not {num_heads}: "
                              "leave num_heads out for checkpoints of this toolkit")


def load_model(path, task=None, map_location="cpu", *, num_heads: int | None = None) -> IPT:
    """Any IPT checkpoint: ours, or an official release file (task names a single-task file's task;
    num_heads: the head count of an official-style file that is not the paper's layout, which the
    file cannot tell). With `task`, a checkpoint without that task is an error."""
    kind, content = read_checkpoint(path, map_location)
    if kind != "ours":
        return IPT.from_official_state_dict(content, str(path), task, num_heads=num_heads)
    model = IPT.from_payload(content, str(path))
    check_stored_heads(model, num_heads, path)
    if task is not None:
        try:
            model.task_index(get_task(task))
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
    return model
