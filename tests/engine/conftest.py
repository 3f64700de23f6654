import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """The solver tests run nets of a few numbers: one thread avoids contention
    on a shared machine (torch's thread pool costs more than it saves here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
