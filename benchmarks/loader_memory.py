"""The memory a training process spends on its data set: run in a fresh process by
benchmarks/test_scale.py, so that nothing else the benchmarks loaded counts.

    loader_memory.py DATA CACHE CROP BACKEND

Loads DATA (a folder or shards; its scan cached in CACHE, which must be warm), builds the BACKEND loader
(torch: 2 DataLoader workers) for one SR x2 crop of CROP pixels and takes the first batch of an epoch.
Prints one JSON object: the resident memory (MB) after the imports, after loading and after the first
batch; the bytes of the record table and of the epoch plan; and the memory the workers hold privately
(not shared with the training process: the pages they copied).
"""

import json
import sys
import tracemalloc
from pathlib import Path

from ipt.data import load_training_images
from ipt.loaders import make_loader

MB = 2**20


def resident_mb(pid="self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def private_mb(pid: int) -> float:
    """Pages of the process no other process shares (Private_Clean + Private_Dirty)."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total / 1024


def children() -> list[int]:
    found = []
    for task in Path("/proc/self/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def main(data, cache, crop, backend):
    figures = {"rss_imports_mb": resident_mb()}
    images = load_training_images(data, min_size=int(crop), cache=cache)
    figures["rss_loaded_mb"] = resident_mb()
    figures["images"] = len(images)
    figures["table_bytes"] = images.records.nbytes
    loader = make_loader(backend, images, ["sr2"], batch_size=64, seed=0, patch_size=int(crop) // 2, workers=2)
    tracemalloc.start()
    plan = loader.plan(0)  # its sizes are the table's, not a copy
    plan.batch(0)  # computes the shard and the tasks (kept in the plan)
    figures["plan_bytes"] = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    batches = iter(loader.epoch(0))
    next(batches)
    figures["rss_first_batch_mb"] = resident_mb()
    workers = children()
    figures["workers"] = len(workers)
    figures["worker_private_mb"] = [round(private_mb(pid), 1) for pid in workers]
    print(json.dumps(figures))


if __name__ == "__main__":
    main(*sys.argv[1:])
