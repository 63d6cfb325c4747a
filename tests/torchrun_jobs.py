"""Helpers for the tests that run torchrun jobs on this machine: two torchrun agents stand for two nodes
of one job, sharing one cache folder as nodes share an NFS home."""

import os
import socket
import subprocess
import sys
import time

import pytest


def torchrun(*args) -> list[str]:
    """The command line of `torchrun ARGS` with this Python."""
    return [sys.executable, "-m", "torch.distributed.run", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def job_env(tmp_path) -> dict:
    """The environment of a job's processes: unbuffered output, and one cache folder for all its nodes."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "IPT_CACHE": str(tmp_path / "shared-home-cache")}


def listening(port: int, timeout: float = 60.0) -> None:
    """Waits until the first torchrun agent hosts the rendezvous on `port` (the second one is started then)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"the first torchrun agent never listened on port {port}")


def two_agents(command: list[str], port: int, cwd, envs: list[dict]) -> list[subprocess.Popen]:
    """Two torchrun agents of one job (`command`, its rendezvous on `port`), the first started and
    listening before the second; each with its own environment; output (stderr too) piped."""
    agents = []
    for env in envs:
        agents.append(subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True))
        if len(agents) == 1:
            listening(port)
    return agents


def wait_all(processes, timeout):
    """(seconds until every process ended, their exit codes, their output); a job still running after
    `timeout` is a hang: it is killed and the test fails."""
    started = time.monotonic()
    outputs, codes = [], []
    for p in processes:
        try:
            out, _ = p.communicate(timeout=max(1.0, timeout - (time.monotonic() - started)))
        except subprocess.TimeoutExpired:
            for q in processes:
                q.kill()
            pytest.fail(f"the job was still running after {timeout} s: " + "".join(q.communicate()[0][-2000:] for q in processes))
        outputs.append(out)
        codes.append(p.returncode)
    return time.monotonic() - started, codes, "\n".join(outputs)
