"""python -m ipt.restore --task sr2 --weights IPT_sr2.pt --input in.png --output out.png [--compare] [--target clean.png]
python -m ipt.restore --model mprnet --task deblur --weights model_deblurring.pth --input blurred/ --output sharp/

Restores one image or every image of a folder, with an IPT model (--model ipt, the default) or an MPRNet
one (--model mprnet; --tile/--tile-overlap bound its memory on large photographs, see ipt.inference). --compare also writes NAME_compare.png: the same detailed
window of the input, the task's baseline (bicubic, for SR only), the result and, with --target, the clean
image, enlarged side by side (ipt.compare). --target (a clean image for one input file, or a folder of
clean images matched to the inputs by file stem) also prints the PSNR-Y of the result and of the baseline
against it (SR shaves `scale` pixels off each border, as ipt.evaluate does).

Nothing is lost: every output path is planned and checked before the model loads. A folder's results are
NAME.png, or NAME_EXT.png where inputs share a NAME (x.jpg, x.png -> x_jpg.png, x_png.png; a line says
so). No output may be an input (or --target) file or another output, and files that exist already are
only replaced with --overwrite.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import metrics
from .cli import restorer_from_args, run_main, tool_parser
from .compare import compare_panels, comparison
from .errors import ConfigError, MissingPathError
from .evaluate import baseline_image
from .data.images import list_images, read_image
from .outputs import plan_outputs, printable, write_output


def _targets(target: str | None, inputs: list[Path], folder_input: bool) -> list[Path | None]:
    """The clean image of each input: --target itself for one input file, the file of the same stem in
    the --target folder for a folder of inputs; None for each without --target."""
    if target is None:
        return [None] * len(inputs)
    target = Path(target)
    if not folder_input:
        if not target.is_file():
            raise MissingPathError(f"--target {target}: no such image file (one --input file needs one clean image)")
        return [target]
    by_stem = {}
    for path in list_images(target):
        if path.stem in by_stem:  # which one is the reference would be a guess
            raise ConfigError(f"--target {target}: {by_stem[path.stem].name} and {path.name} have the same stem")
        by_stem[path.stem] = path
    for src in inputs:
        if src.stem not in by_stem:
            raise ConfigError(f"--target {target}: no clean image named {src.stem}.* for {src}")
    return [by_stem[src.stem] for src in inputs]


def _read_target(path: Path, result_shape) -> np.ndarray:
    """The clean image cropped to the result's size (SR originals need not be a multiple of the scale)."""
    target = read_image(path)
    h, w = result_shape[:2]
    if target.shape[0] < h or target.shape[1] < w:
        raise ConfigError(f"{path}: the target is {target.shape[1]}x{target.shape[0]} but the result is {w}x{h}")
    return target[:h, :w]


def _describe_psnr(task, result, baseline, target, path: Path) -> str:
    shave = metrics.shave_for(task)
    try:
        model, base = (metrics.psnr(x, target, shave=shave, y_channel=True) for x in (result, baseline))
    except ConfigError as error:  # an image too small to measure: say which
        raise ConfigError(f"{path}: {error}") from None
    return f"PSNR-Y {model:.3f} dB, {task.baseline_name} {base:.3f} dB (gain {model - base:+.3f} dB)"


def _inputs(source: Path) -> list[Path]:
    if source.is_dir():
        inputs = list_images(source)
        if not inputs:
            raise ConfigError(f"--input {source}: no images in this folder")
        return inputs
    if source.is_file():
        return [source]
    raise MissingPathError(f"--input {source}: no such file or folder")


def main(argv=None) -> None:
    parser = tool_parser("python -m ipt.restore", __doc__)
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="an image file (for one input) or a folder")
    parser.add_argument("--compare", action="store_true",
                        help="also write NAME_compare.png: input | baseline (SR) | result | target (with --target)")
    parser.add_argument("--target", default=None,
                        help="the clean image (for one --input file) or a folder of them matched by file stem: "
                             "prints PSNR-Y against it and adds it to --compare")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files that exist already at the output paths (never an input file)")
    args = parser.parse_args(argv)

    # Everything that can be checked without the model is, before it loads: bad names fail fast.
    source = Path(args.input)
    inputs = _inputs(source)
    targets = _targets(args.target, inputs, source.is_dir())
    plan = plan_outputs(args.output, inputs, folder=source.is_dir(), compare=args.compare, overwrite=args.overwrite,
                        reads=[*(t for t in targets if t is not None), Path(args.weights)])
    for note in plan.notes:
        print(note)
    restorer = restorer_from_args(args)
    task = restorer.task
    for src, dst, compare_path, target_path in zip(inputs, plan.results, plan.compares, targets):
        image = read_image(src)
        result = restorer.restore(image)
        target = None if target_path is None else _read_target(target_path, result.shape)
        sizes = f"{image.shape[1]}x{image.shape[0]} -> {result.shape[1]}x{result.shape[0]}"
        line = f"{printable(src)} -> {printable(dst)} ({sizes})"
        write_output(dst, result)
        baseline = baseline_image(task, image) if compare_path is not None or target is not None else None
        if compare_path is not None:
            write_output(compare_path, comparison(compare_panels(task, image, baseline, result, target)))
        if target is not None:
            line += f", {_describe_psnr(task, result, baseline, target, target_path)}"
        print(line)


if __name__ == "__main__":
    run_main(main)
