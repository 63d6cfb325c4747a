"""Finding the images of a data set on disk.

Three layouts:
- paired restoration sets: ROOT/input/NAME + ROOT/target/NAME (the MPRNet / PaddleGAN layout);
- SR benchmarks: ROOT/HR/NAME + ROOT/LR_bicubic/X{s}/NAME or NAMEx{s} (the EDSR / DIV2K layout);
- clean images only: any image files under ROOT (class sub-folders as in ImageNet, or flat).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import DataLayoutError
from .images import list_images

__all__ = ["DataLayoutError", "ImagePair", "find_pairs", "find_training_images"]


@dataclass(frozen=True)
class ImagePair:
    name: str
    target: Path  # the clean image
    input: Path | None = None  # its degraded version; None: degrade the target on the fly


def _by_stem(paths):
    return {p.stem: p for p in paths}


def _check_partners(inputs: dict, targets: dict, input_dir: Path, target_dir: Path, strip_suffix: str = ""):
    def key(stem):
        return stem[: -len(strip_suffix)] if strip_suffix and stem.endswith(strip_suffix) else stem

    inputs = {key(s): p for s, p in inputs.items()}
    lonely_inputs, lonely_targets = sorted(set(inputs) - set(targets)), sorted(set(targets) - set(inputs))
    if lonely_inputs or lonely_targets:
        problems = []
        if lonely_targets:
            problems.append(f"{len(lonely_targets)} in {target_dir} have no partner in {input_dir} (e.g. {lonely_targets[:3]})")
        if lonely_inputs:
            problems.append(f"{len(lonely_inputs)} in {input_dir} have no partner in {target_dir} (e.g. {lonely_inputs[:3]})")
        raise DataLayoutError("unpaired images: " + "; ".join(problems))
    return [ImagePair(stem, targets[stem], inputs[stem]) for stem in sorted(targets)]


def find_pairs(root, scale: int = 1, recursive: bool = True) -> tuple[str, list[ImagePair]]:
    """(layout, pairs) of a data folder; layout is 'input/target', 'HR/LR_bicubic' or 'clean'."""
    root = Path(root)
    if not root.is_dir():
        raise DataLayoutError(f"{root}: no such data folder")
    if (root / "input").is_dir() and (root / "target").is_dir():
        pairs = _check_partners(_by_stem(list_images(root / "input")), _by_stem(list_images(root / "target")),
                                root / "input", root / "target")
        layout = "input/target"
    elif (root / "HR").is_dir() and (root / "LR_bicubic").is_dir():
        lr_dir = root / "LR_bicubic" / f"X{scale}"
        if not lr_dir.is_dir():
            found = sorted(p.name for p in (root / "LR_bicubic").iterdir() if p.is_dir())
            raise DataLayoutError(f"{root}: no LR_bicubic/X{scale} for scale {scale} (found {found})")
        pairs = _check_partners(_by_stem(list_images(lr_dir)), _by_stem(list_images(root / "HR")), lr_dir,
                                root / "HR", strip_suffix=f"x{scale}")
        layout = "HR/LR_bicubic"
    else:
        paths = list_images(root, recursive=recursive)
        pairs = [ImagePair(str(p.relative_to(root).with_suffix("")), p) for p in paths]
        layout = "clean"
    if not pairs:
        raise DataLayoutError(f"{root}: no images found (looked for {layout} images)")
    return layout, pairs


def find_training_images(source) -> list[Path]:
    """Image files of a pretraining set: a folder (searched recursively, so an ImageNet tree with class
    sub-folders works as well as a flat folder), or a text file listing one image path per line
    (relative paths are relative to the list's folder; blank lines and # comments ignored)."""
    source = Path(source)
    if source.is_dir():
        paths = list_images(source, recursive=True)
    elif source.is_file():
        try:
            lines = source.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as error:
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
