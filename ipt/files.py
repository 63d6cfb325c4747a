"""Writing files so that no reader ever sees half of one: the toolkit's checkpoints, models, images and caches."""

from __future__ import annotations

import os
import uuid
from pathlib import Path


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
