"""A training batch, and the augmentation both loaders apply to each sample."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .plan import SampleSpec


@dataclass
class Batch:
    """hr: (B, 3, H, W) uint8 clean crops (targets); lr: (B, 3, h, w) uint8 inputs for real pairs, else
    None (the task's degradation makes them). task: index into the loader's tasks. The image tensors
    are in channels-last memory format (decoders produce HWC; no layout copy is made)."""

    hr: torch.Tensor
    task: int
    sample_ids: torch.Tensor  # (B,) int64, keys the seeded degradations
    epoch: int
    index: int  # batch index within the epoch (this rank's)
    lr: torch.Tensor | None = None
    skipped: list = field(default_factory=list)  # files that failed to decode in this batch

    def to(self, device, non_blocking: bool = True) -> "Batch":
        move = lambda t: None if t is None else t.to(device, non_blocking=non_blocking)  # noqa: E731
        return Batch(move(self.hr), self.task, self.sample_ids.to(device, non_blocking=non_blocking), self.epoch,
                     self.index, move(self.lr), self.skipped)


def augment(image_hwc: np.ndarray, spec: SampleSpec) -> np.ndarray:
    """Flips (horizontal, then vertical), then counter-clockwise quarter turns (what the plan draws);
    returns a contiguous (H, W, 3) array. The DALI pipeline gets the same pixels as flips plus an
    optional H/W transpose (flips_then_transpose)."""
    if spec.flip_h:
        image_hwc = image_hwc[:, ::-1]
    if spec.flip_v:
        image_hwc = image_hwc[::-1]
    return np.ascontiguousarray(np.rot90(image_hwc, spec.rot90))


def flips_then_transpose(spec: SampleSpec) -> tuple[bool, bool, bool]:
    """The same transform as augment(), written as (flip_h, flip_v, swap H and W): every combination of
    flips and quarter turns is one of these eight. Lets a pipeline flip cheaply and transpose only the
    samples that need it (pipelines/dali.py), instead of running a general rotation (a per-pixel warp)."""
    k = spec.rot90
    return spec.flip_h ^ (k in (1, 2)), spec.flip_v ^ (k in (2, 3)), k % 2 == 1


def crop(image_hwc: np.ndarray, top: int, left: int, size: int) -> np.ndarray:
    return image_hwc[top : top + size, left : left + size]


def degrade_batch(batch: Batch, tasks, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(model input, float target) of a batch on its device: the real input for pairs, else the batch's
    task's seeded degradation of the clean crops (Task.pair: without a deblurring crop's margin)."""
    if batch.lr is not None:
        return batch.lr.float(), batch.hr.float()
    return tasks[batch.task].pair(batch.hr, seed, batch.sample_ids)
