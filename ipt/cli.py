"""Command-line pieces shared by the ipt.* tools."""

from __future__ import annotations

import argparse
import sys

from .inference import MODES, PRECISIONS


def tool_parser(prog: str, doc: str, weights_required: bool = True) -> argparse.ArgumentParser:
    """A parser for `python -m ipt.<tool>` with the model and tiling options every tool shares."""
    parser = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser, weights_required)
    return parser


def add_model_arguments(parser: argparse.ArgumentParser, weights_required: bool = True) -> None:
    parser.add_argument("--task", required=True, help="sr2, sr3, sr4, rain, noise30, noise50 (or noise<sigma>, sr<k>)")
    parser.add_argument("--weights", required=weights_required,
                        help="an official IPT file (IPT_sr2.pt, IPT_pretrain.pt, ...) or a checkpoint of this toolkit")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument("--mode", choices=MODES, default="fast", help="tiling: 'official' (forward_chop) or 'fast'")
    parser.add_argument("--self-ensemble", action="store_true", help="average over the 8 flips/transposes")
    parser.add_argument("--tile-batch", type=int, default=64, help="tiles per forward pass (bounds memory)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32")


def restorer_from_args(args):
    from .inference import Restorer

    return Restorer(task=args.task, weights=args.weights, device=args.device, mode=args.mode,
                    self_ensemble=args.self_ensemble, tile_batch=args.tile_batch, precision=args.precision)


def run_main(main) -> None:
    """Runs a CLI main(); expected errors (bad input, files, another rank's failure) end with one clear
    line, not a traceback. In a job of several ranks the line names this rank."""
    import os

    from .data.folders import DataLayoutError
    from .data.images import UnreadableImageError
    from .model.checkpoint import CheckpointError
    from .train.state import CheckpointWriteError
    from .train.watchdog import PeerFailedError

    try:
        main()
    except (CheckpointError, CheckpointWriteError, DataLayoutError, UnreadableImageError, FileNotFoundError,
            ValueError, PeerFailedError) as error:
        where = f" (rank {os.environ.get('RANK', '?')})" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else ""
        print(f"error{where}: {error}", file=sys.stderr)
        raise SystemExit(2) from None


def add_training_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """Options shared by ipt.pretrain and ipt.finetune; unset ones keep the config's values."""
    parser.add_argument("--dali", action="store_true", help="load data with the DALI pipeline (else torch DataLoader)")
    parser.add_argument("--out", default=default_out, help="checkpoints, logs and the final model (default %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    parser.add_argument("--steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch: images per optimizer step over all ranks")
    parser.add_argument("--micro-batch", type=int, help="images per forward pass on one rank (accumulates the rest)")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--workers", type=int, help="DataLoader processes or DALI threads per rank")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--amp", choices=("auto", "bf16", "fp32"))
    parser.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    parser.add_argument("--checkpoint-every", type=int, help="optimizer steps between checkpoints")
    parser.add_argument("--device", default=None, help="default: this rank's GPU when there is one, else the CPU")
    parser.add_argument("--dist-timeout", type=float, metavar="SECONDS",
                        help="how long a collective waits for the other ranks (default 300)")
    parser.add_argument("--heartbeat-timeout", type=float, metavar="SECONDS",
                        help="how long a rank may go without a heartbeat before it counts as dead (default 60)")
    parser.add_argument("--wait-timeout", type=float, metavar="SECONDS",
                        help="how long ranks wait for each other at start-up, checkpoints, validation (default 3600)")
    parser.add_argument("--no-progress", action="store_true", help="plain log lines instead of a progress bar")


def training_config(args, base):
    """The config named by --config with the command line's overrides applied."""
    return base.updated(steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, micro_batch=args.micro_batch,
                        lr=args.lr, workers=args.workers, seed=args.seed, amp=args.amp, compile=args.compile,
                        checkpoint_every=args.checkpoint_every, loader="dali" if args.dali else None,
                        dist_timeout=args.dist_timeout, heartbeat_timeout=args.heartbeat_timeout,
                        wait_timeout=args.wait_timeout)


def check_fresh_output(out, resume: bool) -> None:
    """Never start a new run over the checkpoints of another one."""
    from pathlib import Path

    from .train.state import checkpoints

    if not resume and checkpoints(Path(out)):
        raise ValueError(f"{out} already holds checkpoints of a run: pass --resume to continue it, or choose another --out")
