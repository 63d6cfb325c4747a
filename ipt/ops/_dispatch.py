"""Chooses, per call, between the compiled kernels (torch.ops.ipt.*) and the reference."""

from __future__ import annotations

import warnings

import torch

from ..cuda_support import OLDEST_ARCH, arch_list_serves, sm
from ..devices import describe_gpu
from ._extension import ExtensionStatus, load
from .contract import KERNEL_DEVICES, OPS

EXTENSION: ExtensionStatus = load()

if EXTENSION.module is not None:
    from ._registrations import register as _register

    _register()


def op_names() -> list[str]:
    """Names of the ops: those the compiled library registered, or the reference's list without it."""
    if EXTENSION.module is None:
        return sorted(OPS)
    return sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("ipt::"))


def kernel_devices(op: str) -> dict[str, bool]:
    """Which devices have a compiled kernel for `op` (e.g. {'cpu': True, 'cuda': False})."""
    if EXTENSION.module is None:
        return dict.fromkeys(KERNEL_DEVICES, False)
    return {device: torch._C._dispatch_has_kernel_for_dispatch_key(f"ipt::{op}", device.upper())
            for device in KERNEL_DEVICES}


# Fixed once the extension is loaded; a plain dict, so torch.compile traces the lookups in use_kernel.
_KERNELS: dict[tuple[str, str], bool] = {
    (op, device): available
    for op in (op_names() if EXTENSION.module is not None else [])
    for device, available in kernel_devices(op).items()
}
_warned_devices: set[str] = set()
_gpus_served: dict[int, bool] = {}  # CUDA device index -> whether the build's architectures run on it


def use_kernel(op: str, device: torch.device) -> bool:
    """True when a compiled kernel of `op` serves `device`; otherwise warn once per device and let the
    caller run the reference."""
    if EXTENSION.module is None:
        return False
    if device.type == "meta":  # shape propagation: the registered fake kernels serve it
        return True
    available = _KERNELS.get((op, device.type), False)
    if not available and device.type not in _warned_devices:
        _warned_devices.add(device.type)
        warnings.warn(
            f"ipt._C has no {device.type} kernels (built with CUDA: {EXTENSION.with_cuda}); ipt.ops runs the "
            f"pure-PyTorch reference on {device.type}. Rebuild with a CUDA torch and toolkit to get them.",
            RuntimeWarning,
            stacklevel=3,
        )
    if available and device.type == "cuda":
        return _gpu_served(device.index if device.index is not None else torch.cuda.current_device())
    return available


def _gpu_served(index: int) -> bool:
    """Whether the CUDA kernels hold code for GPU `index` (else they would fail with "no kernel image is
    available"): a build with CUDA 13 on a V100, say. Decided once per GPU, with a warning when not."""
    served = _gpus_served.get(index)
    if served is None:
        capability = torch.cuda.get_device_capability(index)
        served = _gpus_served[index] = builds_for(capability)
        if not served and not torch.compiler.is_compiling():  # a warning would break a full-graph trace
            archs = EXTENSION.facts["cuda_arch_list"]
            remedy = ("rebuild with a CUDA 12 torch and toolkit (README: GPUs and CUDA toolchains)"
                      if capability < OLDEST_ARCH[13] else
                      f"rebuild with {sm(capability)} in TORCH_CUDA_ARCH_LIST, or leave it unset")
            warnings.warn(
                f"ipt._C's CUDA kernels were built for architectures {archs} (CUDA {EXTENSION.facts.get('cuda_version')}"
                f"), which cannot run on cuda:{index}, a {describe_gpu(torch.device('cuda', index))}; ipt.ops runs "
                f"the pure-PyTorch reference there: {remedy}.",
                RuntimeWarning,
                stacklevel=4,
            )
    return served


def builds_for(capability: tuple[int, int]) -> bool:
    """Whether the loaded CUDA build holds code for a GPU of `capability`; True when its architectures are
    not recorded or spelled in a way cuda_support does not read (torch's names, such as "Volta"): as before
    this check, the kernels are then tried."""
    archs = EXTENSION.facts.get("cuda_arch_list")
    try:
        return archs is None or arch_list_serves(archs, capability)
    except ValueError:
        return True
