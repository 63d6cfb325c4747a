"""Scale-out: `--resume auto`, a job over two torchrun nodes, and torchrun's elastic restarts.

`--resume auto` continues the run in --out when it holds a checkpoint and starts one otherwise, so the
same command line serves a job's first start and every restart (torchrun --max-restarts, a requeued
job). Rank 0, which owns the output folder, decides, and every rank follows (ipt.cli.should_resume).
The torchrun tests run on gloo, on the CPU: two agents on this machine stand for two nodes, as in
tests/test_distributed_failures.py.
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
import torch

from ipt.cli import RESUME_AUTO, add_training_arguments, should_resume
from ipt.model import load_model
from ipt.train.distributed import Distributed
from ipt.train.state import checkpoints

from cli_runs import in_process
from torchrun_jobs import free_port, job_env, torchrun, two_agents

TINY = ["--config", "tiny", "--batch-size", "4", "--workers", "1", "--no-progress"]


def _parse(*argv):
    parser = argparse.ArgumentParser()
    add_training_arguments(parser, default_out="runs/test")
    return parser.parse_args(list(argv))


def _cpu() -> Distributed:
    """A job of one process, on the CPU."""
    return Distributed(0, 1, 0, torch.device("cpu"))


def _same_parameters(a: Path, b: Path) -> bool:
    x, y = load_model(a).state_dict(), load_model(b).state_dict()
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# --- --resume auto: the decision ------------------------------------------------------------------------------


def test_resume_takes_no_value_or_auto(capsys):
    assert _parse().resume is False
    assert _parse("--resume").resume is True  # as before: continue, an error without a checkpoint
    assert _parse("--resume", "--out", "x").resume is True
    assert _parse("--resume", "auto").resume == RESUME_AUTO == "auto"
    with pytest.raises(SystemExit) as ended:
        _parse("--resume", "maybe")
    assert ended.value.code == 2
    assert "argument --resume: 'maybe': give --resume alone" in capsys.readouterr().err


def test_auto_resumes_exactly_when_the_output_holds_a_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert should_resume(_parse("--out", str(out)), _cpu()) is False
    assert should_resume(_parse("--out", str(out), "--resume"), _cpu()) is True  # whatever --out holds
    assert capsys.readouterr().out == ""  # only auto has something to say
    assert should_resume(_parse("--out", str(out), "--resume", "auto"), _cpu()) is False
    assert capsys.readouterr().out == f"--resume auto: no checkpoint in {out}: starting a new run\n"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "step_00000003.pt.unusable").write_bytes(b"")  # set aside: not a checkpoint
    (out / "checkpoints" / ".step_00000006.pt.0123456789ab.tmp").write_bytes(b"")  # a write cut short
    assert should_resume(_parse("--out", str(out), "--resume", "auto"), _cpu()) is False
    capsys.readouterr()
    (out / "checkpoints" / "step_00000003.pt").write_bytes(b"")
    assert should_resume(_parse("--out", str(out), "--resume", "auto"), _cpu()) is True
    assert capsys.readouterr().out == (f"--resume auto: continuing the run in {out} from its checkpoints (the newest: "
                                       "step_00000003.pt)\n")


class _Rank1:
    """Rank 1 of two (what should_resume uses of a Distributed), on a node that does not (yet) see the
    checkpoints that rank 0 sees."""

    is_main, device = False, torch.device("cpu")

    def most(self, values):
        self.asked = values.clone()
        return torch.ones_like(values)  # rank 0's answer: it found one


def test_auto_on_other_ranks_follows_rank_0(tmp_path, capsys):
    rank1 = _Rank1()
    assert should_resume(_parse("--out", str(tmp_path / "empty-here"), "--resume", "auto"), rank1) is True
    assert rank1.asked.tolist() == [0]  # it does not look itself: rank 0 owns the folder
    assert capsys.readouterr().out == ""  # and rank 0 says what was decided


def _tool(name, tmp_path):
    """(main, its arguments for a 2-step run of a tiny model) of each training CLI."""
    if name == "pretrain":
        from ipt.pretrain import main

        return main, [*TINY, "--steps", "2"]
    if name == "finetune":
        from ipt.finetune import main
        from ipt.model import IPT

        IPT(["noise30"], "tiny").save(tmp_path / "init.safetensors")
        return main, ["--task", "noise30", "--init", tmp_path / "init.safetensors", *TINY, "--steps", "2"]
    from ipt.train.__main__ import main

    return main, ["--model", "mprnet", "--task", "noise30", "--config", "mprnet-tiny", "--steps", "2", "--no-progress"]


@pytest.mark.parametrize("tool", ["pretrain", "finetune", "train"])
def test_resume_auto_starts_then_resumes_a_finished_run(kernels, tmp_path, capsys, tool):
    main, args = _tool(tool, tmp_path)
    out = tmp_path / "run"
    args = [*args, "--checkpoint-every", "2", "--out", out, "--resume", "auto"]
    code, stdout, err = in_process(main, capsys, *args)
    assert code == 0, err
    assert f"--resume auto: no checkpoint in {out}: starting a new run" in stdout and "resumed from" not in stdout
    assert [p.name for p in checkpoints(out)] == ["step_00000002.pt"]
    code, stdout, err = in_process(main, capsys, *args)
    assert code == 0, err
    assert f"--resume auto: continuing the run in {out} from its checkpoints (the newest: step_00000002.pt)" in stdout
    assert f"resumed from {out / 'checkpoints' / 'step_00000002.pt'}" in stdout
    assert "nothing to train" in stdout
    # a plain --resume keeps its meaning: an error where there is nothing to continue; no --resume: a
    # fresh run, refused over another run's checkpoints
    code, _, err = in_process(main, capsys, *args[:-4], "--out", tmp_path / "empty", "--resume")
    assert code == 2 and "no checkpoint in" in err
    code, _, err = in_process(main, capsys, *args[:-2])
    assert code == 2 and "already holds checkpoints of a run: pass --resume" in err


# --- torchrun jobs --------------------------------------------------------------------------------------------


def _workers(agent: int) -> dict[int, int]:
    """{rank: pid} of the torchrun agent's workers: its children (their DataLoader workers are its
    grandchildren), with the rank torchrun gave each in its environment."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != agent:
                continue
            env = dict(item.split(b"=", 1) for item in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
                       if b"=" in item)
        except (OSError, ValueError):  # it ended meanwhile
            continue
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(entry)
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _end(agent: subprocess.Popen) -> None:
    """Kills a torchrun agent that is still running, and its workers first (they would outlive it)."""
    if agent.poll() is None:
        for pid in _workers(agent.pid).values():
            os.kill(pid, signal.SIGKILL)
        agent.kill()
    agent.wait()


