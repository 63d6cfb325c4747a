"""The README's sbatch script, run as SLURM runs it: a stand-in `srun` starts one task per node (two
"nodes" on this machine), each a torchrun agent, and a stand-in `scontrol` names the allocation's hosts.
The job trains to the end; run again (a requeued job), it continues from its checkpoint by itself."""

import os
import re
import subprocess
import sys
from pathlib import Path

from ipt.data import write_image
from ipt.data.shard import data_argument, write_shards

from images import COLOUR_IMAGES, photo
from torchrun_jobs import free_port

README = Path(__file__).resolve().parent.parent / "README.md"

SCONTROL = """#!/bin/bash
# scontrol show hostnames LIST: the hosts of a node list, one per line
[ "$1 $2" = "show hostnames" ] || { echo "stand-in scontrol: only 'show hostnames'" >&2; exit 1; }
echo "$3" | tr ',' '\\n'
"""
SRUN = """#!/bin/bash
# srun [options] COMMAND...: COMMAND once per node of the allocation, all at once, as SLURM starts the tasks
while [[ "$1" == -* ]]; do shift; done
pids=()
for ((node = 0; node < SLURM_NNODES; node++)); do
    SLURM_NODEID=$node SLURM_PROCID=$node SLURM_LOCALID=0 "$@" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


def sbatch_script() -> str:
    """The ```sh block after <!-- slurm-script --> in the README."""
    text = README.read_text()
    block = re.search(r"<!-- slurm-script -->\n```sh\n(.*?)```", text, re.S)
    assert block, "the README has no sbatch script"
    return block.group(1)


def _job(tmp_path, env, *args):
    """The script as sbatch runs it, with its #SBATCH lines' allocation: 2 nodes."""
    return subprocess.run(["bash", str(tmp_path / "pretrain.sbatch"), *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)


def test_the_readme_sbatch_script_trains_on_two_nodes_and_continues_when_requeued(tmp_path):
    (tmp_path / "pretrain.sbatch").write_text(sbatch_script())
    assert "#SBATCH --nodes" in sbatch_script() and "--resume auto" in sbatch_script()
    shims = tmp_path / "bin"
    shims.mkdir()
    for name, text in (("scontrol", SCONTROL), ("srun", SRUN)):
        (shims / name).write_text(text)
        (shims / name).chmod(0o755)
    for i in range(6):
        write_image(tmp_path / "tree" / f"c{i % 2}" / f"{i}.jpg", photo(COLOUR_IMAGES[i % 4])[: 120 + i, : 140 - i])
    shards = data_argument(write_shards(tmp_path / "tree", tmp_path / "shards", size=100_000))
    env = {**os.environ, "PATH": f"{shims}:{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SLURM_JOB_ID": "4242", "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "127.0.0.1,127.0.0.1",
           "DATA": shards, "CONFIG": "tiny", "OUT": str(tmp_path / "run"), "GPUS_PER_NODE": "1",
           "RDZV_PORT": str(free_port()), "IPT_CACHE": str(tmp_path / "cache"), "PYTHONUNBUFFERED": "1"}
    training = ["--steps", "2", "--batch-size", "2", "--workers", "1", "--no-progress"]

    first = _job(tmp_path, env, *training)
    assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
    assert "no checkpoint in" in first.stdout and "2 rank(s) x 1 x 1" in first.stdout
    assert "done: 2 steps" in first.stdout and (tmp_path / "run" / "model.safetensors").is_file()

    training[1] = "4"  # the requeued job, given more steps
    again = _job(tmp_path, {**env, "RDZV_PORT": str(free_port())}, *training)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    assert "resumed from" in again.stdout and "(step 2, epoch" in again.stdout
    assert "done: 4 steps" in again.stdout
