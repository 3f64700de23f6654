from pathlib import Path

import pytest
import torch

# py-faster-rcnn's nets and cfg, laid beside the checkout in shared/.
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference" / "py-faster-rcnn"
REPO_DIR = Path(__file__).resolve().parents[1]


def cuda_available():
    if not torch.cuda.is_available():
        return False
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA GPU and cupy")


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_cuda: needs a CUDA GPU and cupy")
    config.addinivalue_line("markers", "slow: a longer end-to-end test")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=requires_cuda)])
def device(request):
    return torch.device(request.param)


@pytest.fixture
def reference_dir():
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"py-faster-rcnn reference files not found at {REFERENCE_DIR}")
    return REFERENCE_DIR
