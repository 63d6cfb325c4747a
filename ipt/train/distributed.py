"""Distributed set-up: torchrun's environment -> a process group (NCCL on GPUs, gloo on CPUs) with a
timeout, and a watchdog (ipt.train.watchdog) that ends the whole job promptly, with the cause, when any
rank fails."""

from __future__ import annotations

import os
import socket
import sys
import uuid
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

from ..data.errors import DataLayoutError
from ..devices import resolve_device
from .config import TrainConfig
from .watchdog import PeerFailedError, Watchdog

T = TypeVar("T")

__all__ = ["Distributed", "PeerFailedError", "setup", "join", "teardown", "barrier", "all_ranks_agree"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job, and the job-wide agreement points (no-ops for one process)."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    watchdog: Watchdog | None = field(default=None, compare=False, repr=False)
    _nodes: tuple | None = field(default=None, compare=False, repr=False)  # once_per_node's groups, made on first use

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def stage(self, name: str):
        """`with d.stage("start-up"): ...` -- runs on every rank; if it fails on any rank, it raises on all
        (the failing rank's error there, PeerFailedError naming it elsewhere), never leaving ranks waiting."""
        return self.watchdog.stage(name) if self.watchdog else nullcontext()

    def guard(self):
        """`with d.guard(): ...` -- an error raised inside ends the other ranks too, with this error."""
        return self.watchdog.guard() if self.watchdog else nullcontext()

    def barrier(self, name: str) -> None:
        """Waits for every rank on the store, not in a collective, so the wait may outlast dist_timeout
        (up to wait_timeout) while every rank lives."""
        if self.watchdog:
            self.watchdog.barrier(name)

    def critical(self):
        """A block (a checkpoint write) that a failure elsewhere lets finish before this process ends."""
        return self.watchdog.critical() if self.watchdog else nullcontext()

    def once_per_node(self, name: str, compute: Callable[[], T], fingerprint: Callable[[T], str]) -> T:
        """compute() on one rank of each machine (the lowest), its result sent to the machine's other
        ranks -- a data set's scan, say, which reads every file: once per node, not once per rank -- and
        an error on every rank if the machines' results differ, as when a node's local copy of the data
        set is incomplete. fingerprint(result): a short description that differs when results do ("7
        images, sha256 ..."), which the error shows per node. A collective: every rank calls it.

        The ranks wait for compute() at a barrier on the store (a first scan of ImageNet outlasts a
        collective's timeout), then the results travel over gloo, within each machine."""
        if self.world == 1:
            return compute()
        group, leader = self._node_group()
        result = compute() if self.rank == leader else None
        self.barrier(name)
        if group is not None:
            box = [result]
            dist.broadcast_object_list(box, src=leader, group=group)
            result = box[0]
        seen = [None] * self.world
        dist.all_gather_object(seen, (_node_name(), fingerprint(result)))
        if len({found for _, found in seen}) > 1:
            views = "; ".join(f"{node}: {found}" for node, found in dict(seen).items())
            raise DataLayoutError(f"the nodes of the job found different data ({views}): every node must see the "
                                  "same files")
        return result

    def _node_group(self) -> tuple[object | None, int]:
        """(the gloo group of this machine's ranks -- None when it is this rank alone --, its lowest rank).
        Made once, by every rank together, as torch.distributed requires."""
        if self._nodes is None:
            names = [None] * self.world
            dist.all_gather_object(names, _node_name())
            by_node: dict[str, list[int]] = {}
            for rank, node in enumerate(names):
                by_node.setdefault(node, []).append(rank)
            shared = [ranks for ranks in by_node.values() if len(ranks) > 1]
            group = None
            if shared:  # new_subgroups_by_enumeration: every rank makes every group, in one order
                group, _ = dist.new_subgroups_by_enumeration(shared, backend="gloo")
            mine = by_node[names[self.rank]]
            object.__setattr__(self, "_nodes", (group if len(mine) > 1 else None, mine[0]))
        return self._nodes

    def most(self, values: torch.Tensor) -> torch.Tensor:
        """The element-wise maximum of `values` (a small tensor on this rank's device) over every rank: a
        collective, so every rank must call it at the same point. One process: `values` itself."""
        if self.world > 1:
            dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return values


_current: Distributed | None = None


def setup(device: str | None = None, timeout: float = TrainConfig.dist_timeout,
          heartbeat_timeout: float = TrainConfig.heartbeat_timeout,
          wait_timeout: float = TrainConfig.wait_timeout) -> Distributed:
    """Joins the process group when launched by torchrun (RANK / WORLD_SIZE / LOCAL_RANK set), and picks
    this process's device: its local GPU when there is one, else the CPU. Called again, it returns the
    same Distributed (the first call's timeouts hold). The timeouts are TrainConfig's settings of the
    same names: `timeout` is dist_timeout."""
    global _current
    if _current is not None:
        if device is not None and _resolve(device) != _current.device:
            raise ValueError(f"this process already trains on {_current.device}, not {device}")
        return _current
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(f"cuda:{local_rank}" if device is None and torch.cuda.is_available() else device or "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    device = _resolve(device)
    if world == 1 and not dist.is_initialized():
        return Distributed(rank, world, local_rank, device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout))
    rank, world = dist.get_rank(), dist.get_world_size()
    if rank == 0:
        _warn_if_restarts_may_hang()
    if world == 1:
        return Distributed(rank, world, local_rank, device)
    watchdog = Watchdog(_store_connector(_run_namespace()), rank, world, heartbeat_timeout,
                        wait_timeout=wait_timeout, critical_timeout=timeout)
    watchdog.start()
    _current = Distributed(rank, world, local_rank, device, watchdog)
    return _current


def _warn_if_restarts_may_hang() -> None:
    """torchrun's agents lend their rendezvous store to the workers by default, and a restarted worker
    group may then find the previous attempt's process-group keys there and hang connecting to ranks that
    are gone (pytorch/pytorch#135712; seen with torch 2.13 on gloo). The workers cannot change how their
    agent was started, so they say what to do, once, when restarts are asked for."""
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0")) > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        warnings.warn("torchrun --max-restarts with the rendezvous store shared with the workers: a restart may hang "
                      "(pytorch/pytorch#135712); start torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 set",
                      RuntimeWarning, stacklevel=3)


