"""Checking a data set before training: which files are usable images, and how large they are.

A corrupt file must never crash an epoch, and DALI's decoders abort the whole pipeline on one. So every
file is checked once: its header must parse, JPEG and PNG files must end with their end marker (the
usual damage is truncation), other formats are decoded in full, and images smaller than the crop are
set aside. Unusable files are skipped with one counted warning. Results are cached per file (path,
size, modification time), so a data set is checked once, not every run.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

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
    """(status, width, height); status 'ok', 'unreadable' or 'truncated'."""
    from PIL import Image

    path = Path(path)
    # No warnings.catch_warnings() here: this runs in a thread pool, and catch_warnings swaps the
    # process-wide filter list, so concurrent use can leave warnings silenced for the whole process.
    try:
        with Image.open(path) as img:
            width, height, fmt = img.width, img.height, img.format
            if full or fmt not in ("JPEG", "PNG"):
                img.load()
    except Exception:  # PIL raises many kinds for broken files; all mean "cannot use it"
        return "unreadable", 0, 0
    # Entropy-coded JPEG data cannot contain FF D9 (FF bytes are stuffed), and IEND closes every PNG.
    if fmt == "JPEG" and not _ends_with_marker(path, b"\xff\xd9", 4096):
        return "truncated", width, height
    if fmt == "PNG" and not _ends_with_marker(path, b"IEND", 64):
        return "truncated", width, height
    return "ok", width, height


class ScanCache:
    """Tab-separated lines: path, size, mtime_ns, status, width, height."""

    def __init__(self, path: Path | None):
        self.path = path
        self.entries: dict[str, tuple] = {}
        if path is not None and path.is_file():
            for line in path.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) == 6:
                    self.entries[parts[0]] = (int(parts[1]), int(parts[2]), parts[3], int(parts[4]), int(parts[5]))

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(f"{p}\t{s}\t{m}\t{st}\t{w}\t{h}\n" for p, (s, m, st, w, h) in self.entries.items()))
        os.replace(tmp, self.path)


def default_scan_cache(paths: list[Path]) -> Path:
    key = hashlib.sha1(str(Path(paths[0]).resolve().parent).encode()).hexdigest()[:16]
    return default_cache_dir() / "scans" / f"{key}.tsv"


def scan_images(paths, min_size: int = 0, cache: Path | None | str = "default", full: bool = False,
                threads: int = 8) -> ScanReport:
    """Checks every image; returns the usable ones (in the given order) and what was skipped and why."""
    paths = [Path(p) for p in paths]
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
        if stamp is not None:
            cache.entries[key] = (*stamp, status, width, height)
        if status == "ok" and min(width, height) < min_size:
            status = f"smaller than {min_size} px"
        if status == "ok":
            report.records.append(ImageRecord(str(path), width, height))
        else:
            report.skipped[status] += 1
            report.examples.setdefault(status, []).append(str(path))
    cache.save()
    return report
