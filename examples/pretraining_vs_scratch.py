"""Does pretraining pay? The IPT paper's central claim, in miniature: for each task, fine-tuning the
pretrained multi-task model is compared with training the same single-task model from scratch for the
same total number of optimizer steps (the pretraining's plus the fine-tuning's), both measured on the
held-out sample photographs beside the task's baseline (bicubic for SR, the degraded input otherwise).

    python examples/pretraining_vs_scratch.py                     # pretrains first; see the README for times
    python examples/pretraining_vs_scratch.py --init runs/pretrain/model.safetensors   # reuse the demo's model

Writes to --out: results.json (every curve point and the final table), curves.csv, curves.png (PSNR-Y
vs optimizer step, both runs, per task) and compare_<task>.png (input | baseline | from scratch |
fine-tuned | target on one held-out photograph). The table is printed at the end.

The from-scratch run uses the pretraining recipe (--pretrain-config: learning rate, warm-up, decay)
with the one task and L1 only; the fine-tuning run the fine-tuning recipe (--finetune-config). Steps
are optimizer steps of the same batch size, so both runs see the same number of training crops.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from ipt.compare import comparison, compare_panels
from ipt.data import load_training_images
from ipt.data.images import write_image
from ipt.data.samples import sample_images_dir
from ipt.cli import check_fresh_output, run_main
from ipt.errors import ConfigError
from ipt.evaluate import evaluate_images, evaluate_model, summary
from ipt.inference import Restorer
from ipt.model import IPT, load_model
from ipt.model.config import get_config
from ipt.tasks import get_task
from ipt.train import Trainer, load_config


def pretrained_steps(path: Path, given: int | None) -> int:
    """The optimizer steps the pretrained model was trained for: as given, else from the file."""
    if given is not None:
        return given
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            step = (f.metadata() or {}).get("step")
        if step is not None:
            return int(step)
    raise ConfigError(f"{path} does not record its training steps: give --pretrain-steps")


class Curve:
    """A run's validator (called every validate_every steps): (total step, mean metrics) points, the
    first before any training. `offset` turns the run's own steps into steps since the start of the whole recipe."""

    def __init__(self, task, data: Path, offset: int):
        self.task, self.data, self.offset, self.points = task, data, offset, []

    def __call__(self, model, epoch=None, step=0):
        means = summary(evaluate_model(model, self.task, self.data))
        self.points.append({"step": self.offset + step, **means})
        print(f"  {self.task.name} step {self.offset + step}: PSNR-Y {means['psnr_y']:.3f} dB "
              f"(gain {means['gain_psnr_y']:+.3f})", flush=True)
        return means


def train(config, data, out: Path, curve: Curve, model: IPT) -> IPT:
    check_fresh_output(out, resume=False)  # never train over another run's checkpoints
    curve(model)  # the starting point
    trainer = Trainer(config, data, out, model=model, validate=curve, progress=False)
    trainer.run()
    return trainer.model


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sr2", "noise30"], help="tasks to compare (default sr2 noise30)")
    parser.add_argument("--init", default=None, help="a pretrained multi-task model (default: pretrain one here)")
    parser.add_argument("--pretrain-config", default="small", help="recipe of the pretraining and of the from-scratch runs")
    parser.add_argument("--finetune-config", default="small-finetune", help="recipe of the fine-tuning runs")
    parser.add_argument("--pretrain-steps", type=int, default=None, help="default: the recipe's (or the --init file's)")
    parser.add_argument("--finetune-steps", type=int, default=None, help="default: the fine-tuning recipe's")
    parser.add_argument("--eval-every", type=int, default=250, help="optimizer steps between validations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/pretraining_vs_scratch")
    args = parser.parse_args(argv)

    out = Path(args.out)
    if (out / "results.json").exists():
        raise ConfigError(f"{out} already holds results: choose another --out")
    tasks = [get_task(t) for t in args.tasks]
    pre_cfg, fine_cfg = load_config(args.pretrain_config), load_config(args.finetune_config)
    patch_size = get_config(pre_cfg.model).patch_size
    val = sample_images_dir(split="validation")
    started = time.perf_counter()

    if args.init:
        init = Path(args.init)
        pretrain_steps = pretrained_steps(init, args.pretrain_steps)
        pretrained = load_model(init)
    else:
        pretrain_steps = args.pretrain_steps or pre_cfg.steps
        cfg = pre_cfg.updated(steps=pretrain_steps, seed=args.seed, checkpoint_every=pretrain_steps)
        check_fresh_output(out / "pretrain", resume=False)
        print(f"pretraining {list(cfg.tasks)} for {pretrain_steps} steps", flush=True)
        largest = max(get_task(t).hr_crop_for(patch_size) for t in cfg.tasks)
        trainer = Trainer(cfg, load_training_images(min_size=largest), out / "pretrain", progress=False)
        trainer.run()
        pretrained = trainer.model
    missing = [t.name for t in tasks if t.name not in pretrained.task_names]
    if missing:
        raise ConfigError(f"the pretrained model has no {missing} (its tasks are {pretrained.task_names})")
    finetune_steps = args.finetune_steps or fine_cfg.steps
    total = pretrain_steps + finetune_steps

    results = {"pretrain_steps": pretrain_steps, "finetune_steps": finetune_steps, "tasks": {}}
    for task in tasks:
        data = load_training_images(min_size=task.hr_crop_for(patch_size))
        print(f"{task.name}: fine-tuning the pretrained model for {finetune_steps} steps", flush=True)
        tuned_curve = Curve(task, val, offset=pretrain_steps)
        tuned = train(fine_cfg.updated(tasks=(task.name,), model=pretrained.config.to_dict(), steps=finetune_steps,
                                       seed=args.seed, validate_every=args.eval_every, checkpoint_every=finetune_steps),
                      data, out / task.name / "finetuned", tuned_curve, model=pretrained.subset([task.name]))
        print(f"{task.name}: training from scratch for {total} steps", flush=True)
        scratch_curve = Curve(task, val, offset=0)
        torch.manual_seed(args.seed)
        scratch = train(pre_cfg.updated(tasks=(task.name,), steps=total, seed=args.seed, contrastive_weight=0.0,
                                        validate_every=args.eval_every, checkpoint_every=total),
                        data, out / task.name / "scratch", scratch_curve, model=IPT([task.name], pre_cfg.model))
        results["tasks"][task.name] = {"baseline": task.baseline_name, "finetuned": tuned_curve.points,
                                       "scratch": scratch_curve.points}
        write_pictures(task, val, scratch, tuned, out / f"compare_{task.name}.png")
    results["seconds"] = round(time.perf_counter() - started)
    results["table"] = table_rows(results)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    write_curves_csv(results, out / "curves.csv")
    plot(results, out / "curves.png")
    print(format_table(results))
    print(f"wrote {out / 'results.json'}, {out / 'curves.csv'}, {out / 'curves.png'} and the comparisons "
          f"in {results['seconds']} s")
    return results


