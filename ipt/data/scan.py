"""Checking a data set before training: which files are usable images, and how large they are.

A corrupt file must never crash an epoch, and DALI's decoders abort the whole pipeline on one. So every
file is checked once: its header must parse, JPEG and PNG files must end with their end marker (the
usual damage is truncation), other formats are decoded in full, and images smaller than the crop are
set aside, as are images of more pixels than the toolkit reads (decompression bombs; the limit is
ipt.data.images.max_image_pixels, set by $IPT_MAX_IMAGE_PIXELS). Unusable files are skipped with one
counted warning. Results are cached per file (path,
size, modification time), so a data set is checked once, not every run; every rank of a job may scan
and save the same cache at once (see ScanCache).
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import ConfigError
from ..files import atomic_write
from .images import ImageTooLargeError, max_image_pixels, open_image
from .samples import default_cache_dir


@dataclass(frozen=True)
class ImageRecord:
    path: str
    width: int
    height: int


@dataclass
class ScanReport:
    records: list[ImageRecord]
    skipped: Counter = field(default_factory=Counter)  # reason -> count
    examples: dict = field(default_factory=dict)  # reason -> a few paths

    def warn(self, what: str = "images") -> None:
        if self.skipped:
            parts = [f"{n} {reason} (e.g. {self.examples[reason][0]})" for reason, n in sorted(self.skipped.items())]
            warnings.warn(f"skipped {sum(self.skipped.values())} of {len(self.records) + sum(self.skipped.values())} "
                          f"{what}: " + "; ".join(parts), RuntimeWarning, stacklevel=3)


def _ends_with_marker(path: Path, marker: bytes, window: int) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - window))
        return marker in f.read()


def check_image(path, full: bool = False) -> tuple[str, int, int]:
    """(status, width, height); status 'ok', 'unreadable', 'truncated' or TOO_LARGE (more pixels than
    ipt.data.images.max_image_pixels)."""
    path = Path(path)
    # No warnings.catch_warnings() here: this runs in a thread pool, and catch_warnings swaps the
    # process-wide filter list, so concurrent use can leave warnings silenced for the whole process.
    try:
        with open_image(path) as img:  # refuses a decompression bomb before decoding it
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
    if fmt == "JPEG" and not _ends_with_marker(path, b"\xff\xd9", 4096):
        return "truncated", width, height
    if fmt == "PNG" and not _ends_with_marker(path, b"IEND", 64):
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
    """Checks every image; returns the usable ones (in the given order) and what was skipped and why."""
    paths = [Path(p) for p in paths]
    limit = max_image_pixels()  # read once: a bad setting is an error now, not a skipped file per thread
    cache = ScanCache(default_scan_cache(paths) if cache == "default" and paths else (Path(cache) if cache else None))

    def check(path: Path):
        key = str(path.resolve())
        try:
            stat = path.stat()
        except OSError:
            return key, None, ("unreadable", 0, 0)
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = cache.entries.get(key)
        if cached is not None and cached[:2] == stamp and (cached[2] != "ok" or not full):
            return key, stamp, cached[2:]
        return key, stamp, check_image(path, full)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(check, paths))
    report = ScanReport([])
    for path, (key, stamp, (status, width, height)) in zip(paths, results):
        if stamp is not None and status in STATUSES:
            cache.update(key, (*stamp, status, width, height))
        if status == "ok" and limit is not None and width * height > limit:  # a size the cache remembered
            status = TOO_LARGE
        if status == "ok" and min(width, height) < min_size:
            status = f"smaller than {min_size} px"
        if status == "ok":
            report.records.append(ImageRecord(str(path), width, height))
        else:
            report.skipped[status] += 1
            report.examples.setdefault(status, []).append(str(path))
    cache.save()
    return report
