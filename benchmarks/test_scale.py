"""Large data sets: the scan (first and cached), the epoch plan, the time to the first batch and the
memory of the loader, at 50,000, 100,000 and 200,000 images in ImageNet's shape (1,000 class folders),
from folders and from tar shards. The figures extrapolate to ImageNet's 1.28M images (README).

The data is generated once and kept under $IPT_BENCH_DATA (default $IPT_CACHE/bench/imagenet-like-200000):
small JPEGs, since the scan's cost is per file (it reads headers and end markers, not pixels). The 50k and
100k sets are folders of links to the first 250 and 500 classes. With --benchmark-disable (as CI runs
the benchmarks) sets of 500 to 2,000 images stand in, so the code runs without the set-up.

Targets: every figure grows no worse than linearly -- the largest set's time within 1.25x of 4 times the
smallest's (a speedup of >= 0.2 over it in the ratio table); the resident memory likewise.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ipt.data import load_training_images
from ipt.data.plan import EpochPlan
from ipt.data.samples import default_cache_dir, sample_image
from ipt.data.shard import write_shards
from ipt.loaders import make_loader

CLASSES = 1000
CROP = 48  # the SR x2 clean crop of a 24-px model input: every generated image holds it
LINEAR = 1 / (4 * 1.25)  # the speedup of the largest set over the smallest that linear growth (+25%) allows
MEMORY_PROBE = str(Path(__file__).with_name("loader_memory.py"))


def _sizes(config) -> tuple[int, ...]:
    return (500, 1000, 2000) if config.getoption("benchmark_disable") else (50_000, 100_000, 200_000)


def _payloads(count: int = 32) -> list[bytes]:
    """Distinct small JPEGs (64 to 128 px a side) cut from a sample photograph."""
    photo = sample_image("astronaut")
    rng = np.random.default_rng(0)
    payloads = []
    for _ in range(count):
        h, w = (int(v) for v in rng.integers(64, 129, size=2))
        top, left = (int(v) for v in rng.integers(0, 200, size=2))
        buffer = io.BytesIO()
        Image.fromarray(photo[top : top + h, left : left + w]).save(buffer, format="JPEG", quality=85)
        payloads.append(buffer.getvalue())
    return payloads


def _generate(root: Path, total: int) -> None:
    """root/nNNNNNNNN/nNNNNNNNN_K.JPEG: total images over CLASSES folders; written once (a marker file
    says the tree is whole)."""
    done = root / ".complete"
    if done.is_file():
        return
    payloads = _payloads()
    per_class = total // CLASSES
    for c in range(CLASSES):
        folder = root / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            (folder / f"n{c:08d}_{k}.JPEG").write_bytes(payloads[(c * per_class + k) % len(payloads)])
    done.write_text(f"{total} images\n")


@pytest.fixture(scope="module")
def trees(request) -> dict[int, Path]:
    """{images: folder}: the largest set, and the smaller ones as folders of links to its first classes."""
    sizes = _sizes(request.config)
    base = Path(os.environ.get("IPT_BENCH_DATA", default_cache_dir() / "bench"))
    root = base / f"imagenet-like-{sizes[-1]}"
    _generate(root / "all", sizes[-1])
    found = {sizes[-1]: root / "all"}
    for n in sizes[:-1]:
        subset = root / f"first-{n}"
        if not subset.is_dir():
            subset.mkdir()
            for c in range(n * CLASSES // sizes[-1]):
                (subset / f"n{c:08d}").symlink_to(root / "all" / f"n{c:08d}")
        found[n] = subset
    return found


@pytest.fixture(scope="module")
def shards(trees) -> dict[int, str]:
    """{images: shard pattern} of the same images, written once beside the folders (64 MB shards)."""
    found = {}
    for n, folder in trees.items():
        out = folder.parent / f"shards-{n}"
        if not (out / ".complete").is_file():
            if out.is_dir():
                for stale in out.glob("*.tar"):  # an interrupted earlier run: written again
                    stale.unlink()
            paths = write_shards(folder, out, size=64 * 10**6)
            (out / ".complete").write_text(json.dumps([p.name for p in paths]))
        names = json.loads((out / ".complete").read_text())
        first, last = (name[len("train-") : -len(".tar")] for name in (names[0], names[-1]))
        found[n] = str(out / f"train-{{{first}..{last}}}.tar")
    return found


def _label(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)


def _linear_target(request, n: int) -> dict:
    sizes = _sizes(request.config)
    return {_label(sizes[0]): LINEAR} if n == sizes[-1] else {}


@pytest.mark.parametrize("layout, cached", [("folders", False), ("folders", True), ("shards", False), ("shards", True)],
                         ids=["first", "cached", "first-shards", "cached-shards"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["smallest", "middle", "largest"])
def test_scan(measure, trees, shards, request, index, layout, cached, tmp_path):
    """A first scan checks every image (no cache): what a new data set costs, with its files in the page
    cache. A cached scan is a data set scanned before (the warm-up round fills the cache): a stat and a
    cache lookup per file, or for shards each archive's saved index and a lookup per member (a restart)."""
    n = _sizes(request.config)[index]
    source = (trees if layout == "folders" else shards)[n]
    cache = tmp_path / "scan.tsv" if cached else None
    group = f"scan: {'cached' if cached else 'first'}{', tar shards' if layout == 'shards' else ''}"
    measure(lambda: load_training_images(source, min_size=CROP, cache=cache), group=group, role=_label(n), items=n,
            rounds=3 if cached else 1, speedup_targets=_linear_target(request, n))


