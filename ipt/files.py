"""Writing files so that no reader ever sees half of one (the toolkit's checkpoints, models, images and
caches), and one run owning its output folder."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
import uuid
import weakref
from pathlib import Path

from .errors import IPTError


def atomic_write(path: str | os.PathLike, write) -> None:
    """write(tmp_path) into a temporary file in path's folder, then rename it over path.

    The temporary name is unique (random, and created with O_EXCL, which NFS honours too), so any number
    of processes on any number of machines may write the same path at once: each rename is atomic, the
    last one wins, and a reader sees one whole file or another, never a mix. The data is fsynced before
    the rename, so a crash cannot leave the name pointing at unwritten blocks. The file gets the usual
    permissions (0666 less the umask), as if written in place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class OutputInUseError(IPTError, OSError):
    """Another live process owns the output folder (ipt.files.OutputLock)."""


class OutputLock:
    """Exclusive ownership of an output folder by one run, so that two runs never write over each
    other's checkpoints and logs.

    A POSIX record lock (fcntl) on FOLDER/.ipt-run.lock, held while the run lives. Such a lock belongs to
    the process: the kernel drops it when the process ends in any way (a crash or SIGKILL included) and
    forked children (DataLoader workers, which may outlive a killed parent by seconds) do not inherit
    it, so a dead run never leaves the folder stuck; NFS honours it too. Because a process cannot conflict
    with its own POSIX locks, folders held in this process are also kept in a table. The lock file stays
    (removing it would race with the next run taking it) and only says who held it last."""

    NAME = ".ipt-run.lock"
    # Folders this process holds, by resolved path; weak, so that a lock dropped unreleased (a Trainer
    # built and never run) is released by __del__ instead of being kept alive by this table.
    _held_here: "weakref.WeakValueDictionary[str, OutputLock]" = weakref.WeakValueDictionary()

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd: int | None = None

    def _in_use(self, owner: str) -> OutputInUseError:
        return OutputInUseError(f"{self.folder} is in use by another run ({owner}): wait for it to end, or choose "
                                "another --out")

    def acquire(self) -> "OutputLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        key = str(self.folder.resolve())
        if key in self._held_here:
            raise self._in_use(f"pid {os.getpid()}, this very process")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                os.close(fd)
                raise
            owner = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "a process that did not say"
            os.close(fd)  # this process holds no lock on the file, so closing releases nothing
            raise self._in_use(owner) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                  .encode(), 0)
        self._fd, self._key = fd, key
        self._held_here[key] = self
        return self

    def check_free(self) -> None:
        """Raises OutputInUseError if a live run holds the folder (taking the lock and letting it go)."""
        if self.folder.is_dir() and not self.held:
            self.acquire().release()

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            self._held_here.pop(self._key, None)
            os.close(fd)  # closing the process's descriptor of the file drops its lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):  # a Trainer dropped without finishing must not keep its folder locked
        self.release()
