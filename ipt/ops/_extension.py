"""Finds and loads the compiled kernels (ipt._C), refusing a build made for another torch.

The build writes ipt/_C_build.json beside the module (setup.py); it is read before the shared library
is loaded, because a module built against another torch usually fails inside the dynamic loader with
an unhelpful "undefined symbol" message, or worse, loads and misbehaves.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

PACKAGE_DIR = Path(__file__).resolve().parent.parent
SOURCE_ROOT = PACKAGE_DIR.parent
BUILD_FACTS_FILE = PACKAGE_DIR / "_C_build.json"


class ExtensionMismatchError(ImportError):
    """ipt._C exists but was built for another torch (or cannot be loaded)."""


@dataclass(frozen=True)
class ExtensionStatus:
    module: object | None  # the loaded ipt._C, or None when the reference ops stand in
    path: str | None
    built_with_torch: str | None
    with_cuda: bool
    facts: dict


def _rebuild_command() -> str:
    if (SOURCE_ROOT / "setup.py").is_file():  # a source checkout (editable install or plain tree)
        return f"pip install --no-build-isolation -e {SOURCE_ROOT}"
    return "pip install --no-build-isolation --no-deps --force-reinstall <path to the ipt-toolkit source>"


def _mismatch(built: str, detail: str = "") -> ExtensionMismatchError:
    return ExtensionMismatchError(
        f"ipt._C was built against torch {built} but torch {torch.__version__} is running{detail}. "
        f"Rebuild it against the running torch: {_rebuild_command()}"
    )


def load() -> ExtensionStatus:
    spec = importlib.util.find_spec("ipt._C")
    if spec is None:
        warnings.warn(
            "ipt._C (the compiled kernels) is not built, so ipt.ops runs the pure-PyTorch reference "
            f"implementations, which are slower. Build the kernels with: {_rebuild_command()}",
            RuntimeWarning,
            stacklevel=3,
        )
        return ExtensionStatus(None, None, None, False, {})

    facts = json.loads(BUILD_FACTS_FILE.read_text()) if BUILD_FACTS_FILE.is_file() else {}
    built = facts.get("torch_version")
    if built is not None and built != torch.__version__:
        raise _mismatch(built)
    try:
        module = importlib.import_module("ipt._C")
    except (ImportError, OSError) as error:
        raise _mismatch(built or "an unknown version", f" and loading {spec.origin} failed ({error})") from error
    if module.TORCH_VERSION != torch.__version__:
        raise _mismatch(module.TORCH_VERSION)
    return ExtensionStatus(module, spec.origin, module.TORCH_VERSION, bool(module.WITH_CUDA), facts)
