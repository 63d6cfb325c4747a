"""The images of a data set as the scan found them: one ImageRecord per usable image, a file or a member
of a tar shard, and ImageTable, the compact form a data set keeps them in.

Why a table: a data set of ImageNet's size holds 1.28M records. As Python objects (a dataclass, its path
string, its numbers) that is about 400 MB per rank, and worse, DataLoader workers forked from the rank
copy those pages one by one as they touch the objects (reference counts are writes), until each worker
holds its own copy. The table keeps every field in a few flat buffers -- the paths as one bytes blob
less their common folder, the sizes and offsets as numpy arrays -- 36 bytes per image plus its path
under that folder (about 65 bytes for an ImageNet image), which forked workers share for good. Records
are made on the fly when one is indexed.
"""

from __future__ import annotations

import hashlib
import operator
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence, overload

import numpy as np

from .tars import read_member

_ENCODING = ("utf-8", "surrogateescape")  # paths as the file system has them, even where not valid UTF-8


@dataclass(frozen=True)
class ImageRecord:
    """A usable image: a file, or the member `member` of the tar archive `path`, whose bytes lie at
    [offset, offset + size) in it (read where they are, never unpacked)."""

    path: str  # the image file; for a member of a tar shard, the archive
    width: int
    height: int
    member: str | None = None  # the member's name in the archive
    offset: int = 0
    size: int = -1  # the member's byte count (-1 for a file: its size on disk when read)

    @property
    def name(self) -> str:
        """What messages and the set of unusable images call it: the path, or ARCHIVE:MEMBER."""
        return self.path if self.member is None else f"{self.path}:{self.member}"

    def read_bytes(self) -> bytes:
        """The encoded image. OSError if the file (or the archive) is gone or shorter than indexed."""
        if self.member is None:
            return Path(self.path).read_bytes()
        return read_member(self.path, self.offset, self.size)


def _common_folder(names: list[str]) -> str:
    """The longest common prefix of the names that ends at a path separator ('' if none)."""
    if not names:
        return ""
    prefix = os.path.commonprefix([min(names), max(names)])  # of the extremes: of all, in sorted order
    return prefix[: prefix.rfind("/") + 1]


class ImageTable(Sequence[ImageRecord]):
    """An immutable sequence of ImageRecords, stored column-wise (see the module's docstring).

    Equal tables hold equal records in the same order; a table also equals a list or tuple of the same
    records. `sizes` is the (N, 2) array of (height, width) that epoch plans take."""

    def __init__(self, records: Iterable[ImageRecord] = ()):
        records = list(records)
        archives = sorted({r.path for r in records if r.member is not None})
        archive_index = {a: i for i, a in enumerate(archives)}
        names = [r.path if r.member is None else r.member for r in records]
        self._prefix = _common_folder([n for n, r in zip(names, records) if r.member is None])
        cut = len(self._prefix)
        encoded = [(n[cut:] if r.member is None else n).encode(*_ENCODING) for n, r in zip(names, records)]
        self._blob = b"".join(encoded)
        self._ends = np.cumsum([len(e) for e in encoded], dtype=np.int64)
        self._archives = tuple(archives)
        self._archive = np.array([-1 if r.member is None else archive_index[r.path] for r in records], np.int32)
        self._hw = np.array([(r.height, r.width) for r in records], np.int32).reshape(-1, 2)
        self._offset = np.array([r.offset for r in records], np.int64)
        self._size = np.array([r.size for r in records], np.int64)
        for array in (self._ends, self._archive, self._hw, self._offset, self._size):
            array.flags.writeable = False

    def __len__(self) -> int:
        return len(self._hw)

    def _record(self, i: int) -> ImageRecord:
        start = int(self._ends[i - 1]) if i else 0
        text = self._blob[start : int(self._ends[i])].decode(*_ENCODING)
        archive = int(self._archive[i])
        height, width = (int(v) for v in self._hw[i])
        if archive < 0:
            return ImageRecord(self._prefix + text, width, height)
        return ImageRecord(self._archives[archive], width, height, text, int(self._offset[i]), int(self._size[i]))

    @overload
    def __getitem__(self, i: int) -> ImageRecord: ...
    @overload
    def __getitem__(self, i: slice) -> "ImageTable": ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return ImageTable(self._record(k) for k in range(*i.indices(len(self))))
        i = operator.index(i)  # an int or a numpy integer; not a float
        if not -len(self) <= i < len(self):
            raise IndexError(f"record {i} of a table of {len(self)}")
        return self._record(i % len(self))

    def __iter__(self) -> Iterator[ImageRecord]:
        return (self._record(i) for i in range(len(self)))

    @property
    def sizes(self) -> np.ndarray:
        """(N, 2) int32 array of (height, width)."""
        return self._hw

    @property
    def nbytes(self) -> int:
        """The memory the table's buffers take."""
        arrays = (self._ends, self._archive, self._hw, self._offset, self._size)
        return len(self._blob) + sum(a.nbytes for a in arrays)

    def digest(self) -> str:
        """A hash of every record: equal for equal tables (which processes compare without sending them)."""
        digest = hashlib.sha256("\0".join((self._prefix, *self._archives)).encode(*_ENCODING))
        digest.update(self._blob)
        for array in (self._ends, self._archive, self._hw, self._offset, self._size):
            digest.update(array.tobytes())
        return digest.hexdigest()

    def _buffers(self) -> tuple:
        return (self._prefix, self._archives, self._blob, self._ends, self._archive, self._hw, self._offset, self._size)

    def __eq__(self, other) -> bool:
        if isinstance(other, ImageTable):
            if self._prefix != other._prefix:  # the same records may be stored under another common folder
                return list(self) == list(other)
            return all(a == b if not isinstance(a, np.ndarray) else np.array_equal(a, b)
                       for a, b in zip(self._buffers(), other._buffers()))
        if isinstance(other, (list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __hash__(self) -> int:  # a data set holding a table stays hashable, as with a tuple of records
        return hash(self.digest())

    def __repr__(self) -> str:
        return f"ImageTable({len(self)} images, {self.nbytes:,} bytes)"
