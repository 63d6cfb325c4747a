"""python -m ipt.pretrain [--dali] [--data DIR] [--config small|ipt|FILE] [--tasks T,...] [--steps N] [--out DIR]
                         [--resume [auto]]

Pretrains IPT on clean images: every step draws one task (SR x2/x3/x4, deraining, denoising 30/50),
degrades a batch of random crops with it on the training device, and minimises L1 + 0.1 * contrastive.
With no arguments: the built-in sample photographs and the "small" config, minutes on a CPU.
On many GPUs: torchrun --nproc-per-node 8 -m ipt.pretrain --dali --config ipt --data /imagenet/train
--tasks sr2,sr3,sr4,rain,noise30,noise50,deblur adds deblurring as a seventh task: the model's heads, tails
and task-embedding rows follow the list, so the official six keep their indices 0-5 and their layout.
--resume continues the run in --out from its last checkpoint; --resume auto continues it if there is one and
starts a new run otherwise, so that one command line serves the first start and every restart. Elastic, on
two 8-GPU nodes that torchrun restarts (from the last checkpoint) after a worker fails (the variable: torch's
shared rendezvous store would hand restarted workers their predecessors' addresses, pytorch/pytorch#135712):
TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes 2 --nproc-per-node 8 --max-restarts 3 --rdzv-backend c10d \\
    --rdzv-endpoint HOST:29400 --rdzv-id RUN -m ipt.pretrain --dali --config ipt --data /imagenet/train \\
    --out runs/ipt --resume auto
"""

from __future__ import annotations

import argparse

from .cli import (add_training_arguments, check_fresh_output, print_done, resumed_config, run_main, should_resume,
                  training_config)
from .data import load_training_images
from .errors import ConfigError
from .model import get_config
from .tasks import get_task
from .train import Trainer, load_config
from .train.distributed import join, teardown


def with_tasks(args, config):
    """config with the tasks --tasks names, if given (None stays None)."""
    if args.tasks is None or config is None:
        return config
    return config.updated(tasks=tuple(name for item in args.tasks for name in item.split(",") if name))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ipt.pretrain", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="image folder (class sub-folders fine) or file list; default: samples")
    parser.add_argument("--config", default=None, help="a preset (small, ipt, tiny) or a .json/.toml file (default: "
                                                       "small; with --resume, the run's own settings)")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="the tasks, in the order of the model's heads, tails and task-embedding rows, separated by "
                             "commas or spaces (default: the config's, the official six)")
    add_training_arguments(parser, default_out="runs/pretrain")
    args = parser.parse_args(argv)

    config = with_tasks(args, training_config(args, load_config(args.config or "small")))
    if config.family != "ipt":  # the multi-task pretraining (and its contrastive loss) is IPT's
        raise ConfigError(f"--config {args.config} is a recipe for {config.family}, and ipt.pretrain pretrains IPT: "
                          f"train {config.family} with python -m ipt.train --model {config.family}")
    # Join the job before touching files, so that a failure on any rank (a missing data folder on one
    # node, say) ends every rank at once rather than leaving them waiting for it.
    dist = join(config, args.device)
    try:
        with dist.stage("start-up"):
            resume = should_resume(args, dist)  # --resume auto: rank 0 looks for checkpoints, every rank follows
            check_fresh_output(args.out, resume, main=dist.is_main)
            config = with_tasks(args, resumed_config(args, resume)) or config  # a resumed run refuses other tasks
            # Every image must hold the largest clean crop of the tasks, for this model's input size.
            patch_size = get_config(config.model).patch_size
            largest_crop = max(get_task(t).hr_crop_for(patch_size) for t in config.tasks)
            data = dist.once_per_node("scan", lambda: load_training_images(args.data, min_size=largest_crop),
                                      fingerprint=lambda data: data.fingerprint())  # each node scans once
            trainer = Trainer(config, data, args.out, resume=resume, device=args.device,
                              progress=False if args.no_progress else None,
                              allow_config_changes=args.allow_config_changes)
        if trainer.dist.is_main:
            print(f"pretraining {trainer.model.task_names} ({sum(p.numel() for p in trainer.model.parameters()):,} "
                  f"parameters) on {len(data)} images from {data.source}; {trainer.total_steps} steps of "
                  f"{config.batch_size} images ({trainer.dist.world} rank(s) x {trainer.micro_batch} x "
                  f"{trainer.accumulation}), {config.loader} loader, device {trainer.dist.device}", flush=True)
        summary = trainer.run()
        if trainer.dist.is_main:
            print_done(summary)
        return summary
    finally:
        teardown()


if __name__ == "__main__":
    run_main(main)
