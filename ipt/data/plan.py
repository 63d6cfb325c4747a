"""What every batch of an epoch holds, decided up front and deterministically.

Both loaders (DALI and the torch DataLoader) take their batches from an EpochPlan, so they deliver
the same images, crops, flips and rotations, and each batch's task, for the same seed:

- order: a permutation of the epoch's slots (each image `repeat` times) from (seed, epoch);
- sharding: slot list padded by wrapping to a multiple of the number of ranks, then rank r takes
  every R-th slot (disjoint shards covering all the data; equal lengths, as DDP needs);
- batches: consecutive runs of a shard; the last partial batch is dropped ("drop"), kept ("partial")
  or completed by wrapping ("fill");
- the task of batch k: drawn from (seed, epoch) alone, so every rank trains the same task together
  (with gradient accumulation, one task per group of `task_group` consecutive batches: one step);
- each sample's crop position, flips and 90-degree rotation: drawn from (seed, epoch, slot) with a
  counter-based hash, so they do not depend on the rank, the worker or the batch a sample lands in, and
  a whole batch is drawn in one vectorised call.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch.distributed as dist

from ..errors import ConfigError

LAST_BATCH_POLICIES = ("drop", "partial", "fill")


@dataclass(frozen=True)
class SampleSpec:
    item: int  # index into the data set's records
    sample_id: int  # unique per (epoch, slot): keys the seeded degradations
    top: int  # crop origin in the (low-resolution, for pairs) image
    left: int
    flip_h: bool
    flip_v: bool
    rot90: int  # counter-clockwise quarter turns, 0-3


@dataclass(frozen=True)
class BatchSpec:
    epoch: int
    index: int  # position of the batch in this rank's epoch
    task: int  # index into the plan's crop sizes (the tasks)
    crop: int  # crop side in the (low-resolution, for pairs) image
    samples: tuple[SampleSpec, ...]


def _rng(*key) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser (Steele, Lea, Flood 2014): a bijective mix of 64-bit words."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def slot_uniforms(seed: int, epoch: int, slots: np.ndarray, draws: int) -> np.ndarray:
    """(len(slots), draws) uniforms in [0, 1), a pure function of (seed, epoch, slot, draw)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps by design
        key = _splitmix64(_splitmix64(np.uint64(seed)) ^ np.uint64(epoch))
        counters = np.asarray(slots, dtype=np.uint64)[:, None] * np.uint64(draws) + np.arange(draws, dtype=np.uint64)
        bits = _splitmix64(_splitmix64(counters ^ key))
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass(frozen=True, eq=False)
class EpochPlan:
    sizes: np.ndarray  # (N, 2) (height, width) of each record, in crop units' image (any (N, 2) sequence given)
    crops: tuple[int, ...]  # crop side per task (the image the anchors refer to)
    batch_size: int
    seed: int
    epoch: int
    rank: int = 0
    world: int = 1
    repeat: int = 1
    last_batch: str = "drop"
    augment: bool = True
    task_group: int = 1  # consecutive batches that share one task draw (the micro-batches of a step)

    def __post_init__(self):
        if self.last_batch not in LAST_BATCH_POLICIES:
            raise ConfigError(f"last_batch must be one of {LAST_BATCH_POLICIES}, got {self.last_batch!r}")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in [0, {self.world})")
        if self.batch_size < 1 or self.repeat < 1 or self.task_group < 1 or not self.crops:
            raise ValueError("batch_size, repeat and task_group must be >= 1 and there must be at least one task")
        # One array, not N Python tuples: an ImageNet plan is 1.28M records (ipt.data.records says why).
        sizes = np.asarray(self.sizes)  # a data set's table of sizes is shared, not copied
        if sizes.dtype.kind != "i":
            sizes = sizes.astype(np.int64)  # () or a list of tuples
        if sizes.size == 0:
            raise ValueError("the data set is empty")
        if sizes.ndim != 2 or sizes.shape[1] != 2:
            raise ValueError(f"sizes must be (height, width) per image, an (N, 2) array; got shape {sizes.shape}")
        object.__setattr__(self, "sizes", sizes)
        small = int(self.sizes.min())
        if small < max(self.crops):
            raise ConfigError(f"an image of {small} px is smaller than the largest crop ({max(self.crops)} px); "
                             "scan the data with min_size set to the crop")

    @property
    def num_slots(self) -> int:
        return len(self.sizes) * self.repeat

    @cached_property
    def shard(self) -> np.ndarray:
        """This rank's slots, in order."""
        order = _rng(self.seed, self.epoch, 0).permutation(self.num_slots)
        pad = (-len(order)) % self.world
        order = np.concatenate([order, order[:pad]])
        return order[self.rank :: self.world]

    def __len__(self) -> int:
        full, rest = divmod(len(self.shard), self.batch_size)
        return full + (rest > 0 and self.last_batch != "drop")

    @cached_property
    def tasks(self) -> np.ndarray:
        """The task of every batch of the epoch."""
        groups = -(-max(len(self), 1) // self.task_group)
        drawn = _rng(self.seed, self.epoch, 1).integers(0, len(self.crops), size=groups)
        return np.repeat(drawn, self.task_group)[: max(len(self), 1)]

    def samples(self, slots: np.ndarray, crop: int) -> tuple[SampleSpec, ...]:
        specs = []
        for slot, u in zip(slots.tolist(), slot_uniforms(self.seed, self.epoch, slots, 5)):
            item = slot % len(self.sizes)
            height, width = self.sizes[item].tolist()
            top, left = int(u[0] * (height - crop + 1)), int(u[1] * (width - crop + 1))
            sample_id = self.epoch * self.num_slots + slot
            if self.augment:
                specs.append(SampleSpec(item, sample_id, top, left, bool(u[2] < 0.5), bool(u[3] < 0.5), int(u[4] * 4)))
            else:
                specs.append(SampleSpec(item, sample_id, top, left, False, False, 0))
        return tuple(specs)

    def batch(self, k: int) -> BatchSpec:
        if not 0 <= k < len(self):
            raise IndexError(f"batch {k} of an epoch of {len(self)} batches")
        start = k * self.batch_size
        slots = self.shard[start : start + self.batch_size]
        if len(slots) < self.batch_size and self.last_batch == "fill":
            slots = np.concatenate([slots, np.resize(self.shard, self.batch_size - len(slots))])
        task = int(self.tasks[k])
        crop = self.crops[task]
        return BatchSpec(self.epoch, k, task, crop, self.samples(slots, crop))


def distributed_shard() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when it is initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
