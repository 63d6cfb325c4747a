"""Where a run's results are written: every output path planned and checked before anything is restored
(ipt.restore and Restorer.run), so that no result replaces an input, another result, or -- unless asked --
a file that was there before; and names printed whatever bytes the file system allows."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .data.images import image_format, write_image
from .errors import ConfigError, IPTError, OutputError


@dataclass(frozen=True)
class OutputPlan:
    """Every path a run writes, decided before it reads or restores anything."""

    results: list[Path]  # one per input (the one output of an array)
    compares: list[Path | None]  # NAME_compare.png beside each result, or None
    notes: list[str]  # what the user should be told (renamed results), one line each


def plan_outputs(output, inputs: Sequence[Path], *, folder: bool, compare: bool = False, overwrite: bool = False,
                 reads: Sequence[Path] = (), option: str = "--output",
                 overwrite_flag: str = "--overwrite") -> OutputPlan:
    """The paths of a run's outputs, checked before the model loads and anything is written.

    folder: `output` is a folder, one result per input in it (NAME.png, or NAME_EXT.png for inputs that
    share a NAME: x.jpg and x.png give x_jpg.png and x_png.png); else `output` is the one result's file.
    compare: also NAME_compare.png beside each result. Refused (ConfigError, naming the file): an output
    that is one of `inputs` or `reads` (targets, weights: whatever else the run reads), two outputs on one
    path, an existing file unless `overwrite` (never an input, even then), an output of the wrong kind (a
    folder for one file, a file for a folder, an unknown extension); and an OutputError where files cannot
    be created. option / overwrite_flag: how messages name the two settings (the CLI's by default)."""
    output = Path(output)
    if folder:
        _check_folder_output(output, option)
        names, notes = _result_names(inputs)
        results = [output / name for name in names]
        sources = [printable(src) for src in inputs]
    else:
        _check_file_output(output, option)
        results, notes, sources = [output], [], [printable(src) for src in inputs[:1]] or ["the image"]
    compares = [r.with_name(f"{r.stem}_compare.png") if compare else None for r in results]
    planned = ([(r, f"the result of {s}") for r, s in zip(results, sources)]
               + [(c, f"the comparison of {s}") for c, s in zip(compares, sources) if c is not None])
    _refuse_shared(planned)
    paths = [p for p, _ in planned]
    _refuse_inputs(paths, [*inputs, *reads], option)
    _refuse_existing(paths, output, overwrite, option, overwrite_flag)
    for parent in dict.fromkeys(p.parent for p in paths):
        _check_writable(parent)
    return OutputPlan(results, compares, notes)


def printable(path) -> str:
    """A path as it can be printed: a name that is not valid UTF-8 (held by Python as surrogate escapes)
    would make print() fail, so its undecodable bytes are shown as \\xNN."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _check_file_output(output: Path, option: str) -> None:
    if output.is_dir():
        raise ConfigError(f"{option} {printable(output)} is a folder, but the input is one image: give the result's "
                          f"file name, e.g. {printable(output / 'result.png')}")
    if image_format(output) is None:
        raise ConfigError(f"{option} {printable(output)}: not an image file name (extension {output.suffix!r}); use "
                          ".png, .jpg, .bmp, .tif, .webp, ...")


def _check_folder_output(output: Path, option: str) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"{option} {printable(output)} is a file, but there are several inputs: give a folder")
    if not output.exists() and image_format(output) is not None:
        raise ConfigError(f"{option} {printable(output)} looks like an image file name, but there are several inputs "
                          "(a folder or a list): give a folder")


def _result_names(inputs: Sequence[Path]) -> tuple[list[str], list[str]]:
    """NAME.png for each input, NAME_EXT.png where inputs share their NAME; and a note saying so."""
    count: dict[str, int] = {}
    for src in inputs:
        count[src.stem] = count.get(src.stem, 0) + 1
    names = [f"{src.stem}_{src.suffix[1:]}.png" if count[src.stem] > 1 else f"{src.stem}.png" for src in inputs]
    renamed = [f"{printable(src.name)} -> {printable(name)}" for src, name in zip(inputs, names) if count[src.stem] > 1]
    if not renamed:
        return names, []
    more = f", ... ({len(renamed) - 4} more)" if len(renamed) > 4 else ""
    return names, [f"note: {len(renamed)} inputs share their name with another, so their results are named "
                   f"NAME_EXT.png: {', '.join(renamed[:4])}{more}"]


def _refuse_shared(planned: list[tuple[Path, str]]) -> None:
    first: dict[Path, str] = {}
    for path, owner in planned:
        if path in first:
            raise ConfigError(f"{first[path]} and {owner} would both be written to {printable(path)}: rename one of "
                              "the inputs, or restore them separately")
        first[path] = owner


def _refuse_inputs(outputs: list[Path], reads: Sequence[Path], option: str) -> None:
    """No output may be a file the run reads. Compared by device and inode (as os.path.samefile does), so
    that another spelling of the path, a link or a case-insensitive file system cannot slip through."""
    read = {}
    for path in reads:
        try:
            st = os.stat(path)
        except OSError:  # not there: the run fails reading it, with its own message
            continue
        read.setdefault((st.st_dev, st.st_ino), path)
    for path in outputs:
        try:
            st = os.stat(path)
        except OSError:  # not there yet: not an input
            continue
        if (st.st_dev, st.st_ino) in read:
            raise ConfigError(f"{printable(path)} would replace {printable(read[st.st_dev, st.st_ino])}, an input of "
                              f"this run: choose another {option}")


def _refuse_existing(outputs: list[Path], output: Path, overwrite: bool, option: str, flag: str) -> None:
    existing = [p for p in outputs if os.path.lexists(p)]
    folders = [p for p in existing if p.is_dir()]
    if folders:
        raise ConfigError(f"{printable(folders[0])} is a folder where a result would be written: choose another "
                          f"{option}")
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more of this run's {len(outputs)} outputs)" if len(existing) > 1 else ""
        raise ConfigError(f"{printable(existing[0])} exists already{more}: pass {flag} to replace "
                          f"{'them' if more else 'it'}, or choose another {option} than {printable(output)}")


def _check_writable(folder: Path) -> None:
    """Files can be created in `folder`, or in the nearest folder above it that exists (the write makes
    the rest): checked before the model loads, so that an unwritable output fails at once, not after."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write into {printable(folder)}: {printable(existing)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {printable(folder)}: no permission to create files in "
                          f"{printable(existing)}")


def write_output(path: Path, image: np.ndarray) -> None:
    """write_image, with a failure of the file system (a full or read-only disk, a folder that went away)
    one OutputError naming the file."""
    try:
        write_image(path, image)
    except OSError as error:
        if isinstance(error, IPTError):
            raise
        raise OutputError(f"{printable(path)}: cannot write it ({error.strerror or error})") from None
