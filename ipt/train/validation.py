"""Validation during training: a task's PSNR/SSIM on held-out images beside its baseline, kept as a
history in the run's folder (ipt.finetune, ipt.train)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ..data.holdout import shared_images, training_files, validation_files
from ..data.records import ImageRecord
from ..errors import ConfigError
from ..evaluate import checked_pairs, describe_gain, evaluate_model, format_table, summary
from ..files import atomic_write


def make_validator(task, data, out: Path, seed: int = 0, resume: bool = False):
    """validate(model, epoch, step): PSNR/SSIM of the task on `data` beside its baseline, per image and on
    average: printed, the means of every validation so far in validation.csv, every image's row in
    validation.json (both rewritten whole each time; a resumed run continues the history)."""
    checked_pairs(task, data)  # mismatched pairs, images smaller than a blur kernel: found now, not after an epoch
    csv_path, json_path = out / "validation.csv", out / "validation.json"
    history = json.loads(json_path.read_text()) if resume and json_path.is_file() else []

    def validate(model, epoch, step):
        rows = evaluate_model(model, task, data, seed)
        means = summary(rows)
        # Entries of this step or later come from a run that was killed after them and resumed from an
        # earlier checkpoint: the resumed run's replace them.
        history[:] = [entry for entry in history if entry["step"] < step]
        history.append({"step": step, "epoch": epoch, "mean": means, "images": rows})

        def write_csv(tmp):
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=("step", "epoch", *means))
                writer.writeheader()
                writer.writerows({"step": e["step"], "epoch": e["epoch"], **e["mean"]} for e in history)

        atomic_write(csv_path, write_csv)
        atomic_write(json_path, lambda tmp: Path(tmp).write_text(json.dumps(history, indent=1)))
        print(f"validation after step {step} (epoch {epoch}): {describe_gain(task, means)}\n"
              f"{format_table(rows, task.baseline_name)}", flush=True)
        return means

    return validate


def check_held_out(data, val: Path, scale: int, allow_overlap: bool) -> list[Path]:
    """The validation files; an error if any is also a training image, unless the user allows it."""
    files = validation_files(val, scale)
    shared = shared_images(training_files(data), files)
    if shared and not allow_overlap:
        examples = ", ".join(f"{v} = {t.name if isinstance(t, ImageRecord) else t}" for v, t in shared[:3])
        raise ConfigError(f"{len(shared)} validation image(s) of {val} are also training images ({examples}"
                          f"{', ...' if len(shared) > 3 else ''}): validate on held-out images, or pass "
                          "--allow-val-overlap")
    return files
