"""Ending a distributed job promptly, with the cause, when one of its ranks fails.

torch's collectives wait for every rank. When one rank raises or dies, the others block in their next
collective until the process-group timeout -- NCCL does not notice a dead peer at all -- and a rank that
is busy with work of its own (a scan, a validation pass) does not notice anything. So every rank runs a
watchdog thread that talks to the others through the job's key-value store (the TCPStore that torchrun
or init_process_group set up), beside the collectives:

- A rank that raises posts "rank R failed: <error>" before it exits. Only the first post is kept, so every
  rank reports the cause, not the errors it caused elsewhere (a peer's closed socket, say).
- Every rank counts a heartbeat up each `interval` and watches the next rank's (a ring: the store sees
  a few requests per rank per second whatever the job's size). A heartbeat that stands still for
  `heartbeat_timeout` seconds -- SIGKILL, the OOM killer, a machine gone -- is posted by its watcher.
  The beat comes from a thread, so it shows that the process lives, not that it makes progress: a rank
  that lives but is stuck is caught by the process-group timeout in a collective, and by `wait_timeout`
  at a barrier.
- Each watchdog polls for a posted failure and ends its process with it: os._exit, because the main
  thread may be blocked inside a collective that nothing else interrupts. It first lets a checkpoint
  write in progress finish (`critical`), and waits a few seconds until every rank has read the failure,
  since the store may live in a process that is about to end.
- `barrier` and `stage` wait on the store instead of in a collective, so rank-0-only work (checkpoint
  writes, validation) and start-up (scanning a data set) may take longer than the process-group timeout,
  and they raise PeerFailedError as soon as any rank fails.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable

from ..errors import IPTError

FAILURE = "failure"  # the first failure posted: "rank R failed: ..." or "rank R stopped responding: ..."
# Keys are set, never counted up, so that a request retried after a lost reply cannot count twice.
ACK = "ack/{rank}"  # the rank has seen the failure (set by its watcher when it is dead: it never will)
ACK_WAIT_S = 3.0  # how long a rank that ends because of a failure waits for the others to have seen it
GRACE_S = 20.0  # how long the main thread may take to end by itself once it handles a failure
HEARTBEAT_INTERVAL_S = 1.0
EXIT_CODE = 1
STORE_RETRY_S = 3.0  # how long a store that stopped answering is retried before the job counts as gone


class PeerFailedError(IPTError, RuntimeError):
    """Another rank of the job failed (the message says which, and why), so this rank stops too."""


def describe(error: BaseException, limit: int = 2000) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


_live: list["Watchdog"] = []


def _forget_in_forked_child() -> None:
    # A forked child (a DataLoader worker) holds a copy of the watchdog but not its thread, and shares its
    # socket: it must never speak for the rank (atexit's close() would mark the rank finished).
    for watchdog in _live:
        watchdog._closed = True
    _live.clear()


os.register_at_fork(after_in_child=_forget_in_forked_child)


class Watchdog:
    """The failure channel of one rank.

    connect(timeout_s) returns a client of the job's store, in the same namespace on every rank (it is
    called again to reconnect). Every rank must call barrier() and stage() in the same order (a mismatch
    is an error, not a hang). wait_timeout bounds a barrier; critical_timeout bounds how long an ending
    watchdog waits for a `critical` block."""

    def __init__(self, connect: Callable, rank: int, world: int, heartbeat_timeout: float,
                 wait_timeout: float = 3600.0, critical_timeout: float = 600.0, interval: float = HEARTBEAT_INTERVAL_S):
        if heartbeat_timeout <= 2 * interval:
            raise ValueError(f"heartbeat_timeout ({heartbeat_timeout} s) must be more than two heartbeat intervals "
                             f"({interval} s)")
        self.connect, self.rank, self.world = connect, rank, world
        self.heartbeat_timeout, self.wait_timeout = heartbeat_timeout, wait_timeout
        self.critical_timeout, self.interval = critical_timeout, interval
        self.store = connect(heartbeat_timeout)
        self._barriers = 0
        self._stage_depth = 0
        self._failure: str | None = None
        self._acked = False
        self._handled_at: float | None = None  # when the main thread took a failure in hand (raised it)
        self._in_barrier = False  # the main thread polls the store itself: it will raise, not hang
        self._closed = False
        self._neighbour_dead = False
        self._host_done = False  # rank 0 finished cleanly: a store that goes away now went with it
        self._store_gone, self._store_error = False, ""
        self._critical = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=f"ipt-watchdog-rank{rank}", daemon=True)

    # --- talking to the store -------------------------------------------------------------------------
    def _call(self, request: Callable):
        """request(store), retried on a fresh connection while the store stops answering for up to
        STORE_RETRY_S; then PeerFailedError, since the store's host (rank 0 or its torchrun agent) is gone."""
        first_error_at = None
        while not self._store_gone:
            try:
                return request(self.store)
            except RuntimeError as error:  # DistNetworkError, DistStoreError
                first_error_at = first_error_at or time.monotonic()
                # After rank 0 finished, a store that stops answering has simply gone with it.
                if self._host_done or time.monotonic() - first_error_at > STORE_RETRY_S:
                    self._store_gone = True
                    self._store_error = str(error)
                    break
                self._reconnect()
        raise PeerFailedError(f"lost the job's store ({self._store_error}); the process hosting it (rank 0, or its "
                              "node's torchrun agent) has ended")

    def _reconnect(self) -> None:
        try:
            self.store = self.connect(self.heartbeat_timeout)
        except RuntimeError:  # connect() fails fast when nothing listens any more
            time.sleep(self.interval / 4)

    # --- the failure record -------------------------------------------------------------------------
    def post_failure(self, message: str, by_main: bool = True) -> str:
        """Records `message` as the job's failure unless one is recorded already; returns the one that is.
        by_main: the main thread posts it and will end the process itself (the watchdog gives it GRACE_S)."""
        try:
            first = self._call(lambda s: s.compare_set(FAILURE, "", message)).decode(errors="replace")
        except PeerFailedError:  # the store is gone: this rank's own message is all there is
            first = message
        self._failure = self._failure or first
        if by_main:
            self._handled_at = self._handled_at or time.monotonic()
        return first

    def failure(self) -> str | None:
        """The job's failure, if any rank has posted one (never blocks)."""
        if self._failure is None and self._call(lambda s: s.check([FAILURE])):
            self._failure = self._call(lambda s: s.get(FAILURE)).decode(errors="replace")
        return self._failure

    def _acknowledge(self) -> None:
        if not self._acked:
            self._acked = True
            try:
                self._call(lambda s: s.set(ACK.format(rank=self.rank), ""))
            except PeerFailedError:
                pass

    def _wait_for_acks(self) -> None:
        """Gives the other ranks up to ACK_WAIT_S to read the failure before this process (which may host
        the store, as rank 0 does outside torchrun) ends."""
        self._acknowledge()
        deadline = time.monotonic() + ACK_WAIT_S
        try:
            acks = [ACK.format(rank=r) for r in range(self.world)]
            while not self.store.check(acks) and time.monotonic() < deadline:
                time.sleep(0.05)
        except RuntimeError:
            pass

    # --- what the main thread calls ------------------------------------------------------------------
    def barrier(self, name: str) -> None:
        """Waits until every rank reached this barrier. Raises PeerFailedError as soon as a rank fails,
        when a rank reached a barrier of another name here (the ranks run different code), and when ranks
        that live have not arrived after wait_timeout seconds (they are stuck)."""
        self._barriers += 1
        key = f"barrier/{self._barriers}"
        arrivals = [f"{key}/rank{r}" for r in range(self.world)]
        started = time.monotonic()
        self._in_barrier = True
        try:
            first = self._call(lambda s: s.compare_set(f"{key}/name", "", name)).decode(errors="replace")
            if first != name:
                raise self._fail(f"rank {self.rank} reached the {name!r} barrier where another rank reached "
                                 f"{first!r}: the ranks run different code")
            self._call(lambda s: s.set(arrivals[self.rank], ""))
            delay = 0.005
            while not self._call(lambda s: s.check(arrivals)):
                failure = self.failure()
                if failure is not None:
                    self._acknowledge()
                    raise PeerFailedError(failure)
                if time.monotonic() - started > self.wait_timeout:
                    missing = [r for r, arrival in enumerate(arrivals) if not self._call(lambda s: s.check([arrival]))]
                    raise self._fail(f"rank(s) {missing} did not reach the {name!r} barrier within wait_timeout "
                                     f"({self.wait_timeout:g} s) although alive: stuck, or slower than that setting allows")
                time.sleep(delay)
                delay = min(2 * delay, 0.5)
        except PeerFailedError:
            self._handled_at = self._handled_at or time.monotonic()  # the main thread raises it: give it time
            raise
        finally:
            self._in_barrier = False

    def _fail(self, message: str) -> PeerFailedError:
        """Posts a failure the main thread found and acknowledges it; returns the job's failure to raise."""
        first = self.post_failure(message)
        self._acknowledge()
        return PeerFailedError(first)

    def agree(self, flag: bool, name: str = "agree") -> bool:
        """True on every rank if `flag` is true on every rank (waits for all, on the store)."""
        key = f"agree/{self._barriers + 1}"
        self._call(lambda s: s.add(key, 0 if flag else 1))
        self.barrier(name)
        return self._call(lambda s: s.add(key, 0)) == 0

    @contextmanager
    def guard(self):
        """Posts any error raised inside as this rank's failure, so that the other ranks stop too. An error
        that followed another rank's failure (a peer's closed socket) is raised as that failure."""
        try:
            yield
        except PeerFailedError:
            raise
        except BaseException as error:
            if isinstance(error, SystemExit) and error.code in (0, None):
                raise
            ours = f"rank {self.rank} failed: {describe(error)}"
            first = str(self._fail(ours))
            if first != ours:
                raise PeerFailedError(f"{first} (then on this rank: {describe(error, 300)})") from error
            raise

    @contextmanager
    def stage(self, name: str):
        """A block every rank runs, then waits for all: it succeeds on every rank or raises on every rank.
        A stage inside a stage only guards (Trainer's start-up inside pretrain's): the outermost waits."""
        self._stage_depth += 1
        try:
            with self.guard():
                yield
                if self._stage_depth == 1:
                    self.barrier(name)
        finally:
            self._stage_depth -= 1

    @contextmanager
    def critical(self):
        """Work the watchdog must not cut short (writing a checkpoint): it waits for the block to end."""
        with self._critical:
            yield

    def start(self) -> None:
        _live.append(self)
        self._thread.start()
        atexit.register(self.close)  # a script that never calls teardown() still leaves as a finished rank

    def close(self, error: BaseException | None = None) -> None:
        """Marks this rank finished and stops watching -- or, when `error` ends it (an exception raised
        outside any guard) or a failure was posted, reports that and keeps watching, as a backstop that
        ends the process if its shutdown hangs (destroying a process group whose peers are gone), until
        stop(). At interpreter exit (atexit) an uncaught exception counts as `error`."""
        if self._closed:
            return
        self._closed = True
        error = error or getattr(sys, "last_value", None)
        if error is not None and not (isinstance(error, SystemExit) and error.code in (0, None)):
            self.post_failure(f"rank {self.rank} failed: {describe(error)}")
        try:
            failed = self.failure() is not None
        except PeerFailedError:  # the store is gone: after rank 0's clean exit that is no failure
            failed = not self._host_done
        if failed:
            self._wait_for_acks()
            return
        try:
            if self._store_gone:
                raise RuntimeError("the store went with rank 0")
            self.store.set(f"done/{self.rank}", "")  # a rank that ends is not a rank that died
            if self.rank == 0:  # outside torchrun rank 0 hosts the store: it leaves last
                deadline = time.monotonic() + self.heartbeat_timeout
                done = [f"done/{r}" for r in range(self.world)]
                while not self.store.check(done) and time.monotonic() < deadline:
                    time.sleep(0.05)
        except RuntimeError:
            pass
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    # --- the watchdog thread -------------------------------------------------------------------------
    def _watch(self) -> None:
        try:
            self._watch_until_stopped()
        except Exception as error:  # a bug here must not pass for this rank's death elsewhere
            self._end_process(self.post_failure(f"rank {self.rank}'s watchdog failed: {describe(error)}", by_main=False))

    def _watch_until_stopped(self) -> None:
        neighbour = (self.rank + 1) % self.world
        seen, changed_at = None, time.monotonic()
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            try:
                self._call(lambda s: s.add(f"beat/{self.rank}", 1))
                beats = self._call(lambda s: s.add(f"beat/{neighbour}", 0))
                self._host_done = self._host_done or self._call(lambda s: s.check(["done/0"]))
                if beats != seen:
                    seen, changed_at = beats, now
                elif (now - changed_at > self.heartbeat_timeout and not self._neighbour_dead
                      and not self._call(lambda s: s.check([f"done/{neighbour}"]))):
                    self._neighbour_dead = True
                    self._call(lambda s: s.set(ACK.format(rank=neighbour), ""))
                    self.post_failure(f"rank {neighbour} stopped responding: no heartbeat for {now - changed_at:.0f} s "
                                      "(killed, out of memory, or its machine is down)", by_main=False)
                failure = self.failure()
            except PeerFailedError as lost:  # the store is gone
                if self._host_done:
                    return  # with rank 0, which finished: this rank is finishing too
                failure = self._failure or str(lost)
            if failure is None or self._stop.is_set():
                continue
            main_handles_it = self._in_barrier or (self._handled_at is not None and now - self._handled_at < GRACE_S)
            if not main_handles_it:
                self._end_process(failure)

    def _end_process(self, failure: str) -> None:
        self._critical.acquire(timeout=self.critical_timeout)
        print(f"error (rank {self.rank}): {failure}; ending this rank too", file=sys.stderr, flush=True)
        sys.stdout.flush()
        self._wait_for_acks()
        os._exit(EXIT_CODE)
