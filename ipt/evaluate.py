"""python -m ipt.evaluate --task sr4 --weights CKPT [--data DIR]
python -m ipt.evaluate --model mprnet --task deblur --weights model_deblurring.pth --data GoPro/test

Restores every image of a data set and reports PSNR / SSIM (Y channel and RGB; SR shaves `scale`
pixels off each border) per image and on average, as a table and as CSV and JSON files. The summary line
judges on the task's channel (Task.channel): RGB for deblurring (the GoPro convention), Y otherwise.

DIR holds pairs (input/ + target/, or HR/ + LR_bicubic/X{s}/) or clean images only, which are then
degraded with the task's seeded degradation (SR: MATLAB bicubic of the image cropped to a multiple of
the scale, exactly how SR benchmarks were made; deblur: each image's own seeded camera-shake blur); tasks of
real pairs only (denoise, derain: MPRNet's) refuse clean images before the model loads. Without --data: the
held-out split of the built-in sample photographs (ipt.data.samples.VALIDATION_SAMPLES), which no default
training run sees.

Every measure is given beside the task's baseline -- MATLAB bicubic upsampling of the input for SR, the
degraded input itself for denoising, deraining and deblurring (Task.baseline) -- with the model's gain in dB.
--compare also writes OUT/compare/IMAGE.png per image: input | baseline (SR) | model | target, on the
window with the most detail, enlarged (ipt.compare).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .cli import restorer_from_args, run_main, tool_parser
from .compare import compare_panels, comparison
from .data.folders import check_pair_size, find_pairs
from .data.images import image_size, read_image, write_image
from .data.samples import sample_images_dir
from .errors import ConfigError
from .families import describe_family
from .inference import Restorer
from .tasks import get_task

MEASURES = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")
# Every measure of the model, the same of the task's baseline (Task.baseline: bicubic for SR, the degraded
# input otherwise), and the model's PSNR gain over the baseline in dB.
GAINED = ("psnr_y", "psnr_rgb")
GAINS = tuple(f"gain_{m}" for m in GAINED)
COLUMNS = (*MEASURES, *(f"baseline_{m}" for m in MEASURES), *GAINS)


def degraded_input(task, clean: np.ndarray, seed: int, sample_id: int):
    """(input (H, W, 3) float, clean target cropped to fit) for an image given without its input."""
    scale = task.scale
    if scale > 1:  # SR benchmarks: crop to a multiple of the scale, then bicubic
        clean = clean[: clean.shape[0] - clean.shape[0] % scale, : clean.shape[1] - clean.shape[1] % scale]
    hr = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None]
    lr = task.degrade(hr, seed, torch.tensor([sample_id]))
    return lr[0].permute(1, 2, 0).numpy(), clean


def baseline_image(task, source: np.ndarray) -> np.ndarray:
    """The task's baseline (Task.baseline) of one (H, W, 3) input, as an (H*s, W*s, 3) array."""
    x = torch.from_numpy(np.ascontiguousarray(source)).permute(2, 0, 1)[None]
    return task.baseline(x)[0].permute(1, 2, 0).numpy()


def measure(output: np.ndarray, target: np.ndarray, shave: int) -> dict:
    """PSNR and SSIM on Y and on RGB of one result against its target (output quantised first)."""
    row = {}
    for channel, y in (("y", True), ("rgb", False)):
        row[f"psnr_{channel}"] = metrics.psnr(output, target, shave=shave, y_channel=y)
        row[f"ssim_{channel}"] = metrics.ssim(output, target, shave=shave, y_channel=y)
    return row


@dataclass(frozen=True)
class Result:
    """One evaluated image: its metrics row and the images they were measured on (for comparisons)."""

    row: dict
    input: np.ndarray
    baseline: np.ndarray
    output: np.ndarray
    target: np.ndarray


