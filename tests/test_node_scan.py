"""A job scans its data set once per node, not once per rank, and every rank trains on the same list.

Two torchrun agents on this machine play two nodes of two ranks each (`--nnodes 2 --nproc-per-node 2`,
gloo), as in tests/test_distributed_failures.py.
"""

import re
from pathlib import Path

from ipt.data import write_image

from images import COLOUR_IMAGES, photo
from torchrun_jobs import free_port, job_env, torchrun, two_agents, wait_all

JOB = str(Path(__file__).with_name("node_scan_job.py"))
LINE = re.compile(r"rank (\d): scanned (True|False), images (\d+), digest (\w+)")


def _tree(folder: Path, count: int) -> Path:
    for i in range(count):
        crop = photo(COLOUR_IMAGES[i % len(COLOUR_IMAGES)])[i : i + 40, 2 * i : 2 * i + 36]
        write_image(folder / f"class{i % 3}" / f"img{i:03d}.png", crop)
    return folder


def _two_nodes(tmp_path, data: Path, second_node_data: Path | None = None, timeout=120):
    port = free_port()
    command = torchrun("--nnodes", "2", "--nproc-per-node", "2", "--max-restarts", "0", "--rdzv-backend", "c10d",
                       "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"scan-{port}", JOB, str(data))
    envs = [job_env(tmp_path), job_env(tmp_path)]
    if second_node_data is not None:
        envs[1]["IPT_TEST_NODE_DATA"] = str(second_node_data)
    return wait_all(two_agents(command, port, tmp_path, envs), timeout)


def test_the_scan_runs_once_per_node_and_reaches_every_rank(tmp_path):
    data = _tree(tmp_path / "data", 7)
    _, codes, output = _two_nodes(tmp_path, data)
    assert codes == [0, 0], output[-3000:]
    ranks = {int(r): (scanned == "True", int(n), digest) for r, scanned, n, digest in LINE.findall(output)}
    assert sorted(ranks) == [0, 1, 2, 3], output[-3000:]
    # torchrun numbers the ranks node by node, 0 and 1 on one node, 2 and 3 on the other: one scan on each
    assert [ranks[0][0] + ranks[1][0], ranks[2][0] + ranks[3][0]] == [1, 1]
    assert {(n, digest) for _, n, digest in ranks.values()} == {(7, ranks[0][2])}


def test_nodes_that_see_different_data_stop_the_job_with_the_cause(tmp_path):
    data = _tree(tmp_path / "data", 7)
    partial = _tree(tmp_path / "partial-copy", 5)  # the second node's local copy lacks two images
    _, codes, output = _two_nodes(tmp_path, data, second_node_data=partial)
    assert codes != [0, 0], output[-3000:]
    # Which agent becomes node 0 is the rendezvous's choice.
    views = re.search(r"the nodes of the job found different data \(node (\d): (\d) images, sha256 \w+; node (\d): (\d) "
                      r"images, sha256 \w+\): every node must see the same files", output)
    assert views and sorted(views.group(2, 4)) == ["5", "7"] and sorted(views.group(1, 3)) == ["0", "1"], output[-3000:]
    assert not LINE.search(output)