def join(config: TrainConfig, device: str | None = None) -> Distributed:
    """setup() with a training config's timeouts."""
    return setup(device, timeout=config.dist_timeout, heartbeat_timeout=config.heartbeat_timeout,
                 wait_timeout=config.wait_timeout)


def _node_name() -> str:
    """Which machine this rank runs on: torchrun's node rank (GROUP_RANK), else the host's name and boot id
    (ranks started by hand; containers on different machines may share a host name)."""
    group_rank = os.environ.get("GROUP_RANK")
    if group_rank is not None:
        return f"node {group_rank}"
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()[:8]
    except OSError:
        boot = ""
    return f"{socket.gethostname()} {boot}".strip()


def _resolve(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _run_namespace() -> str:
    """A name for this run's keys in the store, the same on every rank: drawn by rank 0, broadcast once.
    (Restart counters are not: torchrun agents count their restarts each on their own.)"""
    name = [f"ipt-watchdog/{uuid.uuid4().hex}" if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(name, src=0)
    return name[0]


def _store_connector(namespace: str):
    """connect(timeout_s) -> a client of the job's store, under `namespace`.

    The watchdog gets a connection of its own (MASTER_ADDR:MASTER_PORT: torchrun's agent store, or the
    one rank 0 hosts for init_process_group), because a store client serialises its requests and the
    process group may hold its connection in a long blocking wait (NCCL's start-up exchange)."""
    address, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")

    def connect(timeout_s: float):
        """A client whose requests wait up to timeout_s; a RuntimeError at once if the store is gone."""
        if address and port:
            try:  # TCPStore would retry a refused connection for the whole timeout
                socket.create_connection((address, int(port)), timeout=2.0).close()
            except OSError as error:
                raise RuntimeError(f"the store at {address}:{port} does not answer ({error})") from None
            store = dist.TCPStore(address, int(port), is_master=False, timeout=timedelta(seconds=timeout_s),
                                  wait_for_workers=False)
        else:
            # A process group made another way (a file:// store, say): share its store. Its start-up
            # exchange then delays heartbeats, but that lasts seconds, well inside heartbeat_timeout.
            try:
                store = dist.distributed_c10d._get_default_store()
            except ValueError as error:  # the process group is gone
                raise RuntimeError(str(error)) from None
        return dist.PrefixStore(namespace, store)

    return connect


def teardown() -> None:
    """Marks this rank finished (a finished rank is not a dead one) and leaves the process group. After a
    failure the watchdog guards the leaving itself: it ends the process if that hangs. Call it from a
    `finally:` -- an exception passing through then counts as this rank's failure."""
    global _current
    current, _current = _current, None
    watchdog = current.watchdog if current is not None else None
    try:
        if watchdog is not None:
            # Called from a `finally`, an exception on its way out is this rank's failure, not a finish.
            watchdog.close(error=sys.exc_info()[1])
        if dist.is_initialized():
            dist.destroy_process_group()
    finally:
        if watchdog is not None:
            watchdog.stop()


# Module-level agreement points from before Distributed had them; nothing in the toolkit calls them.
def _deprecated(old: str, new: str) -> None:
    warnings.warn(f"ipt.train.distributed.{old} is deprecated: use {new}", DeprecationWarning, stacklevel=3)


def barrier() -> None:
    """Deprecated: join(config).barrier(name). Waits for every rank: on the store when this process
    joined with setup(), else a collective."""
    _deprecated("barrier()", "join(config).barrier(name)")
    if _current is not None:
        _current.barrier("barrier")
    elif dist.is_initialized():
        dist.barrier()


def all_ranks_agree(flag: bool) -> bool:
    """Deprecated: join(config).watchdog.agree(flag). True only if `flag` is true on every rank."""
    _deprecated("all_ranks_agree(flag)", "join(config).watchdog.agree(flag)")
    if _current is not None and _current.watchdog is not None:
        return _current.watchdog.agree(flag)
    if not dist.is_initialized():
        return flag
    t = torch.tensor([1 if flag else 0], dtype=torch.int32)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
