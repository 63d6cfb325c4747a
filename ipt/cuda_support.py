"""Which GPUs each CUDA major release serves, and what follows from it: the architectures the kernels
are compiled for, the DALI wheel that goes with a torch build, and whether a build runs on a given GPU.

Standard library only: setup.py loads this file by its path at build time, before ipt can be imported.

CUDA 13 dropped Volta (sm_70, the V100): its oldest target is Turing (sm_75). CUDA 12 still builds for
sm_70, so V100 users run a CUDA 12 torch (torch 2.10.0 is the newest release whose default wheel is
CUDA 12) and build the kernels with a CUDA 12 toolkit.
"""

from __future__ import annotations

import re

# Each toolkit's default architectures for the kernels. +PTX on the newest lets later GPUs JIT-compile them.
DEFAULT_ARCHS = {
    13: "7.5;8.0;8.6;9.0;10.0;12.0+PTX",
    12: "7.0;7.5;8.0;8.6;9.0+PTX",
}
OLDER_DEFAULT_ARCHS = "7.0;7.5;8.0;8.6+PTX"  # CUDA 11

# The oldest GPU architecture each CUDA major compiles for (CUDA 13 dropped Maxwell, Pascal and Volta), and
# so the oldest that code built with it runs on: our kernels, and DALI's wheel for it (NVIDIA's support
# matrix: cuda120 SM 5.0 and later, cuda130 Turing and later).
OLDEST_ARCH = {12: (5, 0), 13: (7, 5)}

# DALI publishes one wheel per CUDA major (all import as nvidia.dali): the one matching torch's CUDA runs
# on the same drivers and GPUs. A CPU-only torch gets the CUDA 13 wheel, whose CPU operators need no GPU.
DALI_WHEELS = {12: "nvidia-dali-cuda120", 13: "nvidia-dali-cuda130"}
DALI_DEFAULT_MAJOR = 13
DALI_MINIMUM = "2.0"


def cuda_major(version: str | None) -> int | None:
    """12 for "12.8"; None for None (a CPU-only torch)."""
    return int(version.split(".")[0]) if version else None


def default_arch_list(nvcc_major: int) -> str:
    return DEFAULT_ARCHS.get(nvcc_major, DEFAULT_ARCHS[13] if nvcc_major > 13 else OLDER_DEFAULT_ARCHS)


def dali_wheel(torch_cuda: str | None) -> str:
    """The DALI distribution for a torch built with CUDA `torch_cuda` (torch.version.cuda)."""
    return DALI_WHEELS.get(cuda_major(torch_cuda), DALI_WHEELS[DALI_DEFAULT_MAJOR])


def dali_requirement(torch_cuda: str | None) -> str:
    return f"{dali_wheel(torch_cuda)}>={DALI_MINIMUM}"


def sm(capability: tuple[int, int]) -> str:
    """(7, 0) -> "sm_70"."""
    return f"sm_{capability[0]}{capability[1]}"


_ARCH = re.compile(r"(\d+)\.(\d+)([af]?)(\+PTX)?")


def parse_arch_list(arch_list: str) -> list[tuple[int, int, str, bool]]:
    """"7.0;9.0a;12.0+PTX" -> [(7, 0, "", False), (9, 0, "a", False), (12, 0, "", True)]: (major, minor,
    suffix, PTX embedded too). ValueError for what it does not know, such as torch's names ("Volta")."""
    archs = []
    for item in arch_list.replace(" ", ";").split(";"):
        if item:
            match = _ARCH.fullmatch(item)
            if match is None:
                raise ValueError(f"unknown CUDA architecture {item!r} in {arch_list!r}")
            major, minor, suffix, ptx = match.groups()
            archs.append((int(major), int(minor), suffix, bool(ptx)))
    return archs


def arch_list_serves(arch_list: str, capability: tuple[int, int]) -> bool:
    """Whether kernels built for `arch_list` run on a GPU of `capability`: machine code (SASS) runs on its
    own major version at the same or a higher minor, PTX is JIT-compiled for any later GPU; "a" code (9.0a)
    only on that very GPU, "f" code (10.0f) on its major's later minors."""
    major, minor = capability

    def serves(m: int, n: int, suffix: str, ptx: bool) -> bool:
        if suffix == "a":
            return (m, n) == (major, minor)
        return (m == major and n <= minor) or (ptx and (m, n) <= (major, minor))

    return any(serves(*arch) for arch in parse_arch_list(arch_list))
