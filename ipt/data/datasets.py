"""Training data sets as checked lists of images: clean images for pretraining, pairs for fine-tuning."""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .folders import DataLayoutError, check_pair_size, find_pairs, find_training_images
from .records import ImageRecord, ImageTable
from .samples import sample_images_dir
from .scan import release_free_memory, scan_images, scan_shards
from .tars import expand_shard_pattern, is_shard_pattern


@dataclass(frozen=True)
class TrainingImages:
    """Clean images (files or members of tar shards); every crop is taken from one image. The records are
    kept as an ImageTable (a sequence of ImageRecords given is turned into one)."""

    records: ImageTable
    source: str

    def __post_init__(self):
        if not isinstance(self.records, ImageTable):
            object.__setattr__(self, "records", ImageTable(self.records))

    @property
    def sizes(self) -> np.ndarray:
        """(N, 2) (height, width) of the images."""
        return self.records.sizes

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> str:
        """"N images, sha256 D": equal for data sets of the same images, in the same order, at the same sizes."""
        return f"{len(self):,} images, sha256 {self.records.digest()[:16]}"


@dataclass(frozen=True)
class PairRecord:
    name: str
    input: ImageRecord
    target: ImageRecord


@dataclass(frozen=True)
class ImagePairs:
    """(degraded input, clean target) pairs; targets are `scale` times the inputs' size (SR targets up to
    scale - 1 pixels more per side)."""

    records: tuple[PairRecord, ...]
    scale: int
    source: str

    @property
    def sizes(self) -> tuple[tuple[int, int], ...]:
        """Sizes of the inputs: crops are placed in input coordinates."""
        return tuple((r.input.height, r.input.width) for r in self.records)

    def __len__(self) -> int:
        return len(self.records)

    def fingerprint(self) -> str:
        """"N pairs, sha256 D": equal for data sets of the same pairs, in the same order, at the same sizes."""
        digest = hashlib.sha256()
        for r in self.records:
            for field in (r.name, r.input.path, r.input.width, r.input.height, r.target.path, r.target.width,
                          r.target.height):
                digest.update(f"{field}\0".encode("utf-8", "surrogateescape"))
        return f"{len(self):,} pairs of scale {self.scale}, sha256 {digest.hexdigest()[:16]}"


def load_training_images(source=None, min_size: int = 0, cache="default", full_check: bool = False) -> TrainingImages:
    """Finds and checks the images of a pretraining set: a folder (class sub-folders fine), a file list,
    or tar shards ('train-{0000..1023}.tar': ipt.data.tars); default the built-in sample photographs.
    Unusable images are skipped with one counted warning; no usable image at all is an error."""
    if source is not None and is_shard_pattern(source):
        report = scan_shards(expand_shard_pattern(str(source)), min_size=min_size, cache=cache, full=full_check)
    else:
        source = Path(source) if source is not None else sample_images_dir()
        report = scan_images(find_training_images(source), min_size=min_size, cache=cache, full=full_check)
    release_free_memory()  # what the scan of a large data set made and dropped
    report.warn(f"images of {source}")
    if not report.records:
        raise DataLayoutError(f"{source}: none of its images is usable ({dict(report.skipped)})")
    return TrainingImages(report.records, str(source))


def load_task_data(source, task, crop: int, cache="default") -> tuple[str, TrainingImages | ImagePairs]:
    """(layout, data) of a training folder for one task: its pairs (input/ + target/, HR/ + LR_bicubic/X{s}/)
    if it holds them, else its clean images, to be degraded on the fly by the task. crop: the side of one
    model input; clean images must hold the task's clean crop (task.hr_crop_for(crop): crop x scale, plus
    a deblurring crop's margin), pairs' inputs one crop. A task that cannot synthesise its inputs (real-pair
    tasks: denoise, derain) needs pairs."""
    layout = "clean" if is_shard_pattern(source) else find_pairs(source, scale=task.scale)[0]  # shards: clean images
    if layout == "clean":
        if not task.synthetic:
            raise DataLayoutError(f"{source}: holds clean images only, but task {task.name!r} trains on real pairs "
                                  "(input/ + target/ folders)")
        return layout, load_training_images(source, min_size=task.hr_crop_for(crop), cache=cache)
    return layout, load_image_pairs(source, scale=task.scale, min_size=crop, cache=cache)


def load_image_pairs(root, scale: int = 1, min_size: int = 0, cache="default", full_check: bool = False) -> ImagePairs:
    """Finds and checks (input, target) pairs: input/ + target/ or HR/ + LR_bicubic/X{scale}/.
    A missing partner, two images of one name, or a target that is not `scale` times its input
    (folders.check_pair_size) is an error; unusable or too small pairs are skipped with one counted warning."""
    layout, pairs = find_pairs(root, scale)
    if layout == "clean":
        raise DataLayoutError(f"{root}: expected pairs (input/ + target/, or HR/ + LR_bicubic/X{scale}/), "
                              "found only clean images")
    inputs = scan_images([p.input for p in pairs], min_size=min_size, cache=cache, full=full_check)
    targets = scan_images([p.target for p in pairs], min_size=min_size * scale, cache=cache, full=full_check)
    by_path = {r.path: r for r in inputs.records}, {r.path: r for r in targets.records}
    records, dropped = [], 0
    for pair in pairs:
        i, t = by_path[0].get(str(pair.input)), by_path[1].get(str(pair.target))
        if i is None or t is None:
            dropped += 1
            continue
        check_pair_size(pair, (i.width, i.height), (t.width, t.height), scale)
        records.append(PairRecord(pair.name, i, t))
    if dropped:
        problems = {**{f"inputs {k}": v for k, v in inputs.skipped.items()}, **{f"targets {k}": v for k, v in targets.skipped.items()}}
        warnings.warn(f"{root}: skipped {dropped} of {len(pairs)} pairs ({problems})", RuntimeWarning, stacklevel=2)
    if not records:
        raise DataLayoutError(f"{root}: no usable pairs")
    return ImagePairs(tuple(records), scale, str(root))
