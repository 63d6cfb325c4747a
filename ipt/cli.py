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
    """Runs a CLI main(); expected errors (bad input, files) end with one clear line, not a traceback."""
    from .data.folders import DataLayoutError
    from .data.images import UnreadableImageError
    from .model.checkpoint import CheckpointError

    try:
        main()
    except (CheckpointError, DataLayoutError, UnreadableImageError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
