"""One rank of a job that loads a data set, for tests/test_node_scan.py. Run by torchrun:

    node_scan_job.py DATA

DATA is the data set (a folder or shards); $IPT_TEST_NODE_DATA, where set, replaces it on that node
(a node whose local copy differs). Prints one line: `rank R: scanned S, images N, digest D`, S being
whether this rank ran the scan itself.
"""

import os
import sys

from ipt.data import load_training_images
from ipt.train.distributed import setup, teardown

source = os.environ.get("IPT_TEST_NODE_DATA") or sys.argv[1]
scanned = False


def scan():
    global scanned
    scanned = True
    return load_training_images(source, cache=None)  # no cache: a real scan every time


dist = setup("cpu")
try:
    with dist.stage("start-up"):
        data = dist.once_per_node("scan", scan, fingerprint=lambda data: data.fingerprint())
    print(f"rank {dist.rank}: scanned {scanned}, images {len(data)}, digest {data.records.digest()[:16]}", flush=True)
finally:
    teardown()
