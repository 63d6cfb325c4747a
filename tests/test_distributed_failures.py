"""A rank that fails -- at start-up, mid-run, killed, or stuck -- ends the whole job promptly, with its error.

The jobs run as a cluster user runs them: two torchrun agents on this machine, as two nodes of one job
(`--nnodes 2 --nproc-per-node 1 --rdzv-backend c10d`, no restarts), sharing one cache folder as nodes
share an NFS home. Within one node torchrun itself stops the other workers when one fails; across nodes
nothing but the toolkit's watchdog does, so this is the set-up that used to hang until torch's timeout.
The watchdog-only cases start the ranks by hand (RANK, WORLD_SIZE, MASTER_ADDR/PORT), so that rank 0
hosts the job's store, as under Slurm or mpirun.
"""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from torchrun_jobs import free_port, job_env, torchrun, two_agents, wait_all

FAULTS = str(Path(__file__).with_name("distributed_faults.py"))
PROMPT_S = 60  # "ends within a minute"
PRETRAIN = ["--config", "tiny", "--steps", "6", "--batch-size", "4", "--workers", "1", "--no-progress",
            "--out", "run"]


def two_nodes(tmp_path, fault, *args, timeout=PROMPT_S):
    """The first agent hosts the rendezvous; the second node's rank fails. (Were it the rendezvous host,
    its agent's exit would make torchrun stop the other node: the case that hung is this one.)"""
    port = free_port()
    command = torchrun("--nnodes", "2", "--nproc-per-node", "1", "--max-restarts", "0", "--rdzv-backend", "c10d",
                       "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", f"{fault}-{port}", FAULTS, fault, *args)
    envs = [{**job_env(tmp_path), "IPT_TEST_FAULTY": faulty} for faulty in ("0", "1")]
    return wait_all(two_agents(command, port, tmp_path, envs), timeout)


def by_hand(tmp_path, fault, faulty_rank, *args, timeout=PROMPT_S):
    env = {**job_env(tmp_path), "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    ranks = [subprocess.Popen([sys.executable, FAULTS, fault, *args], cwd=tmp_path,
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r), "IPT_TEST_FAULTY": str(int(r == faulty_rank))},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for r in range(2)]
    return wait_all(ranks, timeout)


def _faulty_rank(output: str, healthy_line: str) -> int:
    """The rank the faulty node's worker got (the rendezvous assigns ranks): the other one prints
    healthy_line.format(rank=...) naming it."""
    found = [r for r in (0, 1) if healthy_line.format(rank=r, other=1 - r) in output]
    assert len(found) == 1, output[-4000:]
    return found[0]


def test_a_healthy_two_node_job_still_finishes(tmp_path):
    seconds, codes, output = two_nodes(tmp_path, "none", *PRETRAIN, timeout=300)
    assert codes == [0, 0], output[-3000:]
    assert "done: 6 steps" in output and (tmp_path / "run" / "model.safetensors").is_file()
    assert "error" not in output.lower()


def test_a_rank_failing_at_start_up_ends_the_job(tmp_path):
    seconds, codes, output = two_nodes(tmp_path, "startup-raise", *PRETRAIN)
    assert all(code != 0 for code in codes), output[-3000:]
    cause = "no such data folder: /local/imagenet/train (simulated, on this node only)"
    faulty = _faulty_rank(output, "error (rank {other}): rank {rank} failed: DataLayoutError: " + cause)
    assert f"error (rank {faulty}): {cause}" in output  # the failing rank says why, and so does the other
    assert seconds < PROMPT_S


def test_a_rank_raising_mid_run_ends_the_job(tmp_path):
    seconds, codes, output = two_nodes(tmp_path, "run-raise", *PRETRAIN)
    assert all(code != 0 for code in codes), output[-3000:]
    faulty = _faulty_rank(output, "error (rank {other}): rank {rank} failed: RuntimeError: CUDA out of memory (simulated)")
    assert f"[rank{faulty}]: RuntimeError: CUDA out of memory (simulated)" in output  # the failing rank's traceback
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert seconds < PROMPT_S


def test_a_rank_killed_mid_run_ends_the_job(tmp_path):
    # On gloo the survivor learns of it from its closed socket, so this passes without the watchdog too;
    # on NCCL only the heartbeat tells (test_a_dead_rank_is_found_by_its_missing_heartbeat).
    seconds, codes, output = two_nodes(tmp_path, "run-kill", *PRETRAIN)
    assert all(code != 0 for code in codes), output[-3000:]
    assert "Signal 9 (SIGKILL) received" in output  # torchrun on the killed rank's node
    # The other rank ends with an error instead of waiting: gloo's closed socket, or the watchdog's verdict
    # (NCCL notices nothing: there only the heartbeat, tested below, can tell).
    assert re.search(r"\[rank[01]\]: RuntimeError: \[.*gloo.*\] .*(closed|reset) by peer|error \(rank [01]\)", output)
    assert seconds < PROMPT_S


