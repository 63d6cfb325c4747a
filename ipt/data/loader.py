"""The torch DataLoader path: the same batches as the DALI pipelines (ipt.pipelines), decoded with
Pillow in worker processes. Used when DALI is missing or by choice; the trainer takes either.

A file that cannot be used while loading (gone, damaged, or of another size since the scan) is skipped,
with a counted warning, in both loaders; a batch left with no sample is dropped and the epoch goes on with the
next batch of the plan. Batches keep their plan index, so resuming at `batch.index + 1` is right.
"""

from __future__ import annotations

import abc
import functools
import os
import warnings
from typing import Iterator, Sequence

import numpy as np
import torch

from .batch import Batch, augment, crop
from .datasets import ImagePairs, TrainingImages
from .images import UnreadableImageError, read_image
from .plan import EpochPlan, distributed_shard
from .records import ImageRecord
from ..preemption import register_worker_cleanup, start_worker, stop_signals_blocked


def decode_usable(record: ImageRecord, data: bytes | None = None) -> np.ndarray | None:
    """The pixels of a scanned image (data: its bytes, read already), or None if it can no longer be used:
    gone, damaged, or replaced by an image of another size than the scan found (its crops would not fit).
    Both loaders judge an image by this."""
    try:
        image = read_image(record.name, record.read_bytes() if data is None else data)
    except (OSError, UnreadableImageError):  # OSError: the file or its archive is gone, or cut short
        return None
    return image if image.shape[:2] == (record.height, record.width) else None


class PlannedBatches(torch.utils.data.Dataset):
    """Batch k of an epoch plan, decoded (one batch per worker task)."""

    def __init__(self, data, plan: EpochPlan, start: int, skip: frozenset):
        self.data, self.plan, self.start, self.skip = data, plan, start, skip

    def __len__(self) -> int:
        return len(self.plan) - self.start

    def _read(self, record, top, left, size, spec, skipped):
        image = decode_usable(record)
        if image is None:
            skipped.append(record.name)
            return None
        return augment(crop(image, top, left, size), spec)

    def __getitem__(self, i: int) -> dict:
        """The decoded batch; "hr" None when no sample of it could be read (the loader drops it)."""
        spec = self.plan.batch(self.start + i)
        hr, lr, ids, skipped = [], [], [], []
        for s in spec.samples:
            record = self.data.records[s.item]
            if isinstance(self.data, ImagePairs):
                if record.input.name in self.skip or record.target.name in self.skip:
                    continue
                scale = self.data.scale
                low = self._read(record.input, s.top, s.left, spec.crop, s, skipped)
                high = self._read(record.target, s.top * scale, s.left * scale, spec.crop * scale, s, skipped)
                if low is None or high is None:
                    continue
                lr.append(low)
                hr.append(high)
            else:
                if record.name in self.skip:
                    continue
                image = self._read(record, s.top, s.left, spec.crop, s, skipped)
                if image is None:
                    continue
                hr.append(image)
            ids.append(s.sample_id)

        def stack(images):  # (B, 3, H, W) in channels-last memory: the decoded pixels, not copied again
            return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2) if images else None

        return {"hr": stack(hr), "lr": stack(lr), "task": spec.task, "index": spec.index,
                "sample_ids": torch.tensor(ids, dtype=torch.int64), "skipped": skipped}


class PlannedLoader(abc.ABC):
    """What both loaders share: the data, the epoch plans, the rank's shard, the files found bad.

    crops: crop side per task -- for clean images the HR crop (task.hr_crop_for(patch_size)); for pairs the
    input crop (patch_size).
    workers: DataLoader worker processes (torch) or DALI threads.
    """

    backend = ""

    def __init__(self, data: TrainingImages | ImagePairs, crops: Sequence[int], batch_size: int, seed: int = 0, *,
                 workers: int = 2, device="cpu", repeat: int = 1, last_batch: str = "drop", augment: bool = True,
                 rank: int | None = None, world: int | None = None, task_group: int = 1):
        if rank is None or world is None:
            rank, world = distributed_shard()
        self.data, self.crops, self.batch_size, self.seed = data, tuple(crops), batch_size, seed
        self.workers, self.device = workers, torch.device(device)
        self.repeat, self.last_batch, self.augment, self.task_group = repeat, last_batch, augment, task_group
        self.rank, self.world = rank, world
        self.bad_files: set[str] = set()  # names (ImageRecord.name) found unusable while loading; skipped from then on
        self.plan(0)  # validates the arguments now, before any training starts

    def plan(self, epoch: int) -> EpochPlan:
        return EpochPlan(self.data.sizes, self.crops, self.batch_size, self.seed, epoch, self.rank, self.world,
                         self.repeat, self.last_batch, self.augment, self.task_group)

    def __len__(self) -> int:
        return len(self.plan(0))

    @abc.abstractmethod
    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, from batch `start` on (to resume mid-epoch)."""

    def _unusable(self, epoch: int, index: int, files: list[str], dropped: bool, stacklevel: int = 3) -> None:
        """Remembers the files of batch `index` found unusable (they are skipped from now on) and says so in
        one counted warning; dropped: no sample of the batch was left, so it is not yielded.
        stacklevel: the warning points at the caller's loop over the epoch."""
        files = list(dict.fromkeys(files))  # a file sampled twice in the batch is one file
        self.bad_files.update(files)
        where, why = f"batch {index} of epoch {epoch}", "gone, damaged or of another size since the scan"
        if not dropped:
            message = f"skipped {len(files)} images of {where} ({why}; e.g. {files[0]})"
        elif files:
            message = f"dropped {where}: none of its images is usable ({len(files)} {why}; e.g. {files[0]})"
        else:
            message = f"dropped {where}: all its images were found unusable before"
        warnings.warn(f"{message}; {len(self.bad_files)} unusable so far", RuntimeWarning, stacklevel=stacklevel)


class TorchLoader(PlannedLoader):
    """Batches of random crops (flips and quarter turns when augmenting) from TrainingImages or
    ImagePairs, sharded by rank, deterministic in the seed; Pillow in DataLoader worker processes."""

    backend = "torch"

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of one epoch, from batch `start` on (to resume mid-epoch)."""
        dataset = PlannedBatches(self.data, self.plan(epoch), start, frozenset(self.bad_files))
        register_worker_cleanup()  # workers ignore SIGTERM: the exit must not wait for them
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=self.workers,
            pin_memory=self.device.type == "cuda", prefetch_factor=4 if self.workers else None,
            # A scheduler's SIGTERM to the group is the trainer's to handle; a killed trainer takes its workers along.
            worker_init_fn=functools.partial(start_worker, parent=os.getpid()),
        )
        with stop_signals_blocked():  # the workers start here
            items = iter(loader)
        for item in items:
            dropped = item["hr"] is None
            if item["skipped"] or dropped:
                self._unusable(epoch, item["index"], item["skipped"], dropped)
            if dropped:
                continue
            batch = Batch(item["hr"], item["task"], item["sample_ids"], epoch, item["index"], item["lr"], item["skipped"])
            yield batch.to(self.device) if self.device.type != "cpu" else batch
