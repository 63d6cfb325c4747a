"""Which GPUs each CUDA toolchain's build serves (ipt.cuda_support), and what the toolkit does with a GPU
its kernels or its DALI wheel were not built for (a V100 beside a CUDA 13 build). No GPU is needed:
the GPU's capability and name are stood in for."""

import dataclasses
import importlib.metadata
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

import ipt.ops._dispatch as dispatch
from ipt.cuda_support import (DEFAULT_ARCHS, arch_list_serves, dali_requirement, dali_wheel,
                              default_arch_list, parse_arch_list)
from ipt.ops.__main__ import report

V100, T4, A100, L4, H100, B200, RTX5090 = (7, 0), (7, 5), (8, 0), (8, 9), (9, 0), (10, 0), (12, 0)


@pytest.mark.parametrize("gpu, served", [(V100, False), (T4, True), (A100, True), (L4, True), (H100, True),
                                         (B200, True), ((10, 3), True), ((11, 0), False), (RTX5090, True),
                                         ((12, 1), True)])
def test_which_gpus_a_cuda_13_build_runs_on(gpu, served):
    # SASS runs on its own major at the same or a higher minor (8.6 code on an L4, 8.9); PTX only on later
    # GPUs (12.0+PTX cannot serve an 11.0 GPU, and there is no 11.x SASS): the V100 is left out.
    assert arch_list_serves(DEFAULT_ARCHS[13], gpu) is served


@pytest.mark.parametrize("gpu", [V100, T4, A100, L4, H100, B200, RTX5090])
def test_a_cuda_12_build_runs_on_the_v100_and_every_later_gpu(gpu):
    assert arch_list_serves(DEFAULT_ARCHS[12], gpu)  # 9.0+PTX JIT-compiles for Blackwell


def test_a_build_without_ptx_serves_no_later_major():
    assert arch_list_serves("7.0", V100) and not arch_list_serves("7.0", A100)
    assert parse_arch_list("7.0;8.6+PTX") == [(7, 0, "", False), (8, 6, "", True)]


def test_architecture_specific_code_serves_only_its_gpu():
    assert arch_list_serves("9.0a", H100) and not arch_list_serves("9.0a", B200)
    assert arch_list_serves("10.0f", (10, 3)) and not arch_list_serves("10.0a", (10, 3))
    with pytest.raises(ValueError, match="unknown CUDA architecture 'Volta'"):
        parse_arch_list("Volta;8.0")


@pytest.mark.skipif(not (Path("/usr/local/cuda/bin/nvcc").is_file() or shutil.which("nvcc")), reason="no nvcc")
def test_the_default_architectures_are_those_the_local_nvcc_accepts():
    nvcc = "/usr/local/cuda/bin/nvcc" if Path("/usr/local/cuda/bin/nvcc").is_file() else shutil.which("nvcc")
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True, check=True).stdout
    major = int(re.search(r"release (\d+)\.", out).group(1))
    accepted = set(subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, check=True).stdout.split())
    ours = {f"compute_{m}{n}" for m, n, _, _ in parse_arch_list(default_arch_list(major))}
    assert ours <= accepted, ours - accepted
    if major >= 13:  # the reason V100 users need CUDA 12
        assert "compute_70" not in accepted and "compute_75" in accepted


def test_the_dali_wheel_follows_torchs_cuda():
    assert dali_wheel("12.8") == "nvidia-dali-cuda120"
    assert dali_wheel("13.0") == dali_wheel(None) == "nvidia-dali-cuda130"
    # the installed package asks for the one that matches the torch it was built against (setup.py)
    assert dali_requirement(torch.version.cuda) in importlib.metadata.requires("ipt-toolkit")


@pytest.fixture
def gpu(monkeypatch):
    """Stands in a GPU of the given capability as cuda:0."""
    def install(capability, name):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    return install


@pytest.fixture
def cuda_13_build(monkeypatch):
    if dispatch.EXTENSION.module is None:
        pytest.skip("ipt._C is not built")
    facts = {**dispatch.EXTENSION.facts, "with_cuda": True, "cuda_version": "13.0", "cuda_arch_list": DEFAULT_ARCHS[13]}
    monkeypatch.setattr(dispatch, "EXTENSION", dataclasses.replace(dispatch.EXTENSION, with_cuda=True, facts=facts))
    monkeypatch.setattr(dispatch, "_gpus_served", {})
    import ipt.ops.__main__ as main

    monkeypatch.setattr(main, "EXTENSION", dispatch.EXTENSION)


