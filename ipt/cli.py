"""Command-line pieces shared by the ipt.* tools."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import typing
from pathlib import Path

import torch

from .errors import ConfigError, IPTError
from .families import FAMILY_NAMES, load_model
from .files import OutputLock
from .inference import MODES, PRECISIONS, Restorer
from .model.checkpoint import CheckpointError
from .model.config import IPTConfig
from .preemption import exit_status
from .train.config import PRESETS, TrainConfig, flags
from .train.state import checkpoints, saved_config


def tool_parser(prog: str, doc: str, weights_required: bool = True) -> argparse.ArgumentParser:
    """A parser for `python -m ipt.<tool>` with the model and tiling options every tool shares."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, weights_required)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, weights_required: bool = True) -> None:
    parser.add_argument("--model", choices=FAMILY_NAMES, default="ipt",
                        help="the model family of --weights (default %(default)s)")
    parser.add_argument("--task", required=True,
                        help="IPT: sr2, sr3, sr4, rain, noise30, noise50 (or noise<sigma>, sr<k>), deblur; MPRNet: "
                             "deblur (GoPro pairs or synthetic blur), denoise, derain (real pairs: SIDD, Rain13k), or "
                             "the synthesised ones")
    parser.add_argument("--weights", required=weights_required,
                        help="an official file (IPT: IPT_sr2.pt, IPT_pretrain.pt, ...; MPRNet: model_deblurring.pth, "
                             "MPR_Deblurring.pdparams, ...) or a checkpoint of this toolkit")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--mode", choices=MODES, default="fast",
                        help="tiling: 'fast' (blended tiles) or 'official' (IPT: forward_chop; MPRNet: each image "
                             "whole, untiled, as the official demo: memory grows with the image)")
    parser.add_argument("--tile", type=int, default=None, metavar="PX",
                        help="tile side for --mode fast (MPRNet: default 512; images that fit are restored whole). "
                             "An IPT model takes tiles of its patch_size only")
    parser.add_argument("--tile-overlap", type=int, default=None, metavar="PX",
                        help="pixels shared by neighbouring tiles in --mode fast (default: IPT patch_size/4, MPRNet 64)")
    parser.add_argument("--self-ensemble", action="store_true", help="average over the 8 flips/transposes")
    parser.add_argument("--tile-batch", type=int, default=None,
                        help="tiles per forward pass; bounds memory with --tile (default: IPT 64, MPRNet 1)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="bf16: autocast, about half the memory; runs fp32 on GPUs without native bfloat16 "
                             "(V100, T4)")
    add_num_heads_argument(parser)


def add_num_heads_argument(parser: argparse.ArgumentParser) -> None:
    # Official files do not store the head count and it does not change any weight's shape, so it cannot
    # be read off the file: only the paper's layout is known (12); any other must be told.
    parser.add_argument("--num-heads", type=int, default=None, metavar="H",
                        help="attention heads of an official-style file that is not the paper's layout (which has "
                             f"{IPTConfig.num_heads})")


def restorer_from_args(args):
    return Restorer(task=args.task, weights=args.weights, model=args.model, device=args.device, mode=args.mode,
                    self_ensemble=args.self_ensemble, tile_batch=args.tile_batch, precision=args.precision,
                    num_heads=args.num_heads, tile=args.tile, tile_overlap=args.tile_overlap)


def run_main(main) -> None:
    """Runs a CLI main(). The toolkit's user-facing errors (ipt.errors.IPTError: bad options, files or
    data, another rank's failure) end with one line and exit status 2; in a job of several ranks the line
    names this rank. Any other exception is a bug and keeps its traceback. A training run that a signal
    stopped (its summary's "stopped_by", after a checkpoint) exits as that signal would have: 128 + its
    number (143 for SIGTERM), which is how schedulers and shells tell a stopped job from a failed one."""
    # A file name that is not UTF-8 (which Python holds as surrogate escapes) must not crash a print.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        result = main()
    except IPTError as error:
        where = f" (rank {os.environ.get('RANK', '?')})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"error{where}: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    stopped_by = result.get("stopped_by") if isinstance(result, dict) else None
    if stopped_by:
        print(f"stopped by {stopped_by} at step {result['steps']}: continue with the same command and --resume",
              file=sys.stderr)
        signum = getattr(signal, stopped_by, signal.SIGTERM)  # a peer's signal: as SIGTERM
        raise SystemExit(exit_status(signum))


def finetuning_start(init, task, recipe_model, num_heads: int | None, seed: int):
    """(model, note) for fine-tuning IPT on `task` from the checkpoint `init` (ipt.finetune, ipt.train
    --model ipt --init): its body with the task's head, tail and task-embedding row, new ones if it lacks
    the task, in the geometry of the recipe's model (recipe_model, None without --config) when that keeps
    the body (ipt.model.transfer). note: one line saying what was adapted, or None."""
    from .model.transfer import finetuning_config, finetuning_model  # IPT's own: loaded for IPT runs only

    try:  # the tasks the file holds: all of them, or a single-task official file's, by its name or tail scale
        pretrained = load_model(init, family="ipt", num_heads=num_heads)
    except CheckpointError as unnamed:
        try:  # a renamed single-task file of a scale-1 task: its one head is taken as `task`'s
            pretrained = load_model(init, task, family="ipt", num_heads=num_heads)
        except CheckpointError:
            raise unnamed from None
    config, note = finetuning_config(pretrained.config, recipe_model)
    torch.manual_seed(seed)  # what is new starts the same in every run of this seed
    model, notes = finetuning_model(pretrained, task, config)
    notes = [note, *notes] if note else notes
    return model, (f"{init}: {'; '.join(notes)}" if notes else None)


