"""Keeping validation held out: which validation images are also training images.

An image counts as shared when it is the same file (after resolving links) or a file with the very same
bytes under another name (a copy), a member of a tar shard included. Only files of equal size are read and hashed, so the check costs one
stat per training file and nothing more unless sizes match.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .datasets import ImagePairs, TrainingImages
from .folders import find_pairs
from .records import ImageRecord


def training_files(data: TrainingImages | ImagePairs) -> list[Path | ImageRecord]:
    """Every file a training set reads: its images, or both sides of its pairs. A member of a tar shard
    is its ImageRecord (it has no path of its own)."""
    if isinstance(data, ImagePairs):
        return [Path(p) for r in data.records for p in (r.input.path, r.target.path)]
    return [Path(r.path) if r.member is None else r for r in data.records]


def validation_files(folder, scale: int) -> list[Path]:
    """Every file validation on `folder` reads (any layout ipt.evaluate takes)."""
    _, pairs = find_pairs(folder, scale=scale)
    return [Path(p) for pair in pairs for p in (pair.input, pair.target) if p is not None]


def _digest(image: Path | ImageRecord) -> str:
    if isinstance(image, ImageRecord):  # a member of a tar shard
        return hashlib.sha256(image.read_bytes()).hexdigest()
    digest = hashlib.sha256()
    with open(image, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(image: Path | ImageRecord) -> int | None:
    if isinstance(image, ImageRecord):
        return image.size
    try:
        return os.stat(image).st_size
    except OSError:  # gone since the scan: it cannot be shared
        return None


def shared_images(training: list[Path | ImageRecord], validation: list[Path]) -> list[tuple[Path, Path | ImageRecord]]:
    """(validation file, training image) for each validation file that is also a training image (training
    images: training_files())."""
    by_path = {p.resolve(): p for p in training if isinstance(p, Path)}
    shared, rest = [], []
    for v in validation:
        t = by_path.get(v.resolve())
        (shared.append((v, t)) if t is not None else rest.append(v))
    sizes = {}
    for v in rest:
        size = _size(v)
        if size is not None:
            sizes.setdefault(size, []).append(v)
    if not sizes:
        return shared
    digests: dict[Path, str] = {}
    for t in training:
        candidates = sizes.get(_size(t))
        if not candidates:
            continue
        digest = _digest(t)
        for v in candidates:
            if v not in digests:
                digests[v] = _digest(v)
            if digests[v] == digest and all(v != s for s, _ in shared):
                shared.append((v, t))
    return shared
