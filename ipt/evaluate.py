"""python -m ipt.evaluate --task sr4 --weights CKPT [--data DIR]

Restores every image of a data set and reports PSNR / SSIM (Y channel and RGB; SR shaves `scale`
pixels off each border) per image and on average, as a table and as CSV and JSON files.

DIR holds pairs (input/ + target/, or HR/ + LR_bicubic/X{s}/) or clean images only, which are then
degraded with the task's seeded degradation (SR: MATLAB bicubic of the image cropped to a multiple of
the scale, exactly how SR benchmarks were made). Without --data: the built-in sample photographs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .cli import restorer_from_args, run_main, tool_parser
from .data.folders import find_pairs
from .data.images import read_image
from .data.samples import sample_images_dir
from .errors import ConfigError

COLUMNS = ("psnr_y", "ssim_y", "psnr_rgb", "ssim_rgb")


def degraded_input(task, clean: np.ndarray, seed: int, sample_id: int):
    """(input (H, W, 3) float, clean target cropped to fit) for an image given without its input."""
    scale = task.scale
    if scale > 1:  # SR benchmarks: crop to a multiple of the scale, then bicubic
        clean = clean[: clean.shape[0] - clean.shape[0] % scale, : clean.shape[1] - clean.shape[1] % scale]
    hr = torch.from_numpy(np.ascontiguousarray(clean)).permute(2, 0, 1)[None]
    lr = task.degrade(hr, seed, torch.tensor([sample_id]))
    return lr[0].permute(1, 2, 0).numpy(), clean


def evaluate(restorer, data, seed: int = 0) -> tuple[str, list[dict]]:
    """(layout, rows): one row of metrics per image of `data`."""
    task = restorer.task
    layout, pairs = find_pairs(data, scale=task.scale)
    shave = metrics.shave_for(task)
    rows = []
    for sample_id, pair in enumerate(pairs):
        target = read_image(pair.target)
        if pair.input is None:
            source, target = degraded_input(task, target, seed, sample_id)
        else:
            source = read_image(pair.input)
        output = restorer.restore(source)
        h, w = output.shape[:2]
        if target.shape[0] < h or target.shape[1] < w:
            raise ConfigError(f"{pair.name}: the result is {w}x{h} but the target only {target.shape[1]}x{target.shape[0]}")
        target = target[:h, :w]  # HR images of SR sets may not be a multiple of the scale
        row = {"image": pair.name}
        try:
            for channel, y in (("y", True), ("rgb", False)):
                row[f"psnr_{channel}"] = metrics.psnr(output, target, shave=shave, y_channel=y)
                row[f"ssim_{channel}"] = metrics.ssim(output, target, shave=shave, y_channel=y)
        except ConfigError as error:  # an image too small to measure: say which
            raise ConfigError(f"{pair.name}: {error}") from None
        rows.append(row)
    return layout, rows


def summary(rows: list[dict]) -> dict:
    return {c: float(np.mean([r[c] for r in rows])) for c in COLUMNS}


def write_reports(out_dir: Path, rows: list[dict], meta: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "metrics.csv", out_dir / "metrics.json"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=("image", *COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
        writer.writerow({"image": "MEAN", **summary(rows)})
    json_path.write_text(json.dumps({**meta, "mean": summary(rows), "images": rows}, indent=2))
    return csv_path, json_path


def format_table(rows: list[dict]) -> str:
    width = max(12, *(len(r["image"]) for r in rows))
    lines = [f"{'image':<{width}}  {'PSNR-Y':>8}  {'SSIM-Y':>7}  {'PSNR-RGB':>8}  {'SSIM-RGB':>8}"]
    for r in [*rows, {"image": "MEAN", **summary(rows)}]:
        lines.append(f"{r['image']:<{width}}  {r['psnr_y']:8.3f}  {r['ssim_y']:7.4f}  {r['psnr_rgb']:8.3f}  {r['ssim_rgb']:8.4f}")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = tool_parser("python -m ipt.evaluate", __doc__)
    parser.add_argument("--data", default=None, help="data folder (default: the built-in sample photographs)")
    parser.add_argument("--out", default=None, help="folder for metrics.csv and metrics.json (default ./ipt_eval_TASK)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the on-the-fly degradations")
    args = parser.parse_args(argv)

    data = Path(args.data) if args.data else sample_images_dir()
    restorer = restorer_from_args(args)
    layout, rows = evaluate(restorer, data, args.seed)
    print(format_table(rows))
    meta = {"task": restorer.task.name, "weights": str(args.weights), "data": str(data), "layout": layout,
            "mode": args.mode, "self_ensemble": args.self_ensemble, "seed": args.seed,
            "shave": metrics.shave_for(restorer.task)}
    csv_path, json_path = write_reports(Path(args.out or f"ipt_eval_{restorer.task.name}"), rows, meta)
    print(f"wrote {csv_path} and {json_path}")


if __name__ == "__main__":
    run_main(main)