def checked_pairs(task, data):
    """(layout, pairs) of `data` for `task`, every problem found before any image is restored: pairs whose
    sizes do not match (ipt.data.folders.check_pair_size), clean images for a task that cannot degrade them
    (denoise, derain: real pairs only) or too small for its degradation (smaller than a blur kernel)."""
    layout, pairs = find_pairs(data, scale=task.scale)
    if not task.synthetic and any(pair.input is None for pair in pairs):
        try:
            task.degrade(torch.zeros(1, 3, 1, 1, dtype=torch.uint8), 0)  # the task's own message says why
        except ConfigError as error:
            raise ConfigError(f"{data} holds clean images only ({layout}): {error}") from None
    for pair in pairs:  # the headers only: cheap, and a bad pair found now, not after an hour
        if pair.input is not None:
            check_pair_size(pair, image_size(pair.input), image_size(pair.target), task.scale)
        else:
            task.check_size(min(image_size(pair.target)), f"{pair.name}, an image")
    return layout, pairs


def evaluate_images(restorer, data, seed: int = 0):
    """(layout, iterator of Result), one per image of `data`, restored one at a time. The pairs are
    checked (checked_pairs) before any image is restored."""
    task = restorer.task
    layout, pairs = checked_pairs(task, data)
    shave = metrics.shave_for(task)

    def results():
        for sample_id, pair in enumerate(pairs):
            target = read_image(pair.target)
            if pair.input is None:
                source, target = degraded_input(task, target, seed, sample_id)
            else:
                source = read_image(pair.input)
                # HR images of SR sets may be up to scale - 1 pixels larger: measured on scale x the input
                target = target[: source.shape[0] * task.scale, : source.shape[1] * task.scale]
            output = restorer.restore(source)
            if output.shape != target.shape:
                raise ConfigError(f"{pair.name}: the result is {output.shape[1]}x{output.shape[0]} but the target "
                                  f"{target.shape[1]}x{target.shape[0]}")
            baseline = baseline_image(task, source)
            try:
                model, base = measure(output, target, shave), measure(baseline, target, shave)
            except ConfigError as error:  # an image too small to measure: say which
                raise ConfigError(f"{pair.name}: {error}") from None
            row = {"image": pair.name, **model, **{f"baseline_{k}": v for k, v in base.items()},
                   **{f"gain_{k}": model[k] - base[k] for k in GAINED}}
            yield Result(row, source, baseline, output, target)

    return layout, results()


def evaluate(restorer, data, seed: int = 0) -> tuple[str, list[dict]]:
    """(layout, rows): one row of metrics per image of `data` (the model's, its baseline's, the gains)."""
    layout, results = evaluate_images(restorer, data, seed)
    return layout, [result.row for result in results]


def evaluate_model(model, task, data, seed: int = 0) -> list[dict]:
    """The rows of evaluate() for a model in memory (validation during training): run in eval mode,
    then left in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        return evaluate(Restorer.from_model(model, task), data, seed)[1]
    finally:
        model.train(was_training)


def summary(rows: list[dict]) -> dict:
    """The mean of every column over the images (the gain of the means is the mean of the gains)."""
    return {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}


def write_reports(out_dir: Path, rows: list[dict], meta: dict) -> tuple[Path, Path]:
    """metrics.csv and metrics.json. Image names come from file names, which need not be valid UTF-8: the
    JSON file keeps them exactly (as \\udcXX escapes, which json.loads reads back), and the CSV file stays
    valid UTF-8 by writing their undecodable bytes as such escapes too."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    with open(csv_path, "w", newline="", encoding="utf-8", errors="backslashreplace") as f:
        writer = csv.DictWriter(f, fieldnames=("image", *COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"image": "MEAN", **summary(rows)})
    json_path.write_text(json.dumps({**meta, "mean": summary(rows), "images": rows}, indent=2), encoding="ascii")
    return csv_path, json_path


