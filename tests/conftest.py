import pytest
import torch

import ipt.ops

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none visible)")

# Every test that names `device` runs on CPU, and on CUDA where a GPU is visible.
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=CUDA)]


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(scope="session")
def kernels():
    """The compiled extension. The README's test command builds it, so its absence is a failure."""
    assert ipt.ops.EXTENSION.module is not None, (
        "ipt._C is not built; run `pip install --no-build-isolation -e .` before the tests"
    )
    return ipt.ops.EXTENSION
