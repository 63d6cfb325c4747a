"""The compiled module: build facts, the torch-version guard, the fallback, the CLI and the CMake build."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import ipt.ops
from ipt.ops import contract

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "ipt"


def _run_python(code, cwd, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_build_facts_record_the_running_torch(kernels):
    facts = json.loads((PACKAGE / "_C_build.json").read_text())
    assert facts["torch_version"] == torch.__version__ == kernels.module.TORCH_VERSION
    assert facts["with_cuda"] == bool(kernels.module.WITH_CUDA)
    assert torch.version.cuda is not None or not facts["with_cuda"]  # CUDA kernels need a CUDA torch
    # The recorded fact matches what is registered: CUDA kernels exactly when the build says so.
    assert {op: ipt.ops.kernel_devices(op) for op in ipt.ops.op_names()} == {
        op: {"cpu": True, "cuda": facts["with_cuda"]} for op in contract.OPS
    }


def test_cpu_kernels_link_openmp(kernels):
    # at::parallel_for only spreads work over threads when the module is built and linked with OpenMP.
    needed = subprocess.run(["readelf", "-d", kernels.path], capture_output=True, text=True, check=True).stdout
    assert "libgomp" in needed


def test_other_torch_version_is_a_clear_error(tmp_path):
    result = _run_python(
        """
        import torch
        torch.__version__ = "1.2.3+fake"
        import ipt.ops
        """,
        cwd=tmp_path,
        env_extra={"PYTHONPATH": str(REPO)},
    )
    assert result.returncode != 0
    assert "ExtensionMismatchError" in result.stderr
    assert f"built against torch {torch.__version__} but torch 1.2.3+fake is running" in result.stderr
    assert "pip install --no-build-isolation" in result.stderr


# An editable install maps ipt._C to the source tree's module through a meta-path finder; a copied
# package must not see it, or it would find the real build instead of its own state.
WITHOUT_EDITABLE_FINDER = """
import sys
sys.meta_path = [f for f in sys.meta_path if "__editable__" not in getattr(f, "__module__", type(f).__module__)]
"""


def _copy_package(dst, keep_extension):
    ignore = shutil.ignore_patterns("__pycache__", *([] if keep_extension else ["*.so", "_C_build.json"]))
    shutil.copytree(PACKAGE, dst / "ipt", ignore=ignore)


def test_module_version_is_checked_without_build_facts(kernels, tmp_path):
    _copy_package(tmp_path, keep_extension=True)
    (tmp_path / "ipt" / "_C_build.json").unlink()
    result = _run_python(
        WITHOUT_EDITABLE_FINDER
        + """
import torch
torch.__version__ = "1.2.3+fake"
import ipt.ops
print(ipt.ops.EXTENSION)
""",
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "ExtensionMismatchError" in result.stderr
    assert "1.2.3+fake" in result.stderr


def test_unbuilt_checkout_falls_back_to_reference_with_one_warning(tmp_path):
    _copy_package(tmp_path, keep_extension=False)
    result = _run_python(
        WITHOUT_EDITABLE_FINDER
        + """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import torch, ipt.ops
    x = torch.randn(2, 3, 6, 6)
    for _ in range(3):
        tokens = ipt.ops.patch_unfold(x, 3)
        assert torch.equal(ipt.ops.patch_fold(tokens, 3, (6, 6)), x)
