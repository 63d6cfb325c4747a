"""python -m ipt.finetune --task sr2 --init CKPT --data DIR [--val DIR] [--config ...] [--out DIR] [--resume [auto]]

Fine-tunes a pretrained IPT on one task: keeps that task's head, tail and task-embedding row (the
others are dropped; a task the checkpoint lacks, such as deblur, gets new ones), in the input geometry of
--config's model when it keeps the pretrained body (ipt-deblur: the paper's appendix A, 256-px inputs,
patch_dim 8, n_feats 9), and trains with L1 at lr 2e-5 on real pairs (input/ + target/, HR/ + LR_bicubic/X{s}/)
or on clean images degraded on the fly, and reports PSNR/SSIM on --val after every epoch beside the
task's baseline (bicubic for SR, the degraded input otherwise) and the gain over it. Defaults: training
on the built-in sample photographs' "train" split, validating on their held-out "validation" split; a
validation image that is also a training image is an error unless --allow-val-overlap. The result,
OUT/model.safetensors, loads in ipt.restore and ipt.evaluate. --resume continues the run in --out from its
last checkpoint; --resume auto continues it if there is one and starts a new run otherwise (one command line
for the first start and every restart: torchrun --max-restarts N, a requeued job).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli import (add_num_heads_argument, add_training_arguments, check_fresh_output, finetuning_start, resumed_config,
                  run_main, should_resume, task_data_once_per_node, training_config)
from .errors import ConfigError
from .data.samples import sample_images_dir
from .model import IPTConfig
from .tasks import get_task
from .train import Trainer, TrainConfig, load_config
from .train.validation import check_held_out, make_validator  # noqa: F401  (also ipt.finetune's names)
from .train.distributed import join, teardown


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ipt.finetune", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="the task to keep and fine-tune (sr2, noise30, ...)")
    parser.add_argument("--init", required=True, help="a pretrained checkpoint (ours, or IPT_pretrain.pt / IPT_<task>.pt)")
    parser.add_argument("--data", default=None, help="pairs or clean images (default: the built-in samples)")
    parser.add_argument("--val", default=None,
                        help="validation data, any layout ipt.evaluate takes (default: the held-out sample photographs)")
    parser.add_argument("--allow-val-overlap", action="store_true",
                        help="allow validation images that are also training images (their scores then say little)")
    parser.add_argument("--config", default=None,
                        help="default: ipt-finetune for the paper's model, else small-finetune; ipt-deblur: the paper's "
                             "deblurring model (appendix A)")
    add_num_heads_argument(parser)
    add_training_arguments(parser, default_out="runs/finetune")
    args = parser.parse_args(argv)

    task = get_task(args.task)
    # Join the job before reading --init: a rank that cannot read it must end the others too. So the
    # timeouts come from the command line and --config (the default configs keep TrainConfig's).
    named = load_config(args.config) if args.config else None
    if named is not None and named.family != "ipt":
        raise ConfigError(f"--config {args.config} is a recipe for {named.family}, and ipt.finetune fine-tunes IPT: "
                          f"train {named.family} with python -m ipt.train --model {named.family}")
    early = training_config(args, named or TrainConfig())
    dist = join(early, args.device)
    out = Path(args.out)
    try:
        with dist.stage("start-up"):
            resume = should_resume(args, dist)  # --resume auto: rank 0 looks for checkpoints, every rank follows
            check_fresh_output(args.out, resume, main=dist.is_main)
            resumed = resumed_config(args, resume)  # resuming with no --config: the run's own settings
            recipe = named or resumed
            model, adapted = finetuning_start(args.init, task, recipe.model if recipe else None, args.num_heads,
                                              early.seed)
            base = named or load_config("ipt-finetune" if model.config == IPTConfig() else "small-finetune")
            config = resumed or training_config(args, base.updated(model=model.config.to_dict(), tasks=(task.name,)))
            source = Path(args.data) if args.data else sample_images_dir(split="train")
            layout, data = task_data_once_per_node(dist, source, task, crop=model.config.patch_size)
            val = Path(args.val) if args.val else sample_images_dir(split="validation")
            # Rank 0's check (a stat per training image) stands for all: an error there ends the start-up of every rank.
            val_files = check_held_out(data, val, task.scale, args.allow_val_overlap) if dist.is_main else []
            trainer = Trainer(config, data, out, model=model, resume=resume, device=args.device,
                              validate=make_validator(task, val, out, resume=resume),
                              progress=False if args.no_progress else None,
                              allow_config_changes=args.allow_config_changes)
        if trainer.dist.is_main:
            if adapted:
                print(adapted, flush=True)
            print(f"fine-tuning {task.name} from {args.init} on {len(data)} {layout} items of {source}; "
                  f"{trainer.total_steps} steps of {config.batch_size}", flush=True)
            names = sorted({f.stem for f in val_files})
            print(f"validating on {len(names)} images of {val}: {', '.join(names)}", flush=True)
        return trainer.run()
    finally:
        teardown()


if __name__ == "__main__":
    run_main(main)
