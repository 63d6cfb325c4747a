"""python -m ipt.data.shard DIR OUT --size 1GB [--prefix train]

Packs the training images under DIR into uncompressed tar shards OUT/train-0000.tar, OUT/train-0001.tar, ...
(the WebDataset layout), each at most --size bytes, so that a cluster reads a few large files instead of
millions of small ones. The images are the ones the folder loader trains on (every image file under DIR,
sub-folders included, sorted by path; ipt.data.folders.find_training_images) and go into the shards in
that order. Their bytes are copied as they are, never decoded or re-encoded: the pixels are the same.

Each image is the member KEY.EXT: KEY its path under DIR without the suffix (sub-folders kept, dots in the
file name made "_", since WebDataset's key ends at the name's first dot), EXT its suffix in lower case:
n01440764/n01440764_10026.JPEG -> n01440764/n01440764_10026.jpeg. The members carry no time, owner or
permissions of the files, so the same images always make byte-identical shards.

Nothing is overwritten: OUT must hold no PREFIX-*.tar yet, and each shard appears whole or not at all
(ipt.files.atomic_write). The last line printed is the --data argument that trains on the shards
(ipt.data.tars reads them).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import tarfile
import warnings
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..files import atomic_write
from .errors import DataLayoutError
from .folders import find_training_images

__all__ = ["data_argument", "member_name", "parse_size", "shard_names", "write_shards"]

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([A-Za-z]*)\s*")

BLOCK = tarfile.BLOCKSIZE  # 512: headers are one or more blocks, data is padded to whole blocks
RECORD = tarfile.RECORDSIZE  # 10240: tarfile pads the whole archive to whole records (as tar -b20 does)
_FORMAT = tarfile.PAX_FORMAT  # names of any length and any characters


def parse_size(text: str) -> int:
    """Bytes of a size such as 1GB, 500MB, 64KiB, 1e9 or 123456: decimal units (kB = 1000) and binary ones
    (KiB = 1024)."""
    found = _SIZE.fullmatch(str(text))
    unit = _UNITS.get(found.group(2).lower()) if found else None
    size = int(float(found.group(1)) * unit) if unit is not None else 0
    if size <= 0:
        raise ConfigError(f"--size {text}: not a size above 0 bytes; expected one such as 1GB, 500MB, 64KiB, 1e9 or "
                          "123456")
    return size


def member_name(relative: str) -> str:
    """The tar member of an image at `relative` (a path under DIR, / separated): KEY.EXT as WebDataset reads
    it. Its key is the file name up to the first dot, so the other dots of a name become "_"."""
    folder, _, name = relative.rpartition("/")
    stem, suffix = os.path.splitext(name)
    return f"{folder}/" * bool(folder) + stem.replace(".", "_") + suffix.lower()


def _members(source: Path, images: list[Path]) -> list[str]:
    """The member name of each image; two images of one WebDataset key (x.jpg and x.png, or a.b.jpg and
    a_b.jpg) would be read as one sample, so that is an error naming both."""
    names, by_key = [], {}
    for path in images:
        name = member_name(path.relative_to(source).as_posix())
        key = name.rpartition(".")[0]
        if key in by_key:
            raise DataLayoutError(f"{by_key[key]} and {path} both become the shard key {key!r}: rename one of them")
        by_key[key] = path
        names.append(name)
    return names


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    # Nothing of the file but its name and length, so that shards do not depend on when or by whom the
    # images were copied.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid, info.uname, info.gname = size, 0, 0o644, 0, 0, "", ""
    return info


def _member_bytes(name: str, size: int) -> int:
    """The bytes a member takes in the archive: its header blocks (more than one for a long name) and its
    data padded to whole blocks."""
    header = len(_tarinfo(name, size).tobuf(_FORMAT, "utf-8", "surrogateescape"))
    return header + -(-size // BLOCK) * BLOCK


def _archive_bytes(members: int) -> int:
    """The length of a tar file whose members take `members` bytes: two end blocks, then whole records."""
    return -(-(members + 2 * BLOCK) // RECORD) * RECORD


def _plan(images: list[Path], names: list[str], limit: int) -> list[list[tuple[Path, str, int]]]:
    """The shards, in order, each a list of (image, member name, file size), filled up to `limit` bytes.
    An image that does not fit in a shard alone gets one of its own (a warning says how many)."""
    shards, current, used, alone = [], [], 0, []
    for path, name in zip(images, names):
        try:
            size = path.stat().st_size
        except OSError as error:
            raise DataLayoutError(f"{path}: cannot read this image ({error.strerror or error})") from None
        cost = _member_bytes(name, size)
        if current and _archive_bytes(used + cost) > limit:
            shards.append(current)
            current, used = [], 0
        current.append((path, name, size))
        used += cost
        if _archive_bytes(used) > limit:  # alone and too large: the next image starts another shard
            alone.append(path)
    if current:
        shards.append(current)
    if alone:
        warnings.warn(f"{len(alone)} images do not fit in a shard of {limit:,} bytes even alone, so each has a "
                      f"larger shard of its own (e.g. {alone[0]})", RuntimeWarning, stacklevel=4)
    return shards


def _write_shard(path: Path, members: list[tuple[Path, str, int]], expected: int) -> None:
    def write(tmp: str) -> None:
        with tarfile.open(tmp, "w", format=_FORMAT, encoding="utf-8", copybufsize=1 << 20) as archive:
            for image, name, size in members:
                try:
                    with open(image, "rb") as f:
                        if os.fstat(f.fileno()).st_size != size:
                            raise DataLayoutError(f"{image}: changed while the shards were written; run again")
                        archive.addfile(_tarinfo(name, size), f)
                except OSError as error:
                    raise DataLayoutError(f"{image}: cannot read this image ({error.strerror or error})") from None
        if os.path.getsize(tmp) != expected:  # the plan's arithmetic is what keeps shards under --size
            raise AssertionError(f"{path}: wrote {os.path.getsize(tmp)} bytes, planned {expected}")

    try:
        atomic_write(path, write)
    except OSError as error:
        raise OutputError(f"{path}: cannot write this shard ({error.strerror or error})") from None


def shard_names(out, prefix: str, count: int) -> list[Path]:
    """OUT/PREFIX-0000.tar, ...: four digits, more when there are more than 10,000 shards."""
    digits = max(4, len(str(count - 1)))
    return [Path(out) / f"{prefix}-{i:0{digits}d}.tar" for i in range(count)]


def data_argument(shards: list[Path]) -> str:
    """The --data pattern naming the shards (ipt.data.tars.expand_shard_pattern): OUT/train-{0000..0012}.tar."""
    first, last = shards[0].name, shards[-1].name
    prefix, _, number = first[: -len(".tar")].rpartition("-")
    last_number = last[: -len(".tar")].rpartition("-")[2]
    return str(shards[0].parent / f"{prefix}-{{{number}..{last_number}}}.tar")


def _check_prefix(prefix: str) -> None:
    # The prefix is part of the --data pattern: braces, commas or a folder in it would change what it names.
    if not prefix or any(c in prefix for c in "{},/" + os.sep):
        raise ConfigError(f"--prefix {prefix!r}: expected a plain file name start such as 'train' "
                          "(no braces, commas or slashes)")


def write_shards(source, out, size: int, prefix: str = "train") -> list[Path]:
    """Packs the images under the folder `source` into tar shards OUT/PREFIX-NNNN.tar of at most `size`
    bytes each (see the module's docstring); returns the shards' paths, in order."""
    return [path for path, _ in _write_shards(source, out, size, prefix)]


def _write_shards(source, out, size: int, prefix: str) -> list[tuple[Path, int]]:
    """(shard, image count) of each shard written."""
    source, out = Path(source), Path(out)
    _check_prefix(prefix)
    if size <= 0:
        raise ConfigError(f"size {size}: a shard needs a size above 0 bytes")
    if not source.is_dir():
        raise DataLayoutError(f"{source}: no such folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: not a folder")
    existing = sorted(glob.glob(os.path.join(glob.escape(str(out)), f"{glob.escape(prefix)}-*.tar")))
    if existing:
        raise ConfigError(f"{out} holds {len(existing)} {prefix}-*.tar shards already (e.g. {existing[0]}): remove "
                          "them, or choose another OUT or --prefix")
    images = find_training_images(source)
    shards = _plan(images, _members(source, images), size)
    paths = shard_names(out, prefix, len(shards))
    for path, members in zip(paths, shards):
        _write_shard(path, members, _archive_bytes(sum(_member_bytes(name, n) for _, name, n in members)))
    return [(path, len(members)) for path, members in zip(paths, shards)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ipt.data.shard", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="DIR", help="the folder of training images (searched recursively)")
    parser.add_argument("out", metavar="OUT", help="the folder the shards go to (made if missing)")
    parser.add_argument("--size", required=True,
                        help="the most bytes per shard: 1GB, 500MB, 64KiB, 1e9 or a number of bytes")
    parser.add_argument("--prefix", default="train", help="shard names PREFIX-0000.tar, ... (default %(default)s)")
    args = parser.parse_args(argv)
    written = _write_shards(args.source, args.out, parse_size(args.size), args.prefix)
    paths = [path for path, _ in written]
    total = sum(path.stat().st_size for path in paths)
    print(f"{sum(n for _, n in written)} images in {len(paths)} shards, {total:,} bytes: train with --data "
          f"{shlex.quote(data_argument(paths))}")


if __name__ == "__main__":
    # Imported here, not above: ipt.cli loads the models and trainers, which the data package must not
    # depend on (and `import ipt.data.shard` stays light for the loaders).
    from ..cli import run_main

    run_main(main)
