"""python -m ipt.finetune --task sr2 --init CKPT --data DIR [--val DIR] [--config ...] [--out DIR]

Fine-tunes a pretrained IPT on one task: keeps that task's head, tail and task-embedding row (the
others are dropped), trains with L1 at lr 2e-5 on real pairs (input/ + target/, HR/ + LR_bicubic/X{s}/)
or on clean images degraded on the fly, and reports PSNR/SSIM on --val after every epoch (default:
the built-in sample photographs). The result, OUT/model.safetensors, loads in ipt.restore and
ipt.evaluate.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from .cli import add_num_heads_argument, add_training_arguments, check_fresh_output, run_main, training_config
from .data import load_image_pairs, load_training_images
from .data.folders import find_pairs
from .data.samples import sample_images_dir
from .evaluate import evaluate, summary
from .inference import Restorer
from .model import IPTConfig, load_model
from .tasks import get_task
from .train import Trainer, TrainConfig, load_config
from .train.distributed import join, teardown


def make_validator(task, data, out: Path, seed: int = 0):
    """validate(model, epoch): PSNR/SSIM of the task on `data`, printed and appended to validation.csv."""
    path = out / "validation.csv"

    def validate(model, epoch):
        was_training = model.training
        model.eval()
        try:
            _, rows = evaluate(Restorer.from_model(model, task), data, seed)
        finally:
            model.train(was_training)
        means = summary(rows)
        fresh = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=("epoch", *means))
            if fresh:
                writer.writeheader()
            writer.writerow({"epoch": epoch, **means})
        print(f"validation after epoch {epoch}: PSNR-Y {means['psnr_y']:.3f} dB, SSIM-Y {means['ssim_y']:.4f}", flush=True)
        return means

    return validate


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ipt.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the task to keep and fine-tune (sr2, noise30, ...)")
    parser.add_argument("--init", required=True, help="a pretrained checkpoint (ours, or IPT_pretrain.pt / IPT_<task>.pt)")
    parser.add_argument("--data", default=None, help="pairs or clean images (default: the built-in samples)")
    parser.add_argument("--val", default=None, help="validation data, any layout ipt.evaluate takes (default: samples)")
    parser.add_argument("--config", default=None, help="default: ipt-finetune for the paper's model, else small-finetune")
    add_num_heads_argument(parser)
    add_training_arguments(parser, default_out="runs/finetune")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    # Join the job before reading --init: a rank that cannot read it must end the others too. So the
    # timeouts come from the command line and --config (the default configs keep TrainConfig's).
    named = load_config(args.config) if args.config else None
    early = training_config(args, named or TrainConfig())
    dist = join(early, args.device)
    out = Path(args.out)
    try:
        with dist.stage("start-up"):
            model = load_model(args.init, task, num_heads=args.num_heads).subset([task.name])
            base = named or load_config("ipt-finetune" if model.config == IPTConfig() else "small-finetune")
            config = training_config(args, base.updated(model=model.config.to_dict(), tasks=(task.name,)))
            check_fresh_output(args.out, args.resume)
            # Clean images must hold the task's clean crop; pairs' inputs one model input.
            patch_size = model.config.patch_size
            source = Path(args.data) if args.data else sample_images_dir()
            layout, _ = find_pairs(source, scale=task.scale)
            data = (load_training_images(source, min_size=task.hr_crop_for(patch_size)) if layout == "clean"
                    else load_image_pairs(source, scale=task.scale, min_size=patch_size))
            trainer = Trainer(config, data, out, model=model, resume=args.resume, device=args.device,
                              validate=make_validator(task, Path(args.val) if args.val else sample_images_dir(), out),
                              progress=False if args.no_progress else None)
        if trainer.dist.is_main:
            print(f"fine-tuning {task.name} from {args.init} on {len(data)} {layout} items of {source}; "
                  f"{trainer.total_steps} steps of {config.batch_size}", flush=True)
        return trainer.run()
    finally:
        teardown()


if __name__ == "__main__":
    run_main(main)
