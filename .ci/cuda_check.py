"""CI: checks an installed CUDA build of ipt._C. Run from the folder the wheel was installed into.

Usage: python cuda_check.py CUDA_MAJOR CUOBJDUMP SOURCE_TREE

It must import against a CUDA build of torch of that major version, register a CPU and a CUDA kernel for
every op, and hold machine code (SASS) of every CUDA source for every architecture of its arch list,
plus PTX for a "+PTX" one: a source that failed to compile for one architecture cannot pass unnoticed.
"""

import re
import subprocess
import sys
from pathlib import Path

import torch

import ipt.ops
from ipt.cuda_support import parse_arch_list, sm

major, cuobjdump, tree = int(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
assert torch.version.cuda and int(torch.version.cuda.split(".")[0]) == major, torch.__version__
facts = ipt.ops.EXTENSION.facts
assert facts["with_cuda"] and facts["torch_version"] == torch.__version__, facts
assert int(facts["cuda_version"].split(".")[0]) == major, facts
missing = [op for op in ipt.ops.op_names() if not ipt.ops.kernel_devices(op)["cuda"]]
assert not missing, f"ops without CUDA kernels: {missing}"


def embedded(kind: str) -> set[str]:
    """Names of the cubins ("elf") or PTX files in the module, e.g. "rain.sm_70.cubin"."""
    listing = subprocess.run([cuobjdump, f"--list-{kind}", ipt.ops.EXTENSION.path], capture_output=True, text=True,
                             check=True).stdout
    return set(re.findall(r":\s*(\S+)$", listing, flags=re.M))


sources = sorted(p.stem for p in (tree / "csrc" / "cuda").glob("*.cu"))
archs = parse_arch_list(facts["cuda_arch_list"])
cubins = embedded("elf")
ptx = embedded("ptx") if any(with_ptx for *_, with_ptx in archs) else set()
absent = []
for arch_major, arch_minor, suffix, with_ptx in archs:
    name = sm((arch_major, arch_minor)) + suffix
    absent += [f"{s}.{name}.cubin" for s in sources if f"{s}.{name}.cubin" not in cubins]
    if with_ptx:
        absent += [f"{s}.{name}.ptx" for s in sources if f"{s}.{name}.ptx" not in ptx]
assert sources and not absent, f"machine code missing from {ipt.ops.EXTENSION.path}: {absent}"
print(f"CUDA build OK: torch {torch.__version__}, CUDA {facts['cuda_version']}, archs {facts['cuda_arch_list']}: "
      f"{len(ipt.ops.op_names())} ops with CPU and CUDA kernels; {len(sources)} CUDA sources x "
      f"{len(archs)} architecture{'s' * (len(archs) != 1)} of machine code")
