"""Build of the ipt._C extension (CPU kernels always; CUDA kernels when torch and a toolkit allow).

Environment variables:
  IPT_BUILD_CUDA=0|1     force a CPU-only build (0) or require the CUDA kernels (1); unset: automatic.
  CUDA_HOME              CUDA toolkit root; otherwise found from CUDA_PATH, /usr/local/cuda or nvcc.
  TORCH_CUDA_ARCH_LIST   GPU architectures; otherwise chosen from the nvcc version (ipt/cuda_support.py).
  MAX_JOBS               parallel compile jobs (ninja).

Install with `pip install --no-build-isolation .` into an environment that already has torch: with
build isolation pip builds against the newest torch release instead of the one you run. The DALI
requirement follows that torch too: nvidia-dali-cuda120 beside a CUDA 12 torch (V100s), else
nvidia-dali-cuda130.
"""

import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_cuda_support():
    """ipt/cuda_support.py, by its path: ipt itself cannot be imported before it is built."""
    spec = importlib.util.spec_from_file_location("_ipt_cuda_support", os.path.join(ROOT, "ipt", "cuda_support.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda_support = _load_cuda_support()


def _is_cuda_root(path):
    return bool(path) and os.path.isfile(os.path.join(path, "include", "cuda_runtime.h")) and any(
        os.path.isfile(os.path.join(path, "bin", exe)) for exe in ("nvcc", "nvcc.exe")
    )


def _find_cuda_home():
    """The CUDA toolkit root, or None.

    torch guesses the root from the location of `nvcc` on PATH; where that is a wrapper script (as
    /usr/local/bin/nvcc is on some images) the guess is wrong and linking fails with -lcudart, so the
    root is resolved here, before torch.utils.cpp_extension reads CUDA_HOME at import.
    """
    candidates = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
    return next((c for c in candidates if _is_cuda_root(c)), None)


def _build_cuda_setting():
    value = os.environ.get("IPT_BUILD_CUDA", "").strip().lower()
    if value in ("", "auto"):
        return None
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"IPT_BUILD_CUDA={value!r}: use 1 (require CUDA kernels), 0 (CPU only) or leave it unset")


CUDA_HOME = _find_cuda_home()
if CUDA_HOME:
    os.environ["CUDA_HOME"] = CUDA_HOME

import torch  # noqa: E402  (CUDA_HOME must be settled first)
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402


def _nvcc_version(cuda_home):
    out = subprocess.run([os.path.join(cuda_home, "bin", "nvcc"), "--version"], capture_output=True, text=True)
    match = re.search(r"release (\d+)\.(\d+)", out.stdout)
    if not match:
        raise SystemExit(f"could not read the CUDA version from `nvcc --version`:\n{out.stdout}{out.stderr}")
    return int(match.group(1)), int(match.group(2))


def _decide_cuda():
    """(with_cuda, reason): whether to compile the CUDA kernels, and why."""
    wanted = _build_cuda_setting()
    if wanted is False:
        return False, "IPT_BUILD_CUDA=0"
    problem = None
    if torch.version.cuda is None:
        problem = f"torch {torch.__version__} is not a CUDA build"
    elif CUDA_HOME is None:
        problem = "no CUDA toolkit found (set CUDA_HOME)"
    if problem is None:
        return True, f"torch CUDA {torch.version.cuda}, toolkit {CUDA_HOME}"
    if wanted:
        raise SystemExit(f"IPT_BUILD_CUDA=1 but the CUDA kernels cannot be built: {problem}")
    return False, problem


def _extension():
    with_cuda, reason = _decide_cuda()
    print(f"ipt: building {'CPU + CUDA' if with_cuda else 'CPU-only'} kernels ({reason})", file=sys.stderr)
    sources = sorted(glob.glob("csrc/*.cpp")) + sorted(glob.glob("csrc/cpu/*.cpp"))
    defines = [
        f'-DIPT_TORCH_VERSION="{torch.__version__}"',
        f"-DIPT_WITH_CUDA={int(with_cuda)}",
        "-DPy_LIMITED_API=0x030A0000",  # one abi3 module serves every CPython >= 3.10
    ]
    # -ffp-contract=off: no a*b+c -> fma contraction on CPUs that have fma (aarch64, -march=native), so the
    # kernels sum in the reference's order of IEEE operations (as --fmad=false does for nvcc below).
    compile_args = {"cxx": ["-O3", "-fopenmp", "-ffp-contract=off", *defines]}
    build_facts = {"torch_version": torch.__version__, "with_cuda": with_cuda}
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        nvcc_major, nvcc_minor = _nvcc_version(CUDA_HOME)
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", cuda_support.default_arch_list(nvcc_major))
        # --fmad=false: no silent a*b+c -> fma contraction, so the shared host/device math in
        # csrc/common gives the CPU kernels' numbers on the GPU too.
        compile_args["nvcc"] = ["-O3", "-lineinfo", "--fmad=false", *defines]
        build_facts.update(
            cuda_version=f"{nvcc_major}.{nvcc_minor}", cuda_arch_list=os.environ["TORCH_CUDA_ARCH_LIST"]
        )
    make = CUDAExtension if with_cuda else CppExtension
    ext = make(
        name="ipt._C",
        sources=sources,
        extra_compile_args=compile_args,
        extra_link_args=["-fopenmp"],  # without it at::parallel_for silently runs on one thread
        py_limited_api=True,
    )
    return ext, build_facts


class BuildWithFacts(BuildExtension):
    """Builds ipt._C and writes ipt/_C_build.json beside it: which torch it was built against, so a
    mismatch is reported clearly at import instead of failing inside the dynamic loader."""

    def run(self):
        super().run()
        for ext in self.extensions:
            path = os.path.join(os.path.dirname(self.get_ext_fullpath(ext.name)), "_C_build.json")
            with open(path, "w") as f:
                json.dump(BUILD_FACTS, f, indent=2)


EXTENSION, BUILD_FACTS = _extension()

# pyproject.toml declares the dependencies dynamic for this one: DALI's wheel per CUDA major.
REQUIREMENTS = [
    "torch>=2.4",
    "numpy>=1.24",
    "scikit-image>=0.22",  # the built-in sample photographs
    "pillow>=9",  # image files
    "safetensors>=0.4",  # our checkpoints
    "tqdm>=4.60",  # progress bars
    cuda_support.dali_requirement(torch.version.cuda),  # the data pipelines (ipt.pipelines)
]

setup(
    # pipelines/ installs as ipt.pipelines: importable after install without claiming a top-level name
    packages=find_packages(include=["ipt", "ipt.*"]) + ["ipt.pipelines"],
    package_dir={"ipt.pipelines": "pipelines"},
    install_requires=REQUIREMENTS,
    ext_modules=[EXTENSION],
    cmdclass={"build_ext": BuildWithFacts},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},
)
