"""Finding the images of a data set on disk.

Three layouts:
- paired restoration sets: ROOT/input/NAME + ROOT/target/NAME (the MPRNet / PaddleGAN layout);
- SR benchmarks: ROOT/HR/NAME + ROOT/LR_bicubic/X{s}/NAME or NAMEx{s} (the EDSR / DIV2K layout);
- clean images only: any image files under ROOT (class sub-folders as in ImageNet, or flat).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .errors import DataLayoutError
from .images import list_images

__all__ = ["DataLayoutError", "ImagePair", "check_pair_size", "find_pairs", "find_training_images"]


@dataclass(frozen=True)
class ImagePair:
    name: str
    target: Path  # the clean image
    input: Path | None = None  # its degraded version; None: degrade the target on the fly


def _by_name(folder: Path, strip_suffix: str = "") -> dict[str, Path]:
    """The images of one side of a pair folder by the name that pairs them: the stem, less strip_suffix
    (the x{s} of SR inputs). Two images of one name (x.jpg and x.png, or x.png and xx2.png) is an error:
    which one is the partner would be a guess."""
    by_name = {}
    for path in list_images(folder):
        stem = path.stem
        name = stem[: -len(strip_suffix)] if strip_suffix and stem.endswith(strip_suffix) else stem
        if name in by_name:
            raise DataLayoutError(f"{folder}: {by_name[name].name} and {path.name} both pair with {name!r}; "
                                  "keep one of them")
        by_name[name] = path
    return by_name


def _check_partners(input_dir: Path, target_dir: Path, strip_suffix: str = ""):
    inputs, targets = _by_name(input_dir, strip_suffix), _by_name(target_dir)
    lonely_inputs, lonely_targets = sorted(set(inputs) - set(targets)), sorted(set(targets) - set(inputs))
    if lonely_inputs or lonely_targets:
        problems = []
        if lonely_targets:
            problems.append(f"{len(lonely_targets)} in {target_dir} have no partner in {input_dir} (e.g. {lonely_targets[:3]})")
        if lonely_inputs:
            problems.append(f"{len(lonely_inputs)} in {input_dir} have no partner in {target_dir} (e.g. {lonely_inputs[:3]})")
        raise DataLayoutError("unpaired images: " + "; ".join(problems))
    return [ImagePair(stem, targets[stem], inputs[stem]) for stem in sorted(targets)]


def _clean_images(root: Path, paths: list[Path]) -> list[ImagePair]:
    """Clean images named by their path under root, less the suffix; two that share that name (x.jpg and
    x.png: different images) keep their suffixes, so no two results carry one name."""
    names = [str(p.relative_to(root).with_suffix("")) for p in paths]
    shared = {name for name, n in Counter(names).items() if n > 1}
    return [ImagePair(str(p.relative_to(root)) if name in shared else name, p) for name, p in zip(names, paths)]


def find_pairs(root, scale: int = 1, recursive: bool = True) -> tuple[str, list[ImagePair]]:
    """(layout, pairs) of a data folder; layout is 'input/target', 'HR/LR_bicubic' or 'clean'."""
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: no such data folder")
    if (root / "input").is_dir() and (root / "target").is_dir():
        pairs = _check_partners(root / "input", root / "target")
        layout = "input/target"
    elif (root / "HR").is_dir() and (root / "LR_bicubic").is_dir():
        lr_dir = root / "LR_bicubic" / f"X{scale}"
        if not lr_dir.is_dir():
            found = sorted(p.name for p in (root / "LR_bicubic").iterdir() if p.is_dir())
            raise DataLayoutError(f"{root}: no LR_bicubic/X{scale} for scale {scale} (found {found})")
        pairs = _check_partners(lr_dir, root / "HR", strip_suffix=f"x{scale}")
        layout = "HR/LR_bicubic"
    else:
        pairs = _clean_images(root, list_images(root, recursive=recursive))
        layout = "clean"
    if not pairs:
        raise DataLayoutError(f"{root}: no images found (looked for {layout} images)")
    return layout, pairs


def check_pair_size(pair: ImagePair, input_size: tuple[int, int], target_size: tuple[int, int], scale: int) -> None:
    """A pair's target must be `scale` times its input's (width, height): exactly for restoration pairs
    (scale 1); for SR up to scale - 1 pixels more per side, an HR image that is not a multiple of the
    scale (benchmarks crop it to one). Anything else is not a pair of the same picture."""
    (iw, ih), (tw, th) = input_size, target_size
    if iw * scale <= tw < (iw + 1) * scale and ih * scale <= th < (ih + 1) * scale:
        return
    least = f"{iw * scale}x{ih * scale}"
    expected = least if scale == 1 else f"{least} to {(iw + 1) * scale - 1}x{(ih + 1) * scale - 1}"
    raise DataLayoutError(f"{pair.name}: the target {pair.target} is {tw}x{th} and its input {pair.input} {iw}x{ih}; "
                          f"for scale {scale} the target must be {expected}")


def find_training_images(source) -> list[Path]:
    """Image files of a pretraining set: a folder (searched recursively, so an ImageNet tree with class
    sub-folders works as well as a flat folder), or a text file listing one image path per line
    (relative paths are relative to the list's folder; blank lines and # comments ignored)."""
    source = Path(source)
    if source.is_dir():
        paths = list_images(source, recursive=True)
    elif source.is_file():
        try:  # names as the file system has them, even those that are not valid UTF-8
            lines = os.fsdecode(source.read_bytes()).splitlines()
        except OSError as error:
            raise DataLayoutError(f"{source}: cannot read this file list ({error})") from None
        paths = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            path = Path(line) if Path(line).is_absolute() else source.parent / line
            paths.append(path)
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise DataLayoutError(f"{source}: {len(missing)} listed files do not exist (e.g. {[str(p) for p in missing[:3]]})")
    else:
        raise DataLayoutError(f"{source}: no such data folder or file list")
    if not paths:
        raise DataLayoutError(f"{source}: no images found")
    return paths