def test_a_dead_rank_is_found_by_its_missing_heartbeat(tmp_path):
    """The survivor is busy outside any collective, so no socket error can tell it; only the heartbeat."""
    heartbeat_s = 4
    seconds, codes, output = by_hand(tmp_path, "kill-while-busy", 1, "600", str(heartbeat_s))
    assert codes[1] == -9 and codes[0] != 0, output
    assert "error (rank 0): rank 1 stopped responding: no heartbeat for" in output
    assert seconds < heartbeat_s + 15


def test_the_death_of_rank_0_and_the_store_it_hosts_ends_the_others(tmp_path):
    seconds, codes, output = by_hand(tmp_path, "kill-while-busy", 0, "600", "60")
    assert codes[0] == -9 and codes[1] != 0, output
    assert "error (rank 1): lost the job's store" in output
    assert seconds < 20  # long before the heartbeat timeout


def test_a_rank_that_finishes_after_the_store_host_is_not_a_failure(tmp_path):
    seconds, codes, output = by_hand(tmp_path, "finish-late", 1, "600", "4")
    assert codes == [0, 0], output
    assert "rank 0 finished" in output and "rank 1 finished" in output and "error" not in output


def test_an_error_outside_any_guard_still_reaches_the_other_ranks(tmp_path):
    seconds, codes, output = by_hand(tmp_path, "raise-unguarded", 1, "600", "60")
    assert codes == [2, 2], output  # both end with one clear line
    assert "error (rank 1): raised outside any guard" in output
    assert "error (rank 0): rank 1 failed: ConfigError: raised outside any guard" in output
    assert seconds < 20


def test_a_checkpoint_being_written_is_finished_before_the_rank_is_ended(tmp_path):
    seconds, codes, output = by_hand(tmp_path, "raise-while-peer-writes", 1, "600", "60")
    assert codes[0] != 0 and codes[1] != 0, output
    written = output.index("rank 0 wrote its checkpoint")
    assert written < output.index("error (rank 0): rank 1 failed: OSError: disk full (simulated)")
    assert seconds < 20


def test_a_stuck_rank_ends_the_job_at_the_collective_timeout(tmp_path):
    timeout_s = 5
    seconds, codes, output = by_hand(tmp_path, "hang", 1, str(timeout_s), "60")
    assert all(code != 0 for code in codes), output
    assert "rank 0 failed: " in output and "error (rank 1): rank 0 failed" in output  # rank 1 is ended too
    assert timeout_s <= seconds < timeout_s + 20


# --- the agreement points themselves, in one process: two ranks' watchdogs on one real store -----------