# --- two torchrun nodes ---------------------------------------------------------------------------------------


def test_two_nodes_train_as_one_process(kernels, tmp_path):
    """Two torchrun agents (`--nnodes 2 --nproc-per-node 1`, c10d rendezvous) stand for two machines; with
    the same global batch they train what one process trains."""
    common = [*TINY, "--steps", "4", "--checkpoint-every", "100"]
    env = job_env(tmp_path)
    single = subprocess.run([sys.executable, "-m", "ipt.pretrain", *common, "--out", "single"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env=env)
    assert single.returncode == 0, single.stderr[-3000:]
    port = free_port()
    command = torchrun("--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                        f"127.0.0.1:{port}", "--rdzv-id", f"two-nodes-{port}", "-m", "ipt.pretrain", *common,
                        "--out", "nodes", "--resume", "auto")
    nodes = []
    try:
        nodes = two_agents(command, port, tmp_path, [env, env])
        outputs = [p.communicate(timeout=300)[0] for p in nodes]
    finally:
        for p in nodes:
            _end(p)
    output = "\n".join(outputs)
    assert [p.returncode for p in nodes] == [0, 0], output[-4000:]
    assert "2 rank(s) x 2 x 1" in output and "done: 4 steps" in output
    assert output.count("--resume auto: no checkpoint in nodes: starting a new run") == 1  # rank 0 decides, once
    a = load_model(tmp_path / "single" / "model.safetensors").state_dict()
    b = load_model(tmp_path / "nodes" / "model.safetensors").state_dict()
    assert a.keys() == b.keys()
    # As in tests/test_training.py's DDP test: per tensor, norm-wise (the ranks' gradients are summed in
    # another order than one process sums its batch, and Adam magnifies float noise in tiny gradients).
    for name in a:
        x, y = a[name].double(), b[name].double()
        assert ((x - y).norm() / (x.norm() + 1e-12)).item() < 1e-4, name


# --- torchrun's elastic restarts ------------------------------------------------------------------------------

# torchrun lends its agent's TCPStore to the workers (TORCHELASTIC_USE_AGENT_STORE: c10d rendezvous by default,
# static always) and keeps it across restarts, keys and all, while init_process_group does not scope its keys
# per restart: a restarted worker may read its peer's gloo/NCCL address of the attempt before and never connect
# (pytorch/pytorch#135712, back in the torch 2.13 here: most restarts of this test fail or hang without the
# variable). torch's opt-out gives every c10d rendezvous round a store of its own.
ELASTIC_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1", "LOGLEVEL": "INFO"}  # INFO: torchrun says it restarts
ELASTIC_STEPS = 12


def _elastic(tmp_path, out: str):
    """(command, env) of a 2-worker pretraining run that torchrun restarts up to twice, with --resume auto."""
    config = tmp_path / "deterministic.json"
    config.write_text(json.dumps({"extends": "tiny", "deterministic": True, "log_every": 1}))
    command = torchrun("--nproc-per-node", "2", "--max-restarts", "2", "--rdzv-backend", "c10d", "--rdzv-endpoint",
                        f"127.0.0.1:{free_port()}", "-m", "ipt.pretrain", "--config", str(config),
                        "--steps", str(ELASTIC_STEPS), "--checkpoint-every", "3", "--no-progress", "--out", out,
                        "--resume", "auto")
    return command, {**job_env(tmp_path), **ELASTIC_ENV}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final model of the elastic command run without a fault."""
    tmp_path = tmp_path_factory.mktemp("elastic")
    command, env = _elastic(tmp_path, "straight")
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "resumed from" not in done.stdout and f"done: {ELASTIC_STEPS} steps" in done.stdout
    return tmp_path / "straight" / "model.safetensors"


@pytest.mark.parametrize("victim", [0, 1], ids=["rank0-killed", "rank1-killed"])
def test_a_killed_worker_is_restarted_and_resumes_to_the_same_parameters(kernels, tmp_path, uninterrupted, victim):
    """torchrun --max-restarts restarts the job when a worker is SIGKILLed; with --resume auto the same
    command line resumes from the last checkpoint and ends with the parameters of a run that was never
    interrupted. The survivor ends by itself, in seconds, not at torchrun's 30-s stop timeout. Rank 0
    is the one that holds the output folder's lock and writes the checkpoints."""
    command, env = _elastic(tmp_path, "run")
    agent = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    lines: list[tuple[float, str]] = []  # (when it was read, the line)
    reader = threading.Thread(target=lambda: lines.extend((time.monotonic(), line) for line in agent.stdout),
                              daemon=True)
    reader.start()
    try:
        sixth = tmp_path / "run" / "checkpoints" / "step_00000006.pt"
        deadline = time.monotonic() + 120
        while not sixth.exists():
            assert agent.poll() is None and time.monotonic() < deadline, "".join(l for _, l in lines)[-3000:]
            time.sleep(0.01)
        workers = _workers(agent.pid)
        assert sorted(workers) == [0, 1], workers
        os.kill(workers[victim], signal.SIGKILL)
        killed_at = time.monotonic()
        assert not (tmp_path / "run" / "model.safetensors").exists()  # it really was cut short
        survivor, survivor_ended = workers[1 - victim], None
        while agent.poll() is None and time.monotonic() < killed_at + 180:
            if survivor_ended is None and not _alive(survivor):
                survivor_ended = time.monotonic() - killed_at
            time.sleep(0.05)
        assert agent.poll() is not None, "the restarted job did not end within 3 minutes"
    finally:
        _end(agent)
        reader.join(timeout=10)
    output = "".join(line for _, line in lines)
    assert agent.returncode == 0, output[-4000:]
    assert f"local_rank: {victim} (pid: {workers[victim]})" in output  # torchrun saw its worker killed
    assert "will restart worker group" in output  # and restarted the group
    resumed = [(t, line) for t, line in lines if line.startswith("resumed from")]
    assert len(resumed) == 1, output[-4000:]
    step = int(re.search(r"step_(\d{8})\.pt \(step (\d+)", resumed[0][1]).group(2))
    assert step in (6, 9)  # the newest checkpoint when the restarted rank 0 looked: written whole
    assert "--resume auto: continuing the run in run from its checkpoints" in output
    assert output.count("--resume auto: no checkpoint in run: starting a new run") == 1  # the first attempt only
    assert f"done: {ELASTIC_STEPS} steps" in output
    restart_s = resumed[0][0] - killed_at
    print(f"\nSIGKILL of rank {victim}: the survivor ended after {survivor_ended:.1f} s; the restarted job resumed "
          f"from step {step} after {restart_s:.1f} s")
    # By itself: torchrun SIGKILLs a worker still alive 30 s after its SIGTERM (a bound, not a speed target).
    assert survivor_ended is not None and survivor_ended < 30
    # No partial or set-aside checkpoint: the sequence of a run that was never killed (the last 3 kept).
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir()) == [
        "step_00000006.pt", "step_00000009.pt", "step_00000012.pt"]
    assert _same_parameters(uninterrupted, tmp_path / "run" / "model.safetensors")