def test_kernels_without_code_for_the_gpu_fall_back_to_the_reference_with_one_warning(gpu, cuda_13_build):
    gpu(V100, "Tesla V100-SXM2-16GB")
    with pytest.warns(RuntimeWarning, match=r"built for architectures 7\.5;.*cannot run on cuda:0, a Tesla "
                                            r"V100-SXM2-16GB \(sm_70\).*rebuild with a CUDA 12 torch and toolkit"):
        assert dispatch._gpu_served(0) is False
    assert dispatch._gpus_served == {0: False}  # decided once


def test_an_op_on_a_gpu_without_code_runs_the_reference(gpu, cuda_13_build, monkeypatch):
    op = dispatch.op_names()[0]
    monkeypatch.setitem(dispatch._KERNELS, (op, "cuda"), True)  # the kernel is registered, as in a CUDA build
    gpu(V100, "Tesla V100-SXM2-16GB")
    with pytest.warns(RuntimeWarning, match="cannot run on cuda:0"):
        assert dispatch.use_kernel(op, torch.device("cuda", 0)) is False
    monkeypatch.setattr(dispatch, "_gpus_served", {})
    gpu(A100, "NVIDIA A100-SXM4-80GB")
    assert dispatch.use_kernel(op, torch.device("cuda", 0)) is True


def test_a_build_whose_architectures_cannot_be_read_is_tried_as_before(gpu, cuda_13_build, monkeypatch):
    monkeypatch.setitem(dispatch.EXTENSION.facts, "cuda_arch_list", "Volta")  # torch's name for 7.0+PTX
    gpu(A100, "NVIDIA A100-SXM4-80GB")
    assert dispatch._gpu_served(0) is True


def test_a_non_volta_gpu_left_out_is_told_to_add_its_architecture(gpu, cuda_13_build, monkeypatch):
    monkeypatch.setitem(dispatch.EXTENSION.facts, "cuda_arch_list", "7.5;8.0")
    gpu(H100, "NVIDIA H100 80GB HBM3")
    with pytest.warns(RuntimeWarning, match="rebuild with sm_90 in TORCH_CUDA_ARCH_LIST"):
        assert dispatch._gpu_served(0) is False


def test_kernels_with_code_for_the_gpu_are_used(gpu, cuda_13_build, recwarn):
    gpu(A100, "NVIDIA A100-SXM4-80GB")
    assert dispatch._gpu_served(0) is True
    assert not [w for w in recwarn if "cannot run" in str(w.message)]


def test_the_ops_report_says_which_gpus_the_kernels_serve(gpu, cuda_13_build):
    gpu(V100, "Tesla V100-SXM2-16GB")
    assert re.search(r"cuda:0 +: Tesla V100-SXM2-16GB \(sm_70\): no kernels for it \(built for 7\.5;", report())
    gpu(H100, "NVIDIA H100 80GB HBM3")
    assert "NVIDIA H100 80GB HBM3 (sm_90): CUDA kernels run here" in report()


def test_dali_for_cuda_13_on_a_v100_is_one_clear_error(gpu, monkeypatch):
    dali = pytest.importorskip("ipt.pipelines.dali")
    gpu(V100, "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(dali, "installed_dali_cuda", lambda: 13)
    with pytest.raises(dali.DaliUnavailableError, match=r"^nvidia-dali-cuda130 does not run on cuda:0, a Tesla "
                                                        r"V100-SXM2-16GB \(sm_70\) \(it needs sm_75 or newer\): pip "
                                                        r"uninstall nvidia-dali-cuda130 && pip install nvidia-dali-cuda120"):
        dali.check_dali_runs_on(torch.device("cuda:0"))
    monkeypatch.setattr(dali, "installed_dali_cuda", lambda: 12)
    dali.check_dali_runs_on(torch.device("cuda:0"))  # the CUDA 12 wheel serves it
    gpu(T4, "Tesla T4")
    monkeypatch.setattr(dali, "installed_dali_cuda", lambda: 13)
    dali.check_dali_runs_on(torch.device("cuda:0"))


def test_the_installed_dali_wheel_is_recognised():
    dali = pytest.importorskip("ipt.pipelines.dali")
    backend = pytest.importorskip("nvidia.dali.backend")
    # DALI's own record of the CUDA it was built with (e.g. 13492), against the wheel's name
    assert dali.installed_dali_cuda() == backend.__cuda_version__ // 1000
