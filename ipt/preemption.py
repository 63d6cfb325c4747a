"""Stopping a run cleanly when it is told to: SIGTERM (what SLURM, Kubernetes and torchrun send before
they kill a job) and SIGINT (Ctrl-C).

The first signal only asks: the trainer finishes the optimizer step in progress, writes a checkpoint at
that step and returns, so `--resume` loses no work. All ranks of a job stop at the same step (the trainer
agrees on it with the other ranks at the end of every step). A second Ctrl-C (SIGINT) stops at once, the
usual way (KeyboardInterrupt), for a user who cannot wait; further SIGTERMs change nothing, because a
worker under SLURM and torchrun gets one from each of them, moments apart, and the kill that follows
SIGTERM is the scheduler's SIGKILL anyway. Schedulers wait a grace period between the two (SLURM's
KillWait, 30 s by default; torchrun's 30 s): a checkpoint of the paper's model takes seconds.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_status(signum: int) -> int:
    """The shell's status of a process ended by a signal (143 for SIGTERM, 130 for SIGINT), which
    schedulers and wrappers read as 'stopped by that signal'."""
    return 128 + signum


class StopRequests:
    """`with StopRequests() as stop: ... stop.signum` -- None, or the first stop signal received.

    Handlers are installed only in the main thread (Python delivers signals there; elsewhere the
    process's handlers stay as they are), and the previous ones are restored on exit."""

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            again = " (press Ctrl-C again to stop at once)" if signum == signal.SIGINT else ""
            # os.write, not print: a handler may interrupt a print in progress, and print is not reentrant.
            os.write(2, f"\n{signal_name(signum)} received: finishing this step and writing a checkpoint{again}\n"
                        .encode())
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """For worker processes (a DataLoader's worker_init_fn, hence the unused worker id): a scheduler's
    SIGTERM or a terminal's Ctrl-C goes to every process of the job, and a worker that died of it would
    break the main process's last step and checkpoint. Workers end when the main process ends their
    loader, when it is gone (torch's workers watch their parent), or at its exit (end_leftover_workers,
    which the main process registers: register_worker_cleanup). Workers started under
    stop_signals_blocked() get here with the signals still blocked, so one sent while they started is
    pending, and ignoring it discards it."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def die_with_parent(parent: int) -> None:
    """For worker processes: the kernel SIGKILLs this process the moment its parent ends -- strictly, the
    thread of `parent` (its pid) that started it, here the trainer's main thread, which iterates the
    loader (Linux; elsewhere nothing). torch's DataLoader workers notice a dead parent only at their next
    check, every 5 s, and meanwhile hold its sockets open -- a killed rank's process-group connections
    among them, which delays the restart of an elastic job."""
    if not sys.platform.startswith("linux"):
        return
    try:
        done = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # no prctl: torch's own check still ends the worker
        return
    if done == 0 and os.getppid() != parent:  # the parent ended before the request took effect
        os._exit(1)


def start_worker(worker_id: int | None = None, parent: int | None = None) -> None:
    """A DataLoader's worker_init_fn (with functools.partial(start_worker, parent=os.getpid())):
    ignore_stop_signals, then die_with_parent(parent) when the parent's pid is given."""
    ignore_stop_signals(worker_id)
    if parent is not None:
        die_with_parent(parent)


@contextlib.contextmanager
def stop_signals_blocked():
    """Holds SIGTERM and SIGINT back from the calling thread while worker processes are started in it (they
    inherit the mask): torch's worker start-up installs a SIGTERM handler that ends the worker long before
    our worker_init_fn can ignore the signal, so a scheduler's SIGTERM to the process group arriving then
    would kill a worker. The main process receives what arrived meanwhile when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def end_leftover_workers() -> None:
    """At the main process's exit, kills the daemonic worker processes still alive (DataLoader workers
    whose loader was never shut down, as after an error). multiprocessing's own exit hook would send them
    SIGTERM, which they ignore, and then wait for them forever."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


_cleanup_registered = False


def register_worker_cleanup() -> None:
    """Registers end_leftover_workers once, in the main process (call it where workers are started).
    atexit runs hooks last-registered first, so it runs before multiprocessing's, which was registered
    when multiprocessing was imported."""
    global _cleanup_registered
    if not _cleanup_registered:
        atexit.register(end_leftover_workers)
        _cleanup_registered = True
