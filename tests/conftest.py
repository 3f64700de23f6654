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


CUDA_REASON = "needs a CUDA GPU and cupy"
requires_cuda = pytest.mark.skipif(not cuda_available(), reason=CUDA_REASON)


def pytest_configure(config):
    config.addinivalue_line("markers", "requires_cuda: needs a CUDA GPU and cupy")
    config.addinivalue_line("markers", "slow: a longer end-to-end test")


def pytest_collection_modifyitems(config, items):
    # `requires_cuda` is a skipif; name it as a marker too, so that
    # `pytest -m requires_cuda` (benchmarks/gpu_check.sh) selects the CUDA tests.
    for item in items:
        if any(m.name == "skipif" and m.kwargs.get("reason") == CUDA_REASON
               for m in item.iter_markers()):
            item.add_marker(pytest.mark.requires_cuda)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=requires_cuda)])
def device(request):
    return torch.device(request.param)


@pytest.fixture
def reference_dir():
    if not REFERENCE_DIR.is_dir():
        pytest.skip(f"py-faster-rcnn reference files not found at {REFERENCE_DIR}")
    return REFERENCE_DIR
