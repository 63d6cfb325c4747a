"""Checking a data set before training: which images are usable, and how large they are.

A corrupt file must never crash an epoch, and DALI's decoders abort the whole pipeline on one. So every
image -- a file, or a member of a tar shard (ipt.data.tars) -- is checked once: its header must parse,
JPEG and PNG images must end with their end marker (the usual damage is truncation), other formats are
decoded in full, and images smaller than the crop are set aside, as are images of more pixels than the
toolkit reads (decompression bombs; the limit is ipt.data.images.max_image_pixels, set by
$IPT_MAX_IMAGE_PIXELS). Unusable images are skipped with one counted warning. Results are cached per
image (path, size, modification time; for a member, its archive's), so a data set is checked once, not
every run; every process of a job may scan and save the same cache at once (see ScanCache), and in a
job the scan runs once per node (ipt.train.distributed.Distributed.once_per_node).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import io
import os
import sys
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import ConfigError
from ..files import atomic_write
from .errors import DataLayoutError
from .images import ImageTooLargeError, max_image_pixels, open_image
from .records import ImageRecord, ImageTable
from .samples import default_cache_dir
from .tars import TarMember, index_tar

__all__ = ["ImageRecord", "ImageTable", "ScanCache", "ScanReport", "check_image", "scan_images", "scan_shards"]


@dataclass
class ScanReport:
    records: ImageTable
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> a few paths

    def warn(self, what: str = "images") -> None:
        if self.skipped:
            parts = [f"{n} {reason} (e.g. {self.examples[reason][0]})" for reason, n in sorted(self.skipped.items())]
            warnings.warn(f"skipped {sum(self.skipped.values())} of {len(self.records) + sum(self.skipped.values())} "
                          f"{what}: " + "; ".join(parts), RuntimeWarning, stacklevel=3)


class _Region(io.RawIOBase):
    """Bytes [offset, offset + size) of an open file, read as a file of their own: a tar member, checked
    where it lies. Reads go through os.pread, so many regions may share one descriptor."""

    def __init__(self, fd: int, offset: int, size: int):
        self.fd, self.offset, self.size, self.position = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.position, os.SEEK_END: self.size}[whence]
        self.position = max(0, base + position)
        return self.position

    def readinto(self, buffer) -> int:
        wanted = max(0, min(len(buffer), self.size - self.position))
        data = os.pread(self.fd, wanted, self.offset + self.position) if wanted else b""
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def _ends_with_marker(source, marker: bytes, window: int) -> bool:
    """Whether the last `window` bytes of a file (a path, or a file object) hold `marker`."""
    with open(source, "rb") if isinstance(source, (str, os.PathLike)) else source as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - window))
        return marker in f.read()


def check_image(path, full: bool = False, source=None) -> tuple[str, int, int]:
    """(status, width, height); status 'ok', 'unreadable', 'truncated' or TOO_LARGE (more pixels than
    ipt.data.images.max_image_pixels). source: a seekable file object to read instead of the file `path`
    (which then only names it)."""
    # No warnings.catch_warnings() here: this runs in a thread pool, and catch_warnings swaps the
    # process-wide filter list, so concurrent use can leave warnings silenced for the whole process.
    try:
        with open_image(path, source) as img:  # refuses a decompression bomb before decoding it
            width, height, fmt = img.width, img.height, img.format
            if full or fmt not in ("JPEG", "PNG"):
                img.load()
    except (ImageTooLargeError, Image.DecompressionBombError):  # the latter: a frame larger than the image
        return TOO_LARGE, 0, 0
    except ConfigError:  # a bad IPT_MAX_IMAGE_PIXELS: the user's setting to fix, not this file's fault
        raise
    except Exception:  # PIL raises many kinds for broken files; all mean "cannot use it"
        return "unreadable", 0, 0
    # Entropy-coded JPEG data cannot contain FF D9 (FF bytes are stuffed), and IEND closes every PNG.
    end = path if source is None else source
    if fmt == "JPEG" and not _ends_with_marker(end, b"\xff\xd9", 4096):
        return "truncated", width, height
    if fmt == "PNG" and not _ends_with_marker(end, b"IEND", 64):
        return "truncated", width, height
    return "ok", width, height


STATUSES = ("ok", "unreadable", "truncated")  # what check_image can say of a file itself, and the cache holds
# Not a property of the file but of the limit, which $IPT_MAX_IMAGE_PIXELS may change between runs: never
# cached, and applied to the sizes of cached files too.
TOO_LARGE = "too large"


class ScanCache:
    """The results of earlier scans, one file per data folder, shared by every process that scans it.

    Many processes may read and write one cache at once -- the ranks of a job, on one machine or on
    many that share the folder over NFS. Each writes a whole new file under a unique temporary name and
    renames it into place (ipt.files.atomic_write), so a reader sees one complete cache or another. The
    ranks of a job scan the same files, so whichever rename lands last loses nothing (scans of other
    files of the folder at the same moment may drop each other's new entries: a rescan). The cache only saves
    time: a file that cannot be read, is torn (no end line with the right count) or was written by
    something else is ignored and rewritten, and one that cannot be written is a warning.

    The format: a header line, then per file a tab-separated line (path, size, mtime_ns, status, width,
    height), then an end line with the count. Paths holding a tab or a line break are not cached.
    """

    HEADER = "# ipt scan cache v2"
    END = "# end"

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, tuple] = {}
        self.changed = False  # whether the file on disk should be (re)written
        if path is not None:
            loaded = self._read(path)
            self.changed = loaded is None
            self.entries = loaded or {}

    @classmethod
    def _read(cls, path: Path) -> dict[str, tuple] | None:
        """The entries of a complete cache file of ours, else None."""
        try:
            text = path.read_bytes().decode("utf-8", errors="surrogateescape")
        except OSError:  # missing, unreadable, a folder...
            return None
        lines = text.split("\n")
        if len(lines) < 3 or lines[0] != cls.HEADER or lines[-1] != "":
            return None
        footer = lines[-2].split("\t")
        body = lines[1:-2]
        if len(footer) != 2 or footer[0] != cls.END or footer[1] != str(len(body)):
            return None
        entries = {}
        try:
            for line in body:
                path_, size, mtime, status, width, height = line.split("\t")
                if status not in STATUSES:
                    return None
                entries[path_] = (int(size), int(mtime), status, int(width), int(height))
        except ValueError:  # a wrong field count or a number that is not one
            return None
        return entries

    def update(self, key: str, entry: tuple) -> None:
        if self.entries.get(key) != entry:
            self.entries[key] = entry
            self.changed = True

    def save(self) -> None:
        """Writes the cache if it changed; a failure (read-only folder, full disk) only costs a rescan."""
        if self.path is None or not self.changed:
            return
        rows = [f"{p}\t{s}\t{m}\t{st}\t{w}\t{h}\n" for p, (s, m, st, w, h) in self.entries.items()
                if "\t" not in p and "\n" not in p]
        data = "".join([f"{self.HEADER}\n", *rows, f"{self.END}\t{len(rows)}\n"]).encode("utf-8", "surrogateescape")
        try:
            atomic_write(self.path, lambda tmp: Path(tmp).write_bytes(data))
        except OSError as error:
            warnings.warn(f"could not save the scan cache {self.path} ({error.strerror or error}); the next run "
                          "checks the images again", RuntimeWarning, stacklevel=3)
            return
        self.changed = False


def default_scan_cache(paths: list[Path]) -> Path:
    # os.fsencode: the folder's name as the file system has it, even where it is not valid UTF-8
    key = hashlib.sha1(os.fsencode(Path(paths[0]).resolve().parent)).hexdigest()[:16]
    return default_cache_dir() / "scans" / f"{key}.tsv"


def scan_images(paths, min_size: int = 0, cache: Path | None | str = "default", full: bool = False,
                threads: int = 8) -> ScanReport:
    """Checks every image file; returns the usable ones (in the given order) and what was skipped and why."""
    # Strings, not Path objects: a million Path operations (parsing, hashing) would cost more than the stats.
    names = [os.fspath(p) if isinstance(p, Path) else str(Path(p)) for p in paths]
    limit, cache = _limit_and_cache(cache, [Path(n) for n in names[:1]])
    folders: dict[str, str] = {}  # resolved once per folder: resolve() stats every part of a path

    def look_up(name: str):
        folder, base = os.path.split(name)
        resolved = folders.get(folder)
        if resolved is None:
            resolved = folders[folder] = str(Path(folder).resolve())
        key = os.path.join(resolved, base)
        try:
            stat = os.stat(name)
        except OSError:
            return key, None, ("unreadable", 0, 0)
        return key, (stat.st_size, stat.st_mtime_ns), None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        verdicts = _verdicts(names, look_up, lambda name: check_image(name, full), cache, full, pool)
        return _report(((n, None, v) for n, v in zip(names, verdicts)), cache, min_size, limit)


def scan_shards(archives, min_size: int = 0, cache: Path | None | str = "default", full: bool = False,
                threads: int = 8) -> ScanReport:
    """scan_images for the image members of tar shards (ipt.data.tars), checked where they lie in the
    archives; returns them in archive order, then member order. A shard that cannot be read is an error
    (a DataLayoutError): a smaller data set would be a silent change of the run."""
    archives = [Path(a) for a in archives]
    limit, cache = _limit_and_cache(cache, archives)
    index_cache = cache.path.parent / "shard-index" if cache.path is not None else None  # beside the scan cache
    with ThreadPoolExecutor(max_workers=threads) as pool:
        indexed = list(pool.map(lambda archive: index_tar(archive, index_cache), archives))
        return _report(_member_verdicts(archives, indexed, cache, full, pool), cache, min_size, limit)


def _member_verdicts(archives: list[Path], indexed: list[list[TarMember]], cache: "ScanCache", full: bool,
                     pool: ThreadPoolExecutor):
    """(archive, member, verdict) of every image member, archive by archive. Each archive is open only
    while its members are checked: a data set may have more shards than a process may open files."""
    for archive, members in zip(archives, indexed):
        try:
            fd = os.open(archive, os.O_RDONLY)
            stat = os.fstat(fd)
        except OSError as error:
            raise DataLayoutError(f"{archive}: cannot read this shard ({error.strerror or error})") from None
        try:
            stamp, resolved = (stat.st_size, stat.st_mtime_ns), archive.resolve()

            def check(member: TarMember):
                if member.offset + member.size > stamp[0]:  # cut short since it was indexed
                    return "truncated", 0, 0
                reader = io.BufferedReader(_Region(fd, member.offset, member.size), buffer_size=1 << 16)
                return check_image(f"{archive}:{member.name}", full, reader)

            # The offset is in the key: an archive may hold two members of one name.
            look_up = lambda m: (f"{resolved}:{m.offset}:{m.name}", stamp, None)  # noqa: E731
            for member, verdict in zip(members, _verdicts(members, look_up, check, cache, full, pool)):
                yield str(archive), member, verdict
        finally:
            os.close(fd)


def release_free_memory() -> None:
    """Gives the heap a scan freed back to the system (glibc's malloc_trim; elsewhere nothing). A scan of a
    million files makes and drops a gigabyte of small objects, and without this the training process
    would keep most of it resident for the whole run (measured: 66 MB after 200,000 files, 23 MB with it,
    12 of them the table of records)."""
    if sys.platform.startswith("linux"):
        gc.collect()
        try:
            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
            pass


CHUNK = 4096  # images looked up, then checked, at a time


def _verdicts(items: list, look_up, check, cache: ScanCache, full: bool, pool: ThreadPoolExecutor):
    """(key, stamp, (status, width, height)) of each item, in order. look_up(item) -> (key, stamp, verdict
    or None) runs here: a stat, cheap; the items it leaves undecided that the cache does not know are
    check(item)ed in the thread pool (they read files). A chunk at a time: a future per image for a
    million images, with their results, would take a gigabyte."""
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        found = [look_up(item) for item in chunk]
        unknown = []  # positions in the chunk of the items the cache cannot vouch for
        for i, (key, stamp, verdict) in enumerate(found):
            if verdict is None:
                cached = cache.entries.get(key)
                if cached is not None and cached[:2] == stamp and (cached[2] != "ok" or not full):
                    found[i] = (key, stamp, cached[2:])
                else:
                    unknown.append(i)
        for i, verdict in zip(unknown, pool.map(check, [chunk[i] for i in unknown])):
            found[i] = (found[i][0], found[i][1], verdict)
        yield from found


def _limit_and_cache(cache, paths: list[Path]) -> tuple[int | None, ScanCache]:
    """max_image_pixels(), read once (a bad setting is an error now, not a skipped image per thread), and
    the scan cache: "default" (the one of the images' folder), a path, or None (no cache)."""
    limit = max_image_pixels()
    return limit, ScanCache(default_scan_cache(paths) if cache == "default" and paths else (Path(cache) if cache else None))


def _report(results, cache: ScanCache, min_size: int, limit: int | None) -> ScanReport:
    """The report of checked images: results are (path, member or None, (key, stamp, (status, width,
    height))), in order. Caches what the files say of themselves; applies the limits that are not theirs
    (limit: max_image_pixels())."""
    records, skipped, examples = [], Counter(), {}
    for path, member, (key, stamp, (status, width, height)) in results:
        if stamp is not None and status in STATUSES:
            cache.update(key, (*stamp, status, width, height))
        if status == "ok" and limit is not None and width * height > limit:  # a size the cache remembered
            status = TOO_LARGE
        if status == "ok" and min(width, height) < min_size:
            status = f"smaller than {min_size} px"
        if status != "ok":
            skipped[status] += 1
            examples.setdefault(status, []).append(path if member is None else f"{path}:{member.name}")
        elif member is None:
            records.append(ImageRecord(path, width, height))
        else:
            records.append(ImageRecord(path, width, height, member.name, member.offset, member.size))
    cache.save()
    return ScanReport(ImageTable(records), skipped, examples)
