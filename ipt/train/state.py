"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint holds the model (config, tasks, weights), the optimizer and scheduler states, the RNG
states, the step and the data position (epoch and next batch), and the precision the run trains in (with
its loss scaler's state: ipt.train.precision.checkpoint_state). Files are written atomically (a
temporary file renamed into place) under OUT/checkpoints/step_NNNNNNNN.pt, the last K are kept, and
a failed write (full disk, no permission) is a clear error that leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import IPTError
from ..files import atomic_write
from ..model.checkpoint import FORMAT, CheckpointError, model_payload, nonfinite_tensors

TRAIN_FORMAT = FORMAT + "-train"
NAME = re.compile(r"step_(\d{8})\.pt$")


class CheckpointWriteError(IPTError, OSError):
    """A checkpoint could not be written; the previous one is intact."""


@dataclass
class Position:
    step: int = 0  # optimizer steps done
    epoch: int = 0
    next_batch: int = 0  # the first batch of `epoch` not trained on yet
    world: int = 1  # ranks (a position is only exact for the same world size)


def check_writable(out: Path) -> None:
    """Fails early and clearly if checkpoints could not be written to `out`."""
    try:
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        probe = out / "checkpoints" / ".write_test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as error:
        raise CheckpointWriteError(f"cannot write to the output folder {out}: {error.strerror or error}") from None


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def checkpoints(out: Path) -> list[Path]:
    """Checkpoints in `out`, oldest first."""
    folder = out / "checkpoints"
    return sorted(p for p in folder.glob("step_*.pt") if NAME.search(p.name)) if folder.is_dir() else []


class NonFiniteWeightsError(IPTError, FloatingPointError):
    """Weights hold inf or NaN: they are not written over good ones."""


def check_finite(model, what: str) -> None:
    """Raises NonFiniteWeightsError, before anything is written, if a parameter or buffer of `model`
    holds inf or NaN."""
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        raise NonFiniteWeightsError(f"{what} is not written: {len(bad)} tensors hold inf or NaN (e.g. {bad[0]}), so "
                                    "the run diverged; the earlier checkpoints are kept")


def save(out: Path, model, optimizer, scheduler, position: Position, config: dict, keep: int, *,
         precision: dict | None = None) -> Path:
    """Writes the checkpoint of `position.step` atomically and keeps the last `keep`; weights that are
    not finite are refused (NonFiniteWeightsError) before anything is written or rotated out. precision:
    ipt.train.precision.checkpoint_state() of the run (None: not recorded; a resume then takes none)."""
    path = out / "checkpoints" / f"step_{position.step:08d}.pt"
    check_finite(model, f"checkpoint {path}")
    payload = {
        "format": TRAIN_FORMAT, "version": 1, "model": model_payload(model), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "rng": rng_states(), "position": vars(position).copy(), "config": config,
        "precision": precision,
    }
    previous = checkpoints(out)
    try:
        atomic_write(path, lambda tmp: torch.save(payload, tmp))
    except OSError as error:
        last = f"; the last good checkpoint is {previous[-1]}" if previous else ""
        raise CheckpointWriteError(f"could not write checkpoint {path} ({error.strerror or error}){last}") from None
    for old in checkpoints(out)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def saved_config(out: Path) -> dict | None:
    """The training settings of the newest readable checkpoint in `out` (TrainConfig.to_dict() of the
    run), None if there is none. Memory-mapped: the weights are not read."""
    for path in reversed(checkpoints(out)):
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # a damaged file: load_latest will say so; try the one before
            continue
        if isinstance(saved, dict) and saved.get("format") == TRAIN_FORMAT and isinstance(saved.get("config"), dict):
            return saved["config"]
    return None


def set_aside_newer(out: Path, resumed: Path) -> list[Path]:
    """Renames the checkpoints newer than the one a run resumed from (unreadable, or holding inf/NaN:
    load_latest passed over them) to NAME.unusable, so that the rotation, which keeps the newest names,
    does not keep them and delete the resumed run's good ones. Returns the new names."""
    moved = []
    for path in checkpoints(out):
        if path.name > resumed.name:
            moved.append(path.with_name(path.name + ".unusable"))
            path.replace(moved[-1])
    return moved


def load_step(out: Path, step: int, map_location="cpu") -> tuple[dict, Path]:
    """The checkpoint of `step` in `out`, which another rank (rank 0) chose to resume from."""
    path = out / "checkpoints" / f"step_{step:08d}.pt"
    try:
        return torch.load(path, map_location=map_location, weights_only=True), path
    except Exception as error:
        raise CheckpointError(f"--resume: rank 0 resumes from {path}, which this rank cannot read ({error}); every "
                              "node must see the same --out") from None


def load_latest(out: Path, map_location="cpu") -> tuple[dict, Path]:
    """The newest readable checkpoint in `out` (a damaged newest one falls back to the one before)."""
    found = checkpoints(out)
    if not found:
        raise CheckpointError(f"--resume: no checkpoint in {out / 'checkpoints'}")
    problems = []
    for path in reversed(found):
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
            if not (isinstance(state, dict) and state.get("format") == TRAIN_FORMAT):
                problems.append(f"{path.name}: not a training checkpoint")
            elif nonfinite_tensors(state["model"]["state_dict"]):  # written before this toolkit refused such weights
                problems.append(f"{path.name}: weights hold inf or NaN")
            else:
                if problems:  # newer ones were passed over: say so, the run goes back further than asked
                    warnings.warn(f"--resume: passed over {'; '.join(problems)}; resuming from {path.name}",
                                  RuntimeWarning, stacklevel=2)
                return state, path
        except Exception as error:  # a damaged file: try the one before
            problems.append(f"{path.name}: {error}")
    raise CheckpointError(f"--resume: no readable checkpoint in {out / 'checkpoints'} ({'; '.join(problems)})")
