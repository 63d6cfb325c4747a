"""Choosing a loader of training batches: the torch DataLoader path (ipt.data.loader) or the DALI
pipeline (ipt.pipelines). Both yield the same ipt.data.Batch objects for the same seed.

    loader = make_loader("dali", data, tasks=TASKS, batch_size=64, seed=0, device="cuda")
    for batch in loader.epoch(0):
        lr, hr = degrade_batch(batch, loader.tasks, seed=0)

This module sits above ipt.data and ipt.pipelines (the DALI pipeline is built on ipt.data's plan and
batches), so neither of them imports the other's loader.
"""

from __future__ import annotations


from .data.datasets import ImagePairs
from .data.loader import PlannedLoader, TorchLoader
from .deprecation import renamed_keyword
from .errors import ConfigError
from .model.config import IPTConfig
from .pipelines import DaliLoader
from .tasks import get_task

LOADER_TYPES: dict[str, type[PlannedLoader]] = {cls.backend: cls for cls in (TorchLoader, DaliLoader)}
BACKENDS: tuple[str, ...] = tuple(LOADER_TYPES)  # the names make_loader and TrainConfig.loader take

__all__ = ["BACKENDS", "LOADER_TYPES", "make_loader"]


@renamed_keyword("lr_patch", "patch_size")
def make_loader(backend: str, data, tasks, batch_size: int, seed: int = 0, *, patch_size: int = IPTConfig.patch_size,
                workers: int = 2, device="cpu", **options) -> PlannedLoader:
    """A loader of training batches: backend 'dali' (ipt.pipelines.DaliLoader) or 'torch'
    (ipt.data.loader.TorchLoader); both yield the same batches for the same seed.

    tasks: the tasks batches are drawn for (one per batch, shared by all ranks). patch_size: the side of
    one model input (model.config.patch_size; default the paper model's). Clean images are cut into each
    task's HR crop (task.hr_crop_for(patch_size)); pairs into patch_size crops of the inputs (one task).
    workers: DALI threads or DataLoader worker processes. options: repeat, last_batch, augment, rank,
    world, task_group. lr_patch=: the old name of patch_size (deprecated).
    """
    if backend not in LOADER_TYPES:
        raise ConfigError(f"unknown loader backend {backend!r}; choose one of {BACKENDS}")
    tasks = [get_task(t) for t in tasks]
    if isinstance(data, ImagePairs):
        if len(tasks) != 1 or tasks[0].scale != data.scale:
            raise ConfigError(f"pairs of scale {data.scale} train exactly one task of that scale, "
                              f"got {[t.name for t in tasks]}")
        crops = (patch_size,)
    else:
        crops = tuple(t.hr_crop_for(patch_size) for t in tasks)
    loader = LOADER_TYPES[backend](data, crops, batch_size, seed, workers=workers, device=device, **options)
    loader.tasks = tasks
    return loader