@pytest.mark.parametrize("n", [50_000, 100_000, 200_000, 1_281_167], ids=["50k", "100k", "200k", "imagenet"])
def test_epoch_plan(measure, n):
    """A rank's plan of an epoch (8 ranks), through its first batch: the permutation, the shard and the
    tasks. ImageNet's size needs no files: a plan only takes the images' sizes."""
    sizes = np.full((n, 2), 375, dtype=np.int32)

    def plan():
        p = EpochPlan(sizes, (CROP, 72, 96), 64, seed=0, epoch=0, rank=3, world=8)
        p.batch(0)
        return p

    built = plan()
    extra = {"plan_bytes": int(built.shard.nbytes + built.tasks.nbytes)}
    measure(plan, group="epoch plan", role=_label(n), items=n, rounds=3, extra=extra,
            speedup_targets={"50k": LINEAR} if n == 200_000 else None)


@pytest.mark.parametrize("backend", ["torch", "dali"])
@pytest.mark.parametrize("index", [0, 2], ids=["smallest", "largest"])
def test_first_batch(measure, trees, request, index, backend, tmp_path):
    """From a loaded data set to the first batch of an epoch: the plan, the workers' start, 64 decodes."""
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    n = _sizes(request.config)[index]
    data = load_training_images(trees[n], min_size=CROP, cache=tmp_path / "scan.tsv")

    def first_batch():
        loader = make_loader(backend, data, ["sr2"], batch_size=64, seed=0, patch_size=CROP // 2, workers=2)
        batches = iter(loader.epoch(0))
        next(batches)
        batches.close()

    sizes = _sizes(request.config)
    measure(first_batch, group=f"first batch, {backend} loader", role=_label(n), items=64, rounds=3,
            speedup_targets={_label(sizes[0]): LINEAR} if n == sizes[-1] else None)


def test_loader_memory(trees, shards, request, tmp_path, figures):
    """Resident memory of a training process's data (its loader, 2 DataLoader workers), each set in a
    fresh process, from folders and from shards. Linear growth at most: the largest set's growth within
    1.25x of its share of the smallest's."""
    sizes = _sizes(request.config)
    found = {}
    for kind, sources in (("folders", trees), ("shards", shards)):
        for n in sizes:
            cache = tmp_path / f"{kind}-{n}.tsv"
            load_training_images(sources[n], min_size=CROP, cache=cache)  # warm the cache
            started = time.perf_counter()
            out = subprocess.run([sys.executable, MEMORY_PROBE, str(sources[n]), str(cache), str(CROP), "torch"],
                                 capture_output=True, text=True, timeout=900, check=True)
            found[f"{kind} {_label(n)}"] = {**json.loads(out.stdout.splitlines()[-1]),
                                              "seconds": round(time.perf_counter() - started, 1)}
    for key, f in found.items():
        print(f"loader memory, {key}: {f}")
        figures[f"loader memory, {key}"] = f
    for kind in ("folders", "shards"):
        small, large = found[f"{kind} {_label(sizes[0])}"], found[f"{kind} {_label(sizes[-1])}"]
        growth = [f["rss_first_batch_mb"] - f["rss_imports_mb"] for f in (small, large)]
        assert growth[1] <= max(growth[0], 1.0) * sizes[-1] / sizes[0] * 1.25, (kind, growth)
        assert large["table_bytes"] / large["images"] < 100  # compact records (ipt.data.records)
