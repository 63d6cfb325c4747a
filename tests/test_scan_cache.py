"""The scan cache shared by every rank of a job: concurrent writers, torn and foreign files, no write access."""

import multiprocessing
import warnings

import numpy as np
import pytest
from PIL import Image

from ipt.data.images import write_image
from ipt.data.scan import ScanCache, scan_images

from images import photo

WRITERS = 8


def _images(folder, count=48):
    """Small images, so that a scan takes milliseconds and the writers' saves collide."""
    image = photo("coffee")
    paths = []
    for k in range(count):
        crop = np.ascontiguousarray(image[k : k + 40 + k % 7, 2 * k : 2 * k + 50])
        paths.append(write_image(folder / f"img{k:02d}.{'png' if k % 2 else 'jpg'}", crop))
    return paths


# What the cache folder holds as each round starts (None: no cache), so that every writer must save.
# With a fixed temporary name, about one scan in eight failed here in a round with no cache.
ROUND_START = [None] * 8 + [b"", b"garbage\tthat\tis\tnot\ta\tcache\n",
                            (ScanCache.HEADER + "\n/x.png\t1\t2\tok\t3").encode(), bytes(range(256))]


def _writer(index, paths, cache, barrier, results):
    outcomes = []
    for round_ in range(len(ROUND_START)):
        barrier.wait()
        if index == 0:
            cache.unlink(missing_ok=True)
            if ROUND_START[round_] is not None:
                cache.write_bytes(ROUND_START[round_])
        barrier.wait()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                report = scan_images(paths, cache=cache)
            outcome = ([(r.path, r.width, r.height) for r in report.records], [str(w.message) for w in caught])
        except Exception as error:  # what the old cache did: FileNotFoundError on the shared .tmp name
            outcome = f"{type(error).__name__}: {error}"
        outcomes.append(outcome)
    results.put((index, outcomes))


def test_eight_processes_write_one_cache_at_once(tmp_path):
    # A writer that reads a torn or half-replaced cache would only rescan (the records stay right), so
    # what this catches are the failures (the lost race, an exception, a warning) and the final file.
    paths = _images(tmp_path / "data")
    expected = [(str(p), *Image.open(p).size) for p in paths]
    cache = tmp_path / "shared-cache" / "scan.tsv"
    cache.parent.mkdir()
    ctx = multiprocessing.get_context("spawn")  # fresh processes, as ranks are (fork here can inherit held locks)
    barrier, results = ctx.Barrier(WRITERS), ctx.Queue()
    workers = [ctx.Process(target=_writer, args=(k, paths, cache, barrier, results)) for k in range(WRITERS)]
    for w in workers:
        w.start()
    gathered = dict(results.get(timeout=300) for _ in workers)
    for w in workers:
        w.join(timeout=60)
        assert w.exitcode == 0
    for index, outcomes in sorted(gathered.items()):
        for round_, outcome in enumerate(outcomes):
            assert not isinstance(outcome, str), f"writer {index}, round {round_}: {outcome}"
            records, caught = outcome
            assert records == expected, f"writer {index}, round {round_}"
            assert caught == [], f"writer {index}, round {round_}: a lost race is not worth a warning"
    final = ScanCache(cache)
    assert not final.changed and len(final.entries) == len(paths)  # whole, and ours
    assert [p.name for p in cache.parent.iterdir()] == ["scan.tsv"]  # no temporary file left behind


@pytest.mark.parametrize("damage", ["empty", "old-format", "torn", "wrong-count", "bad-number", "binary", "foreign"])
def test_a_torn_or_foreign_cache_is_ignored_and_rewritten(tmp_path, damage):
    paths = _images(tmp_path / "data", count=6)
    cache = tmp_path / "scan.tsv"
    truth = scan_images(paths, cache=None).records
    scan_images(paths, cache=cache)
    good = cache.read_bytes()
    lines = good.decode().splitlines(keepends=True)
    broken = {
        "empty": b"",
        "old-format": "".join(line for line in lines[1:-1]).encode(),  # the previous version's file
        "torn": good[: len(good) * 2 // 3],
        "wrong-count": "".join(lines[:2] + lines[3:]).encode(),  # a line lost, the end line kept
        "bad-number": good.replace(b"\tok\t", b"\tok\tx", 1),
        "binary": bytes(range(256)) * 4,
        "foreign": b"# ipt scan cache v2\n" + b"not\tours\n" + b"# end\t1\n",
    }[damage]
    cache.write_bytes(broken)
    assert ScanCache(cache).changed and ScanCache(cache).entries == {}
    assert scan_images(paths, cache=cache).records == truth
    assert cache.read_bytes() == good  # rewritten whole


def test_an_unwritable_cache_costs_a_warning_not_the_scan(tmp_path):
    paths = _images(tmp_path / "data", count=4)
    blocked = tmp_path / "scan.tsv"
    blocked.mkdir()  # a folder where the cache file should be: it cannot be read nor replaced
    with pytest.warns(RuntimeWarning, match="could not save the scan cache"):
        report = scan_images(paths, cache=blocked)
    assert report.records == scan_images(paths, cache=None).records


def test_an_unchanged_cache_is_not_rewritten(tmp_path):
    paths = _images(tmp_path / "data", count=4)
    cache = tmp_path / "scan.tsv"
    scan_images(paths, cache=cache)
    stamp = cache.stat().st_mtime_ns, cache.stat().st_ino
    scan_images(paths, cache=cache)  # eight ranks with a warm cache write nothing
    assert (cache.stat().st_mtime_ns, cache.stat().st_ino) == stamp
