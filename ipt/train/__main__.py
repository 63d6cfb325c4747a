"""python -m ipt.train --model mprnet --task deblur --data GoPro/train [--val GoPro/test] [--init WEIGHTS]
                      [--config mprnet-deblur|FILE] [--out DIR] [--resume [auto]]

Trains one restoration task, for either model family (--model ipt|mprnet), from scratch or from --init
weights (ours, or the family's official release files: model_deblurring.pth, MPR_Deblurring.pdparams,
IPT_sr2.pt, ...). The data are pairs (input/ + target/, HR/ + LR_bicubic/X{s}/: GoPro, SIDD, Rain13k, ...)
or clean images degraded on the fly by the task's seeded kernels (noise30, rain, deblur's camera shake, ...;
the real-pair tasks denoise and derain need pairs). The loss is the family's: MPRNet's Charbonnier + 0.05 x
edge loss over its three stage outputs (Charbonnier only for denoising), IPT's L1.

--config: by default the family's recipe for the task. MPRNet: with --data its official recipe for the
task's kind (mprnet-deblur: 3000 epochs of 256-px crops, mprnet-denoise: 80 epochs of 128-px crops,
mprnet-derain: 250 epochs; Adam 2e-4, 3 warm-up epochs, cosine to 1e-6, batch 16), and without --data the
CPU demo mprnet-small on the built-in sample photographs. IPT: ipt-finetune, or small-finetune on the
samples. After every epoch (or --validate-every steps) the task's PSNR/SSIM on --val is printed beside
its baseline (the degraded input) and kept in OUT/validation.csv; without --val, the held-out sample
photographs when the task can be synthesised, else no validation. The result, OUT/model.safetensors,
loads in ipt.restore and ipt.evaluate with the same --model. --resume continues the run in --out from its
last checkpoint; --resume auto continues it if there is one and starts a new run otherwise (one command line
for the first start and every restart: torchrun --max-restarts N, a requeued job).

    python -m ipt.train --model mprnet --task noise30                       # minutes on a CPU
    torchrun --nproc-per-node 4 -m ipt.train --model mprnet --task deblur --data GoPro/train --val GoPro/test --dali
    TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --standalone --nproc-per-node 4 --max-restarts 3 \\
        -m ipt.train --model mprnet --task deblur --data GoPro/train --out runs/deblur --resume auto
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import (add_num_heads_argument, add_training_arguments, check_fresh_output, finetuning_start, print_done,
                   resumed_config, run_main, should_resume, task_data_once_per_node, training_config)
from ..data.samples import sample_images_dir
from ..errors import ConfigError
from ..families import FAMILY_NAMES, describe_family, get_family, load_model
from ..tasks import get_task
from .config import PRESETS, TrainConfig, load_config
from .distributed import join, teardown
from .loop import Trainer
from .validation import check_held_out, make_validator

# The recipe each family trains a task with when --config is not given: (with --data, without).
DEFAULT_RECIPES = {"ipt": lambda task: ("ipt-finetune", "small-finetune"),
                   "mprnet": lambda task: (f"mprnet-{task.kind}", "mprnet-small")}


def default_recipe(family: str, task, data_given: bool) -> TrainConfig:
    with_data, demo = DEFAULT_RECIPES[family](task)
    name = with_data if data_given else demo
    if name not in PRESETS:
        raise ConfigError(f"no {describe_family(family)} recipe for task {task.name!r} (a {task.kind} task): name one "
                          "with --config")
    return PRESETS[name]


def initial_model(args, family, task, recipe_model, seed: int):
    """(model, note): the model to start from -- --init's weights (a single-task model of `task`), else None (a
    new one) -- and a line saying what was adapted, or None. recipe_model: the model of the recipe the user
    chose (--config, or the resumed run's), else None."""
    if args.init is None:
        return None, None
    if family.name == "ipt":  # a pretrained multi-task IPT: this task's head, tail and embedding row (or new ones)
        return finetuning_start(args.init, task, recipe_model, args.num_heads, seed)
    return load_model(args.init, task, family=family.name, num_heads=args.num_heads), None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m ipt.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=FAMILY_NAMES, default="ipt", help="the model family (default %(default)s)")
    parser.add_argument("--task", required=True,
                        help="deblur (GoPro pairs or synthetic blur), denoise, derain (real pairs), or one the toolkit "
                             "synthesises: noise30, rain, sr2, deblur-heavy, ...")
    parser.add_argument("--data", default=None,
                        help="pairs or clean images (default: the built-in sample photographs' training split)")
    parser.add_argument("--val", default=None, help="validation data, any layout ipt.evaluate takes (default: the "
                                                    "held-out sample photographs, when the task can be synthesised)")
    parser.add_argument("--allow-val-overlap", action="store_true",
                        help="allow validation images that are also training images (their scores then say little)")
    parser.add_argument("--init", default=None, help="weights to start from (ours or an official release file)")
    parser.add_argument("--config", default=None, help="a preset or a .json/.toml file (default: see above; with "
                                                       "--resume, the run's own settings)")
    add_num_heads_argument(parser)
    add_training_arguments(parser, default_out="runs/train")
    args = parser.parse_args(argv)

    task, family = get_task(args.task), get_family(args.model)
    named = load_config(args.config) if args.config else None
    if named is not None and named.family != family.name:
        raise ConfigError(f"--config {args.config} trains the {named.family!r} family; pass --model {named.family} or "
                          "another config")
    base = named or default_recipe(family.name, task, data_given=args.data is not None)
    # Join the job before reading files: a rank that cannot read them must end the others too.
    early = training_config(args, base)
    dist = join(early, args.device)
    out = Path(args.out)
    try:
        with dist.stage("start-up"):
            resume = should_resume(args, dist)  # --resume auto: rank 0 looks for checkpoints, every rank follows
            check_fresh_output(args.out, resume, main=dist.is_main)
            resumed = resumed_config(args, resume)  # resuming with no --config: the run's own settings
            recipe = named or resumed
            model, adapted = initial_model(args, family, task, recipe.model if recipe else None, early.seed)
            config = resumed or training_config(args, base.updated(
                tasks=(task.name,), model=model.config.to_dict() if model is not None else base.model))
            source = Path(args.data) if args.data else sample_images_dir(split="train")
            crop = family.train_crop(family.get_config(config.model), config)
            layout, data = task_data_once_per_node(dist, source, task, crop)
            validate, val_note = None, "no validation (give --val)"
            # Without --val, a run on clean images validates on the held-out samples degraded the same way; a run on
            # real pairs has nothing like them to validate on (GoPro's blur is not the synthetic one).
            if args.val is not None or (task.synthetic and layout == "clean"):
                val = Path(args.val) if args.val else sample_images_dir(split="validation")
                # Rank 0's check (a stat per training image) stands for all: an error there ends every rank's start-up.
                val_files = check_held_out(data, val, task.scale, args.allow_val_overlap) if dist.is_main else []
                validate = make_validator(task, val, out, resume=resume)
                images = len({f.stem for f in val_files})  # the files of a pair folder: inputs and targets
                val_note = f"validating on {images} images of {val}"
            trainer = Trainer(config, data, out, model=model, resume=resume, device=args.device,
                              validate=validate, progress=False if args.no_progress else None,
                              allow_config_changes=args.allow_config_changes)
        if trainer.dist.is_main:
            if adapted:
                print(adapted, flush=True)
            start = f"from {args.init}" if args.init else "from scratch"
            parameters = sum(p.numel() for p in trainer.model.parameters())
            print(f"training {describe_family(family.name)} ({parameters:,} parameters) {start} for {task.name} on "
                  f"{len(data)} {layout} items of {source}: {trainer.total_steps} steps of {config.batch_size} crops of "
                  f"{crop} px; {val_note}", flush=True)
        summary = trainer.run()
        if trainer.dist.is_main:
            print_done(summary, digits=4)  # MPRNet's losses are in [0, 1] units
        return summary
    finally:
        teardown()


if __name__ == "__main__":
    run_main(main)