relevant = [w for w in caught if "ipt._C" in str(w.message)]
assert len(relevant) == 1, [str(w.message) for w in caught]
print(relevant[0].message)
assert ipt.ops.EXTENSION.module is None
""",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "not built" in result.stdout and "pure-PyTorch reference" in result.stdout
    report = _run_python(WITHOUT_EDITABLE_FINDER + "import runpy; runpy.run_module('ipt.ops', run_name='__main__')", tmp_path)
    assert report.returncode == 0 and "not built" in report.stdout and "patch_unfold" in report.stdout


def test_ops_cli_reports_kernels(kernels):
    result = subprocess.run([sys.executable, "-m", "ipt.ops"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"built against  : torch {torch.__version__}" in out
    for op, (schema, _) in contract.OPS.items():
        line = next(line for line in out.splitlines() if line.strip().startswith(op + " "))
        assert "cpu yes" in line and f"cuda {'yes' if kernels.with_cuda else 'no'}" in line
        assert line.endswith(schema)


@pytest.fixture(scope="module")
def cmake_example(tmp_path_factory):
    """Builds examples/cpp with CMake: libipt_ops from this checkout plus a C++ program that uses it."""
    if shutil.which("cmake") is None:
        pytest.fail("cmake is not installed; the README's test set-up needs it to check the C++ build")
    build = tmp_path_factory.mktemp("cmake") / "build"
    configure = ["cmake", "-S", str(REPO / "examples" / "cpp"), "-B", str(build),
                 f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    for cmd in (configure, ["cmake", "--build", str(build)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return build


def _op_names_and_schemas():
    names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ipt::"))
    return names, [str(getattr(torch.ops.ipt, n.split("::")[1]).default._schema) for n in names]


def test_cmake_library_registers_the_same_ops(kernels, cmake_example, tmp_path):
    library = cmake_example / "ipt" / "libipt_ops.so"
    g = torch.Generator().manual_seed(0)
    x, pos = torch.randn(2, 5, 12, 9, generator=g), torch.randn(12, 45, generator=g)
    torch.save({"x": x, "pos": pos}, tmp_path / "inputs.pt")
    # A fresh process that never imports ipt: the library alone must register the ops.
    result = _run_python(
        f"""
        import torch
        torch.ops.load_library({str(library)!r})
        names = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("ipt::"))
        schemas = [str(getattr(torch.ops.ipt, n.split("::")[1]).default._schema) for n in names]
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        tokens = torch.ops.ipt.patch_unfold(inputs["x"], 3, inputs["pos"])
        image = torch.ops.ipt.patch_fold(tokens, 3, [12, 9])
        torch.save({{"names": names, "schemas": schemas, "tokens": tokens, "image": image}}, {str(tmp_path / "out.pt")!r})
        """,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = torch.load(tmp_path / "out.pt")
    assert (out["names"], out["schemas"]) == _op_names_and_schemas()
    tokens = torch.ops.ipt.patch_unfold(x, 3, pos)
    torch.testing.assert_close(out["tokens"], tokens, rtol=0, atol=0)
    torch.testing.assert_close(out["image"], torch.ops.ipt.patch_fold(tokens, 3, [12, 9]), rtol=0, atol=0)


def test_cpp_program_uses_the_ops(kernels, cmake_example):
    done = subprocess.run([str(cmake_example / "ipt_ops_demo")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.strip().splitlines())

    def values(name):
        return [float(v) for v in lines[name].split()]

    # The same computations through the Python package.
    image = torch.arange(2 * 3 * 6 * 9, dtype=torch.float32).reshape(2, 3, 6, 9)
    pos = torch.arange(6 * 27, dtype=torch.float32).reshape(6, 27) * 0.5
    tokens = ipt.ops.patch_unfold(image, 3, pos)
    assert lines["tokens_shape"] == "2 6 27"
    assert float(lines["tokens_sum"]) == pytest.approx(tokens.sum().item(), rel=1e-6)
    assert values("token_1_4") == tokens[1, 4].tolist()
    assert lines["roundtrip_exact"] == "1"

    photo = (torch.arange(2 * 3 * 12 * 16) * 37 % 256).to(torch.uint8).reshape(2, 3, 12, 16)
    rain = ipt.ops.RainConfig(amount=(0.002, 0.004), thickness=(1.0, 3.0), length=(25.0, 35.0), angle=(-10.0, 10.0),
                              alpha=(0.6, 0.9))  # the ranges main.cpp passes
    assert values("bicubic_row") == ipt.ops.bicubic_downsample(photo, 2)[1, 2, 3].double().tolist()
    noisy = ipt.ops.add_gaussian_noise(photo, 30.0, 7)
    assert values("noise_row") == noisy[1, 0, 5].double().tolist()
    assert float(lines["noise_sum"]) == pytest.approx(noisy.double().sum().item(), rel=1e-12)
    layers = ipt.ops.rain_streaks(2, 12, 16, 5, rain)
    assert float(lines["streaks_sum"]) == pytest.approx(layers.double().sum().item(), rel=1e-12) and layers.sum() > 0
    rainy = ipt.ops.add_rain(photo, 5, rain=rain)
    assert float(lines["rain_sum"]) == pytest.approx(rainy.double().sum().item(), rel=1e-12)
    with pytest.raises(ValueError) as error:
        ipt.ops.add_gaussian_noise(photo, -1.0, 7)
    assert lines["bad_sigma"] == str(error.value) == "add_gaussian_noise: sigma must be finite and >= 0, got -1"