@pytest.fixture
def two_ranks():
    """Rank 0's and rank 1's watchdog, each with its own client of one TCPStore. Their threads are not
    started (a watchdog ends its process), so these tests exercise what the main thread calls."""
    import threading

    import torch.distributed as dist

    from ipt.train.watchdog import Watchdog

    server = dist.TCPStore("127.0.0.1", 0, 2, is_master=True, wait_for_workers=False)

    def connect(timeout_s):
        return dist.PrefixStore("test", dist.TCPStore("127.0.0.1", server.port, is_master=False, wait_for_workers=False))

    dogs = [Watchdog(connect, rank, 2, heartbeat_timeout=10, wait_timeout=2) for rank in (0, 1)]

    def both(first, second):
        """Runs first(dogs[0]) and second(dogs[1]) at once; returns what each returned or raised."""
        results = [None, None]

        def call(k, fn):
            try:
                results[k] = fn(dogs[k])
            except BaseException as error:  # noqa: BLE001 -- the test inspects it
                results[k] = error

        threads = [threading.Thread(target=call, args=(k, fn)) for k, fn in enumerate((first, second))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
            assert not t.is_alive(), "a barrier hung"
        return results

    yield both


def _stage_that(fails: bool):
    def run(dog):
        with dog.stage("start-up"):
            if fails:
                raise FileNotFoundError("the data is not on this node")
            time.sleep(0.5)  # the healthy rank is still busy when the other fails
        return "ok"

    return run


def test_a_stage_that_fails_on_one_rank_raises_on_both(two_ranks):
    from ipt.train.watchdog import PeerFailedError

    healthy, failing = two_ranks(_stage_that(False), _stage_that(True))
    assert isinstance(failing, FileNotFoundError)  # the failing rank raises its own error
    assert isinstance(healthy, PeerFailedError)
    assert str(healthy) == "rank 1 failed: FileNotFoundError: the data is not on this node"


def test_a_stage_that_succeeds_everywhere_passes_on_both(two_ranks):
    assert two_ranks(_stage_that(False), _stage_that(False)) == ["ok", "ok"]


def test_the_first_failure_is_the_one_every_rank_reports(two_ranks):
    from ipt.train.watchdog import PeerFailedError

    def cause(dog):
        with dog.guard():
            raise RuntimeError("CUDA out of memory")

    def consequence(dog):
        time.sleep(0.3)  # after the cause is posted
        with dog.guard():
            raise RuntimeError("Connection closed by peer")

    first, second = two_ranks(cause, consequence)
    assert str(first) == "CUDA out of memory"
    assert isinstance(second, PeerFailedError) and isinstance(second.__cause__, RuntimeError)
    assert str(second) == ("rank 0 failed: RuntimeError: CUDA out of memory "
                           "(then on this rank: RuntimeError: Connection closed by peer)")


def test_a_barrier_waits_for_the_slow_rank(two_ranks):
    def slow(dog):
        time.sleep(1.0)  # longer than any poll: the fast rank must really wait
        arrived = time.monotonic()
        dog.barrier("checkpoint")
        return arrived

    def fast(dog):
        dog.barrier("checkpoint")
        return time.monotonic()

    slow_arrived, fast_left = two_ranks(slow, fast)
    assert fast_left >= slow_arrived


def test_ranks_at_different_barriers_fail_instead_of_hanging(two_ranks):
    from ipt.train.watchdog import PeerFailedError

    def validating(dog):
        dog.barrier("validation")

    def checkpointing(dog):
        time.sleep(0.3)
        dog.barrier("checkpoint")

    first, second = two_ranks(validating, checkpointing)
    expected = "rank 1 reached the 'checkpoint' barrier where another rank reached 'validation': the ranks run different code"
    assert isinstance(first, PeerFailedError) and str(first) == expected
    assert isinstance(second, PeerFailedError) and str(second) == expected


def test_a_barrier_gives_up_on_a_living_rank_that_never_arrives(two_ranks):
    from ipt.train.watchdog import PeerFailedError

    def waiting(dog):
        started = time.monotonic()
        try:
            dog.barrier("checkpoint")
        finally:
            waiting.seconds = time.monotonic() - started

    def stuck(dog):
        time.sleep(3.0)  # past the fixture's wait_timeout of 2 s, and never at the barrier

    first, _ = two_ranks(waiting, stuck)
    assert isinstance(first, PeerFailedError)
    assert str(first).startswith("rank(s) [1] did not reach the 'checkpoint' barrier within wait_timeout (2 s)")
    assert 2.0 <= waiting.seconds < 2.6


def test_all_ranks_agree_only_when_every_rank_does(two_ranks):
    assert two_ranks(lambda dog: dog.agree(True), lambda dog: dog.agree(True)) == [True, True]
    assert two_ranks(lambda dog: dog.agree(True), lambda dog: dog.agree(False)) == [False, False]


class _FlakyStore:
    """A store client whose first `failures` requests fail, after `delay` seconds each."""

    def __init__(self, store, failures, delay):
        self.store, self.failures, self.delay = store, failures, delay

    def __getattr__(self, name):
        def request(*args):
            if self.failures > 0:
                self.failures -= 1
                time.sleep(self.delay)
                raise RuntimeError("Connection reset by peer (simulated)")
            return getattr(self.store, name)(*args)

        return request


@pytest.mark.parametrize("delay", [0.0, 3.5])  # an error at once, and one after a slow request
def test_a_store_that_stops_answering_for_a_moment_is_retried(delay):
    import torch.distributed as dist

    from ipt.train.watchdog import STORE_RETRY_S, Watchdog

    server = dist.TCPStore("127.0.0.1", 0, 1, is_master=True, wait_for_workers=False)
    clients = []

    def connect(timeout_s):
        client = dist.TCPStore("127.0.0.1", server.port, is_master=False, wait_for_workers=False)
        clients.append(client)
        return _FlakyStore(client, failures=2 if len(clients) == 1 else 0, delay=delay)

    dog = Watchdog(connect, 0, 1, heartbeat_timeout=10)
    assert delay > STORE_RETRY_S or delay == 0.0
    dog.barrier("checkpoint")  # a one-rank barrier passes once its requests get through
    assert len(clients) == 2 and not dog._store_gone


def test_a_forked_child_never_speaks_for_its_rank():
    from ipt.train import watchdog

    dog = watchdog.Watchdog.__new__(watchdog.Watchdog)  # no store needed: only the fork hook is tested
    dog._closed = False
    watchdog._live.append(dog)
    try:
        read_end, write_end = os.pipe()
        child = os.fork()  # raw fork and a pipe: nothing in the child may wait on a lock of the parent's
        if child == 0:
            os.write(write_end, b"1" if dog._closed else b"0")
            os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 1) == b"1"  # closed in the child: atexit's close() does nothing there
        os.waitpid(child, 0)
        assert dog._closed is False  # and untouched in the parent
    finally:
        watchdog._live.remove(dog)
