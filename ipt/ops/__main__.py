"""`python -m ipt.ops`: what the fused-op library offers on this machine."""

from __future__ import annotations

import torch

from . import EXTENSION, kernel_devices, op_names
from .contract import KERNEL_DEVICES, OPS


def _schema(op: str) -> str:
    if EXTENSION.module is None:
        return OPS[op][0]
    return str(getattr(torch.ops.ipt, op).default._schema).removeprefix("ipt::")


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