def format_table(rows: list[dict], baseline_name: str = "baseline") -> str:
    """Per image and on average: each measure of the model beside its baseline's, and the PSNR gains."""
    width = max(12, *(len(r["image"]) for r in rows))
    base = baseline_name[:8]
    head = (f"{'image':<{width}}  {'PSNR-Y':>8} {base:>8} {'gain':>6}  {'SSIM-Y':>7} {base:>8}  "
            f"{'PSNR-RGB':>8} {base:>8} {'gain':>6}  {'SSIM-RGB':>8} {base:>8}")
    lines = [head]
    for r in [*rows, {"image": "MEAN", **summary(rows)}]:
        lines.append(f"{r['image']:<{width}}  {r['psnr_y']:8.3f} {r['baseline_psnr_y']:8.3f} {r['gain_psnr_y']:+6.2f}  "
                     f"{r['ssim_y']:7.4f} {r['baseline_ssim_y']:8.4f}  {r['psnr_rgb']:8.3f} {r['baseline_psnr_rgb']:8.3f} "
                     f"{r['gain_psnr_rgb']:+6.2f}  {r['ssim_rgb']:8.4f} {r['baseline_ssim_rgb']:8.4f}")
    return "\n".join(lines)


def describe_gain(task, means: dict) -> str:
    """One line: the model's PSNR and SSIM on the task's channel (Task.channel: RGB for deblurring, else Y)
    beside the baseline's, and the gain."""
    c, label, base = task.channel, task.channel.upper(), task.baseline_name
    return (f"PSNR-{label} {means[f'psnr_{c}']:.3f} dB ({base} {means[f'baseline_psnr_{c}']:.3f}, "
            f"gain {means[f'gain_psnr_{c}']:+.3f} dB), SSIM-{label} {means[f'ssim_{c}']:.4f} ({base} "
            f"{means[f'baseline_ssim_{c}']:.4f})")


def main(argv=None) -> None:
    parser = tool_parser("python -m ipt.evaluate", __doc__)
    parser.add_argument("--data", default=None,
                        help="data folder (default: the held-out split of the built-in sample photographs)")
    parser.add_argument("--out", default=None, help="folder for metrics.csv and metrics.json (default ./ipt_eval_TASK)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the on-the-fly degradations")
    parser.add_argument("--compare", action="store_true",
                        help="also write OUT/compare/IMAGE.png per image: input | baseline (SR) | model | target")
    args = parser.parse_args(argv)

    data = Path(args.data) if args.data else sample_images_dir(split="validation")
    checked_pairs(get_task(args.task), data)  # bad data fails now, before the model loads
    restorer = restorer_from_args(args)
    task = restorer.task
    out_dir = Path(args.out or f"ipt_eval_{task.name}")
    layout, results = evaluate_images(restorer, data, args.seed)
    rows = []
    for result in results:  # one pass: each image is restored once, for its row and its picture
        rows.append(result.row)
        if args.compare:
            panels = compare_panels(task, result.input, result.baseline, result.output, result.target)
            write_image(out_dir / "compare" / f"{result.row['image']}.png", comparison(panels))
    print(f"{describe_family(restorer.family.name)} {task.name} on {len(rows)} images of {data} ({layout}); "
          f"baseline: {task.baseline_name}")
    print(format_table(rows, task.baseline_name))
    print(f"mean: {describe_gain(task, summary(rows))}")
    meta = {"model": restorer.family.name, "task": task.name, "baseline": task.baseline_name, "channel": task.channel,
            "weights": str(args.weights), "data": str(data), "layout": layout, **restorer.describe_tiling(),
            "self_ensemble": args.self_ensemble, "precision": restorer.precision, "seed": args.seed,
            "shave": metrics.shave_for(task)}
    csv_path, json_path = write_reports(out_dir, rows, meta)
    print(f"wrote {csv_path} and {json_path}")
    if args.compare:
        print(f"wrote {len(rows)} comparison pictures to {out_dir / 'compare'}")


if __name__ == "__main__":
    run_main(main)