# --- pieces that make restarts prompt -------------------------------------------------------------------------

def _death_signal_of_a_started_worker(report):
    """In a forked worker: start_worker as the DataLoader calls it, then the signal the kernel will send
    this process when its parent ends (PR_GET_PDEATHSIG = 2)."""
    import ctypes

    from ipt.preemption import start_worker

    start_worker(0, parent=os.getppid())
    found = ctypes.c_int(-1)
    ctypes.CDLL(None).prctl(2, ctypes.byref(found))
    report.put(found.value)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_dataloader_workers_die_with_their_rank():
    """A DataLoader worker asks the kernel for SIGKILL when its rank ends. torch's workers notice a dead
    parent only every 5 s and meanwhile hold its sockets open: measured on the elastic test above, a
    restart then took 11.3 s instead of 7.6 (rank 0 killed) and 11.4 s instead of 3.7 (rank 1)."""
    import multiprocessing

    context = multiprocessing.get_context("fork")  # as DataLoader workers start on Linux
    report = context.Queue()
    worker = context.Process(target=_death_signal_of_a_started_worker, args=(report,))
    worker.start()
    assert report.get(timeout=30) == signal.SIGKILL
    worker.join(30)


def test_rank_0_warns_when_torchrun_restarts_would_share_its_store(monkeypatch):
    from ipt.train.distributed import _warn_if_restarts_may_hang

    monkeypatch.setenv("TORCHELASTIC_MAX_RESTARTS", "3")
    monkeypatch.setenv("TORCHELASTIC_USE_AGENT_STORE", "True")
    with pytest.warns(RuntimeWarning, match="TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1"):
        _warn_if_restarts_may_hang()
    for quiet in ({"TORCHELASTIC_USE_AGENT_STORE": "False"}, {"TORCHELASTIC_MAX_RESTARTS": "0"}):
        with monkeypatch.context() as m:
            for name, value in quiet.items():
                m.setenv(name, value)
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                _warn_if_restarts_may_hang()