def print_done(summary: dict, digits: int = 3) -> None:
    """The last line of a training run that ran to its end: steps, the loss from first to last, the model."""
    if summary["stopped_by"] is not None:
        return
    trained = (f"loss {summary['first_loss']:.{digits}f} -> {summary['last_loss']:.{digits}f}"
               if summary["first_loss"] is not None else "nothing left to train")
    print(f"done: {summary['steps']} steps, {trained}; model in {summary['model']}", flush=True)


def add_training_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Options shared by ipt.pretrain and ipt.finetune: the output, resuming, the device, the progress bar,
    and one option per TrainConfig field declared with flag() (ipt.train.config). Unset options are None
    and keep the config's values (training_config)."""
    parser.add_argument("--out", default=default_out, help="checkpoints, logs and the final model (default %(default)s)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, type=_resume_setting, metavar="auto",
                        help="continue from the last checkpoint in --out (an error if it holds none); --resume auto: "
                             "continue when --out holds a checkpoint, else start a new run -- one command line for "
                             "the first start and every restart (torchrun --max-restarts, a requeued job)")
    parser.add_argument("--allow-config-changes", action="store_true",
                        help="with --resume: apply changed learning settings (lr, schedule, optimizer, loss) instead "
                             "of refusing them")
    parser.add_argument("--device", default=None, help="default: this rank's GPU when there is one, else the CPU")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")
    types = typing.get_type_hints(TrainConfig)
    for name, spec in flags():
        option = spec.name or "--" + name.replace("_", "-")
        if spec.const is not None:
            parser.add_argument(option, dest=name, action="store_const", const=spec.const, default=None, help=spec.help)
            continue
        kind = _value_type(types[name])
        if kind is bool:  # a switch: given, it sets the field; not given, the config's value holds
            parser.add_argument(option, dest=name, action="store_true", default=None, help=spec.help)
            continue
        parser.add_argument(option, dest=name, type=kind, choices=spec.choices, metavar=spec.metavar, default=None,
                            help=spec.help + _default_text(name))


RESUME_AUTO = "auto"


def _resume_setting(text: str) -> str:
    """The one value --resume takes (argparse: anything else is a usage error)."""
    if text != RESUME_AUTO:
        raise argparse.ArgumentTypeError(f"{text!r}: give --resume alone (continue the run in --out), or --resume "
                                         f"{RESUME_AUTO} (continue it if --out holds a checkpoint, else start anew)")
    return text


def should_resume(args, dist) -> bool:
    """Whether this run continues the one in --out: --resume, yes (check_fresh_output and the Trainer
    refuse an --out without checkpoints); no --resume, no (they refuse one with checkpoints); --resume
    auto, yes when --out holds a checkpoint. For auto, rank 0 (which owns the output folder) looks and
    every rank takes its answer (dist: ipt.train.distributed.Distributed; a collective, so every rank
    calls this at the same point, inside the start-up stage), so that no rank resumes while another
    starts afresh (which checkpoint: rank 0's choice too, ipt.train.Trainer)."""
    if args.resume != RESUME_AUTO:
        return bool(args.resume)
    found = checkpoints(Path(args.out)) if dist.is_main else []
    resume = bool(dist.most(torch.tensor([len(found)], dtype=torch.int64, device=dist.device)).item())
    if dist.is_main:
        print(f"--resume auto: continuing the run in {args.out} from its checkpoints (the newest: {found[-1].name})"
              if resume else f"--resume auto: no checkpoint in {args.out}: starting a new run", flush=True)
    return resume


def _value_type(hint) -> type:
    """int for `int | None`, float for `float`, ..."""
    kinds = [t for t in (typing.get_args(hint) or (hint,)) if t is not type(None)]
    return kinds[0]


def _default_text(name: str) -> str:
    """' (default 300)' when every preset keeps TrainConfig's value, else where the default comes from;
    nothing when every preset leaves it None (the help says what None means)."""
    default = getattr(TrainConfig, name)
    if any(getattr(preset, name) != default for preset in PRESETS.values()):
        return " (default: from --config)"
    if default is None:
        return ""
    return f" (default {default:g})" if isinstance(default, float) else f" (default {default})"


def training_config(args, base: TrainConfig) -> TrainConfig:
    """The config named by --config with the command line's overrides applied."""
    return base.updated(**{name: getattr(args, name) for name, _ in flags()})


def resumed_config(args, resume: bool) -> TrainConfig | None:
    """When resuming (resume: should_resume's answer) with no --config: the run's own settings (its last
    checkpoint's) with the options given on this command line applied -- so that a plain `--resume`
    continues the run as it was started, whatever options started it. None otherwise (or when --out holds
    no checkpoint)."""
    if not resume or args.config is not None:
        return None
    saved = saved_config(Path(args.out))
    return None if saved is None else training_config(args, TrainConfig.from_saved(saved))


def task_data_once_per_node(dist, source, task, crop: int):
    """load_task_data(source, task, crop) -> (layout, data), scanned once per node of the job and checked
    to be the same data on every node (dist: ipt.train.distributed.Distributed.once_per_node)."""
    from .data import load_task_data

    return dist.once_per_node("scan", lambda: load_task_data(source, task, crop),
                              fingerprint=lambda found: found[1].fingerprint())


def check_fresh_output(out, resume: bool, main: bool = True) -> None:
    """Never start a new run over the checkpoints of another one, nor beside a run that is still going
    (main: this is the job's rank 0, which owns the output folder; the Trainer checks both again once it
    holds the folder)."""
    if main:
        OutputLock(out).check_free()
    if not resume and checkpoints(Path(out)):
        raise ConfigError(f"{out} already holds checkpoints of a run: pass --resume to continue it, or choose another --out")
