"""`python -m ipt.ops`: what the fused-op library offers on this machine."""

from __future__ import annotations

import torch

from ..devices import describe_gpu
from . import EXTENSION, kernel_devices, op_names
from ._dispatch import builds_for
from .contract import KERNEL_DEVICES, OPS


def _schema(op: str) -> str:
    if EXTENSION.module is None:
        return OPS[op][0]
    return str(getattr(torch.ops.ipt, op).default._schema).removeprefix("ipt::")


def _gpu_lines() -> list[str]:
    """Per GPU: whether the CUDA kernels were built for its architecture (a CUDA 13 build has no V100 code)."""
    lines = []
    for index in range(torch.cuda.device_count() if torch.cuda.is_available() else 0):
        verdict = ("no CUDA kernels built" if not EXTENSION.with_cuda
                   else "CUDA kernels run here" if builds_for(torch.cuda.get_device_capability(index))
                   else f"no kernels for it (built for {EXTENSION.facts['cuda_arch_list']}): the reference runs")
        lines.append(f"  cuda:{index:<11}: {describe_gpu(torch.device('cuda', index))}: {verdict}")
    return lines


def report() -> str:
    if EXTENSION.module is None:
        lines = ["extension      : not built -- ipt.ops runs the pure-PyTorch reference implementations"]
    else:
        lines = [
            f"extension      : loaded from {EXTENSION.path}",
            f"built against  : torch {EXTENSION.built_with_torch} (running torch {torch.__version__})",
        ]
        if EXTENSION.with_cuda:
            lines.append(
                f"CUDA build     : toolkit {EXTENSION.facts.get('cuda_version', '?')}, "
                f"architectures {EXTENSION.facts.get('cuda_arch_list', '?')}"
            )
    names = op_names()
    devices = KERNEL_DEVICES
    lines.append(f"GPU visible    : {torch.cuda.is_available()}")
    lines += _gpu_lines()
    lines.append(f"CPU threads    : {torch.get_num_threads()}")
    lines.append("ops            : " + f"{'kernels on ' + '/'.join(devices):<22}schema")
    width = max(map(len, names)) + 1
    for op in names:
        have = kernel_devices(op)
        kernels = ", ".join(f"{d} {'yes' if have[d] else 'no'}" for d in devices)
        lines.append(f"  {op:<{width}}: {kernels:<22}{_schema(op)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())