def point_at(points: list[dict], step: int) -> dict:
    """The validation point at `step` (the last one at or before it)."""
    return [p for p in points if p["step"] <= step][-1]


def table_rows(results: dict) -> list[dict]:
    pre, fine = results["pretrain_steps"], results["finetune_steps"]
    rows = []
    for name, runs in results["tasks"].items():
        tuned, scratch = runs["finetuned"][-1], runs["scratch"][-1]
        rows.append({"task": name, "baseline": runs["baseline"], "baseline_psnr_y": tuned["baseline_psnr_y"],
                     "pretrained_psnr_y": runs["finetuned"][0]["psnr_y"],
                     f"scratch_{fine}_psnr_y": point_at(runs["scratch"], fine)["psnr_y"],
                     "scratch_psnr_y": scratch["psnr_y"], "finetuned_psnr_y": tuned["psnr_y"],
                     "finetuned_minus_scratch_db": tuned["psnr_y"] - scratch["psnr_y"],
                     "steps": pre + fine})
    return rows


def format_table(results: dict) -> str:
    pre, fine = results["pretrain_steps"], results["finetune_steps"]
    head = (f"PSNR-Y (dB) on the held-out photographs; {pre} pretraining + {fine} fine-tuning steps vs "
            f"{pre + fine} steps from scratch\n"
            f"{'task':<8} {'baseline':>16} {'pretrained':>10} {f'scratch@{fine}':>14} {f'scratch@{pre + fine}':>14} "
            f"{'fine-tuned':>10} {'difference':>10}")
    lines = [head]
    for r in results["table"]:
        lines.append(f"{r['task']:<8} {r['baseline']:>7} {r['baseline_psnr_y']:8.3f} {r['pretrained_psnr_y']:10.3f} "
                     f"{r[f'scratch_{fine}_psnr_y']:14.3f} {r['scratch_psnr_y']:14.3f} {r['finetuned_psnr_y']:10.3f} "
                     f"{r['finetuned_minus_scratch_db']:+10.3f}")
    return "\n".join(lines)


def write_curves_csv(results: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "run", "step", "psnr_y", "baseline_psnr_y", "gain_psnr_y", "ssim_y"])
        for name, runs in results["tasks"].items():
            for run in ("scratch", "finetuned"):
                for p in runs[run]:
                    writer.writerow([name, run, p["step"], p["psnr_y"], p["baseline_psnr_y"], p["gain_psnr_y"], p["ssim_y"]])


def plot(results: dict, path: Path) -> None:
    import matplotlib  # on use: only this experiment plots (pip install matplotlib, or the [test] extra)

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    names = list(results["tasks"])
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 4), squeeze=False)
    for ax, name in zip(axes[0], names):
        runs = results["tasks"][name]
        for run, label, style in (("scratch", "from scratch", "-o"), ("finetuned", "pretrained + fine-tuned", "-s")):
            ax.plot([p["step"] for p in runs[run]], [p["psnr_y"] for p in runs[run]], style, ms=3, label=label)
        ax.axhline(runs["finetuned"][0]["baseline_psnr_y"], color="grey", ls="--", label=runs["baseline"])
        ax.axvline(results["pretrain_steps"], color="grey", ls=":", lw=1)
        ax.set(title=f"{name}, held-out photographs", xlabel="optimizer steps (pretraining + fine-tuning)",
               ylabel="PSNR-Y (dB)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_pictures(task, val: Path, scratch: IPT, tuned: IPT, path: Path) -> None:
    """input | baseline | from scratch | fine-tuned | target, on the first held-out photograph."""
    _, results = evaluate_images(Restorer.from_model(scratch.eval(), task), val)
    first = next(iter(results))
    tuned_output = Restorer.from_model(tuned.eval(), task).restore(first.input)
    panels = compare_panels(task, first.input, first.baseline, first.output, first.target)
    panels = [p for p in panels if p[0] != "model"]
    at = 2 if task.scale > 1 else 1
    panels[at:at] = [("from scratch", first.output), ("fine-tuned", tuned_output)]
    write_image(path, comparison(panels))


if __name__ == "__main__":
    run_main(main)
