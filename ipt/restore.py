"""python -m ipt.restore --task sr2 --weights IPT_sr2.pt --input in.png --output out.png

Restores one image or every image of a folder; --compare also writes the input (enlarged for SR) and
the result side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .cli import restorer_from_args, run_main, tool_parser
from .errors import ConfigError, MissingPathError
from .data.images import list_images, read_image, write_image


def side_by_side(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """The input enlarged (nearest) to the result's size, a 4-px white gap, then the result."""
    fy, fx = after.shape[0] // before.shape[0], after.shape[1] // before.shape[1]
    enlarged = np.repeat(np.repeat(before, fy, axis=0), fx, axis=1)[: after.shape[0], : after.shape[1]]
    gap = np.full((after.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([enlarged, gap, after], axis=1)


def main(argv=None) -> None:
    parser = tool_parser("python -m ipt.restore", __doc__)
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="an image file (for one input) or a folder")
    parser.add_argument("--compare", action="store_true", help="also write NAME_compare.png: input | result")
    args = parser.parse_args(argv)

    source = Path(args.input)
    if source.is_dir():
        inputs = list_images(source)
        if not inputs:
            raise ConfigError(f"--input {source}: no images in this folder")
        outputs = [Path(args.output) / f"{p.stem}.png" for p in inputs]
    elif source.is_file():
        inputs, outputs = [source], [Path(args.output)]
    else:
        raise MissingPathError(f"--input {source}: no such file or folder")
    restorer = restorer_from_args(args)
    for src, dst in zip(inputs, outputs):
        image = read_image(src)
        result = restorer.restore(image)
        write_image(dst, result)
        if args.compare:
            write_image(dst.with_name(f"{dst.stem}_compare.png"), side_by_side(image, result))
        print(f"{src} -> {dst} ({image.shape[1]}x{image.shape[0]} -> {result.shape[1]}x{result.shape[0]})")


if __name__ == "__main__":
    run_main(main)
