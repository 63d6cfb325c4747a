"""Run logs: a progress bar, log.csv in the output folder, and TensorBoard event files when the
tensorboard package is installed. Only rank 0 writes."""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from ..files import atomic_write

# log.csv's columns: these, with the model family's loss terms after "loss" (IPT: l1, contrastive; MPRNet:
# charbonnier, edge) and the loss of each task at the end.
POSITION_FIELDS = ("step", "epoch", "lr", "loss")
SPEED_FIELDS = ("steps_per_s", "samples_per_s", "data_wait_s", "compute_s", "data_fraction")


def _keep_rows_up_to(path: Path, step: int, columns: list[str]) -> None:
    """Drops the rows of a resumed run's log.csv after `step`: a run killed after its last checkpoint had
    logged steps that the resumed run trains (and logs) again."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        header = reader.fieldnames
    kept = [row for row in rows if row.get("step", "").isdigit() and int(row["step"]) <= step]
    if len(kept) == len(rows) and header == columns:
        return

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)

    atomic_write(path, write)


class RunLog:
    """Accumulates per-step numbers and writes their averages every `every` steps."""

    def __init__(self, out: Path, task_names: list[str], total_steps: int, first_step: int, every: int,
                 enabled: bool = True, progress: bool | None = None, *, loss_names: tuple[str, ...]):
        self.enabled, self.every, self.tasks, self.loss_names = enabled, every, task_names, tuple(loss_names)
        self.columns = [*POSITION_FIELDS, *self.loss_names, *SPEED_FIELDS, *(f"loss_{t}" for t in task_names)]
        self._reset()
        self.bar = None
        self.writer = None
        if not enabled:
            return
        path = out / "log.csv"
        fresh = not path.exists() or first_step == 0
        if not fresh:
            _keep_rows_up_to(path, first_step, self.columns)
        self.file = open(path, "w" if fresh else "a", newline="")
        self.csv = csv.DictWriter(self.file, fieldnames=self.columns)
        if fresh:
            self.csv.writeheader()
        try:  # imported on use: tensorboard is an optional dependency
            from torch.utils.tensorboard import SummaryWriter

            # purge_step: events a killed run logged after its last checkpoint are dropped, as in log.csv
            self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=first_step + 1 if first_step else None)
        except ImportError:  # tensorboard is optional; log.csv has everything
            self.writer = None
        if progress is None:
            progress = sys.stderr.isatty()
        if progress:
            self.bar = tqdm(total=total_steps, initial=first_step, unit="step", dynamic_ncols=True)

    def _reset(self):
        self.sums = defaultdict(float)
        self.task_losses = defaultdict(list)
        self.count = self.samples = 0
        self.data_wait = self.compute = 0.0
        self.started = time.perf_counter()

    def step(self, *, step, epoch, lr, loss, terms: dict, task, samples, data_wait, compute) -> dict | None:
        """Records one optimizer step (terms: the loss terms by name); returns the averages when a log
        line is written."""
        self.count += 1
        self.samples += samples
        self.data_wait += data_wait
        self.compute += compute
        for key, value in (("loss", loss), *terms.items()):
            self.sums[key] += value
        self.task_losses[task].append(loss)
        if self.bar is not None:
            self.bar.update(1)
        if self.count < self.every:
            return None
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        row = {"step": step, "epoch": epoch, "lr": lr,
               **{k: self.sums[k] / self.count for k in ("loss", *self.loss_names)},
               "steps_per_s": self.count / elapsed, "samples_per_s": self.samples / elapsed,
               "data_wait_s": self.data_wait / self.count, "compute_s": self.compute / self.count,
               "data_fraction": self.data_wait / max(self.data_wait + self.compute, 1e-9)}
        for task in self.tasks:
            values = self.task_losses.get(task)
            row[f"loss_{task}"] = sum(values) / len(values) if values else math.nan
        if self.enabled:
            self.csv.writerow(row)
            self.file.flush()
            if self.writer is not None:
                for key, value in row.items():
                    if key not in ("step", "epoch") and not (isinstance(value, float) and math.isnan(value)):
                        self.writer.add_scalar(key, value, step)
            first = self.loss_names[0] if self.loss_names else "loss"
            message = (f"loss {row['loss']:.3f} ({first} {row[first]:.3f}) | {row['steps_per_s']:.2f} steps/s "
                       f"{row['samples_per_s']:.1f} samples/s | data wait {100 * row['data_fraction']:.0f}%")
            if self.bar is not None:
                self.bar.set_postfix_str(message)
            else:
                print(f"step {step} epoch {epoch} lr {lr:.2e} {message}", flush=True)
        self._reset()
        return row

    def close(self):
        if self.enabled:
            if self.bar is not None:
                self.bar.close()
            if self.writer is not None:
                self.writer.close()
            self.file.close()
