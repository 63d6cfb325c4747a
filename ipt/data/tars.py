"""Reading training images out of tar shards (the WebDataset layout) without unpacking them.

Clusters keep millions of small image files off their shared file systems by packing them into large tar
archives, "shards", named by a brace pattern:

    paths = expand_shard_pattern("imagenet/train-{0000..1023}.tar")    # every shard, in order; all must exist
    members = index_tar(paths[0])                                      # [TarMember(name, offset, size), ...]
    data = read_member(paths[0], members[0].offset, members[0].size)   # the image file's bytes, as packed

An archive is indexed once, header by header (the image data is never read), and a member is then one
positioned read (os.pread) at its data's offset: no extraction, no temporary files, and any number of
readers (DataLoader workers, DALI threads) may share a shard. So shards must be plain, uncompressed tar
files: a compressed stream has no offsets to read at, and is refused. python -m ipt.data.shard writes
them from a folder of images.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..files import atomic_write
from .errors import DataLayoutError
from .images import IMAGE_SUFFIXES

__all__ = ["TarMember", "expand_shard_pattern", "index_tar", "is_shard_pattern", "read_member"]

# A typo such as {0000..99999999} would otherwise build a list of a hundred million paths before saying so.
MAX_SHARDS = 1_000_000

_RANGE = re.compile(r"(\d+)\.\.(\d+)")


@dataclass(frozen=True)
class TarMember:
    name: str  # the member's name in the archive, e.g. n01440764/n01440764_10026.jpeg
    offset: int  # where its data starts in the tar file (past its headers)
    size: int  # its data's length in bytes


# ---- shard patterns ----------------------------------------------------------------------------------


def is_shard_pattern(source) -> bool:
    """Whether a --data source names tar shards (a path or brace pattern ending with .tar), rather than a
    folder or a file list."""
    return isinstance(source, (str, os.PathLike)) and os.fspath(source).lower().endswith(".tar")


def _brace_choices(pattern: str, body: str) -> list[str]:
    """The strings one {...} stands for: a numeric range 0000..1023 (zero-padded to the lower bound's width, as
    WebDataset's brace expansion does) or a list a,b,c."""
    if ".." in body:
        found = _RANGE.fullmatch(body)
        if found is None:
            raise DataLayoutError(f"{pattern}: {{{body}}} is not a range of two whole numbers such as {{0000..0127}}")
        low, high = found.groups()
        first, last = int(low), int(high)
        if last < first:
            raise DataLayoutError(f"{pattern}: the range {{{body}}} ends below its start")
        if last - first >= MAX_SHARDS:
            raise DataLayoutError(f"{pattern}: the range {{{body}}} names {last - first + 1:,} shards, more than the "
                                  f"{MAX_SHARDS:,} a data set may have")
        return [f"{i:0{len(low)}d}" for i in range(first, last + 1)]
    if "," not in body:  # {} or {x}: no list and no range, most likely a typo
        raise DataLayoutError(f"{pattern}: {{{body}}} is neither a range {{0000..0127}} nor a list {{a,b,c}}")
    return body.split(",")


def _split_braces(pattern: str) -> list[list[str]]:
    """The pattern as a list of parts, each the strings it may stand for: literal text is one choice."""
    parts, start = [], 0
    while True:
        opening, closing = pattern.find("{", start), pattern.find("}", start)
        if opening < 0 and closing < 0:
            parts.append([pattern[start:]])
            return parts
        if opening < 0 or closing < opening or "{" in pattern[opening + 1 : closing]:
            raise DataLayoutError(f"{pattern}: unbalanced or nested braces (one level of {{...}} at a time)")
        parts.append([pattern[start:opening]])
        parts.append(_brace_choices(pattern, pattern[opening + 1 : closing]))
        start = closing + 1


def expand_shard_pattern(pattern: str) -> list[Path]:
    """The shard files a brace pattern names, in order, as the shell and WebDataset expand it:
    train-{0000..1023}.tar (ranges keep the lower bound's zero padding), {train,extra}-0.tar (lists), and
    several braces multiply (the first varies slowest). Every file must exist: a missing shard is an error,
    never a smaller data set."""
    pattern = os.fspath(pattern)
    parts = _split_braces(pattern)
    count = 1
    for choices in parts:
        count *= len(choices)
    if count > MAX_SHARDS:
        raise DataLayoutError(f"{pattern}: names {count:,} shards, more than the {MAX_SHARDS:,} a data set may have")
    paths = [Path("".join(choice)) for choice in itertools.product(*parts)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataLayoutError(f"{pattern}: {len(missing)} of the {len(paths)} shards it names do not exist "
                              f"(e.g. {missing[:3]})")
    return paths


# ---- one archive -------------------------------------------------------------------------------------

# Compressed streams, by their first bytes; a tar says "ustar" at byte 257 instead (all but pre-POSIX ones).
_COMPRESSED = ((b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
               (b"\x04\x22\x4d\x18", "lz4"), (b"\x1f\x9d", "compress (.Z)"))
_BZIP2 = re.compile(rb"BZh[1-9](\x31\x41\x59\x26\x53\x59|\x17\x72\x45\x38\x50\x90)", re.DOTALL)


def _compression(head: bytes) -> str | None:
    if head[257:262] == b"ustar":
        return None
    if _BZIP2.match(head):
        return "bzip2"
    return next((kind for magic, kind in _COMPRESSED if head.startswith(magic)), None)


def _is_image(info: tarfile.TarInfo) -> bool:
    return info.isreg() and PurePosixPath(info.name).suffix.lower() in IMAGE_SUFFIXES


def index_tar(path, cache_dir: Path | None = None) -> list[TarMember]:
    """The image members of one uncompressed tar archive, in archive order, with where their data lies.

    Regular files with an image suffix (IMAGE_SUFFIXES, any case) only: a shard's .json, .cls, .txt
    members are left out. Long names (GNU longname or pax headers) are read as tar writes them. A damaged
    archive -- cut short, or a header that does not parse -- keeps the images whose data the file holds
    whole, and says what was left out in one warning; a file that is not a tar archive at all, or is a
    compressed one, is a DataLayoutError.

    cache_dir: a folder where the index of a whole archive is kept, keyed by the archive's path, size and
    modification time, so that later runs (every restart of a job) read one small file instead of every
    header -- for ImageNet's 1.28M members, a second instead of a minute, more on a cluster file system."""
    path = Path(path)
    try:
        f = open(path, "rb")
    except OSError as error:
        raise DataLayoutError(f"{path}: cannot read this shard ({error.strerror or error})") from None
    with f:
        stat = os.fstat(f.fileno())
        file_size = stat.st_size
        index = _IndexCache(path, (stat.st_size, stat.st_mtime_ns), cache_dir)
        known = index.load()
        if known is not None:
            return known
        kind = _compression(os.pread(f.fileno(), 512, 0))
        if kind is not None:
            raise DataLayoutError(f"{path}: a {kind}-compressed tar; images are read at their offsets in the file, "
                                  "which a compressed stream does not have: write uncompressed shards "
                                  "(python -m ipt.data.shard, or tar without z/j/J)")
        try:
            archive = tarfile.open(fileobj=f, mode="r:")  # reads the first header
        except (tarfile.TarError, ValueError, UnicodeError) as error:
            raise DataLayoutError(f"{path}: not a tar archive ({error})") from None
        infos, damaged = [], False
        with archive:
            while True:
                try:
                    info = archive.next()
                except (tarfile.TarError, ValueError, UnicodeError):  # a header past the first one is damaged
                    damaged = True
                    break
                if info is None:
                    break
                if _is_image(info) and not info.issparse():  # a sparse file's data is not in one piece
                    infos.append(info)
            end = archive.offset  # where the header after the last member starts (or would)
        # A whole archive ends with a zero block; tarfile stops silently at a header that does not parse.
        ended = not damaged and os.pread(f.fileno(), 512, end) == tarfile.NUL * 512
    members = [TarMember(i.name, i.offset_data, i.size) for i in infos if i.offset_data + i.size <= file_size]
    if not ended or len(members) < len(infos):
        problems = []
        if len(members) < len(infos):
            problems.append(f"{len(infos) - len(members)} image members cut off by the file's end at byte "
                            f"{file_size:,}")
        if end + 512 > file_size:
            problems.append("no end-of-archive marker: the file is cut short")
        elif not ended:
            problems.append(f"a header that does not parse at byte {end:,}: the {file_size - end:,} bytes from there "
                            "on are left out")
        warnings.warn(f"{path}: a damaged tar archive ({'; '.join(problems)}); kept the {len(members)} image members "
                      "it holds whole", RuntimeWarning, stacklevel=2)
    else:  # a damaged archive is indexed again every time, so its warning is not lost
        index.save(members)
    return members


class _IndexCache:
    """The saved index of one archive: CACHE_DIR/<hash of its path>.idx, a header line with the archive's
    size and modification time, a line per member (offset, size, name; tab-separated) and an end line
    with the count. A file that does not match the archive or is incomplete is ignored (and replaced);
    one that cannot be written costs only the next run's indexing."""

    HEADER = "# ipt shard index v1"
    END = "# end"

    def __init__(self, archive: Path, stamp: tuple[int, int], cache_dir: Path | None):
        self.stamp = stamp
        key = hashlib.sha1(os.fsencode(archive.resolve())).hexdigest()[:20]
        self.path = Path(cache_dir) / f"{key}.idx" if cache_dir is not None else None

    def load(self) -> list[TarMember] | None:
        if self.path is None:
            return None
        try:
            lines = self.path.read_bytes().decode("utf-8", "surrogateescape").split("\n")
        except OSError:
            return None
        if len(lines) < 3 or lines[0] != f"{self.HEADER}\t{self.stamp[0]}\t{self.stamp[1]}" or lines[-1] != "":
            return None
        if lines[-2] != f"{self.END}\t{len(lines) - 3}":
            return None
        try:
            return [TarMember(name, int(offset), int(size))
                    for offset, size, name in (line.split("\t", 2) for line in lines[1:-2])]
        except ValueError:
            return None

    def save(self, members: list[TarMember]) -> None:
        if self.path is None or any("\t" in m.name or "\n" in m.name for m in members):
            return
        rows = "".join(f"{m.offset}\t{m.size}\t{m.name}\n" for m in members)
        text = f"{self.HEADER}\t{self.stamp[0]}\t{self.stamp[1]}\n{rows}{self.END}\t{len(members)}\n"
        try:
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(text.encode("utf-8", "surrogateescape")))
        except OSError:
            pass


def read_member(path, offset: int, size: int) -> bytes:
    """The `size` bytes at `offset` of a tar file (a TarMember's data), by positioned reads: no seek, so
    threads may share one open file. path: the file, or a descriptor open on it (left open). A file that
    holds fewer bytes there (cut short since it was indexed) raises OSError."""
    fd = path if isinstance(path, int) else os.open(path, os.O_RDONLY)
    try:
        chunks, got = [], 0
        while got < size:  # a read may return less than asked (signals, reads over 2 GiB, network file systems)
            chunk = os.pread(fd, size - got, offset + got)
            if not chunk:
                raise OSError(f"{path}: holds only {got} of the {size} bytes at byte {offset} (cut short since it "
                              "was indexed?)")
            chunks.append(chunk)
            got += len(chunk)
    finally:
        if not isinstance(path, int):
            os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
