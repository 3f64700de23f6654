"""Random sampling for the target layers, driven by an explicit torch.Generator.

Each sampling layer owns one CPU generator seeded from the run's RNG_SEED and
saves its state with the solver's snapshot, so a resumed run draws the same
samples. Draws are made on the CPU and the chosen positions moved to the data's
device: a seed gives the same samples on every device, and the transfer is a
few thousand indices at most, copied without waiting for the device
(non_blocking: the CUDA driver stages pageable memory before it returns).
"""

import torch


def make_generator(seed):
    """A CPU torch.Generator seeded with `seed`."""
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed))
    return generator


def subsample(indices, k, generator):
    """`k` of the 1-D `indices`, chosen uniformly without replacement (in random order).
    When there are at most `k`, all are returned unchanged; then, and for k <= 0,
    nothing is drawn."""
    n = indices.shape[0]
    k = max(int(k), 0)
    if n <= k:
        return indices
    if k == 0:
        return indices[:0]
    order = torch.randperm(n, generator=generator)[:k]
    return indices[order.to(indices.device, non_blocking=True)]


def uniform(shape, generator, device=None, dtype=torch.float32):
    """Uniform [0, 1) numbers drawn from `generator`, moved to `device`."""
    return torch.rand(shape, generator=generator, dtype=dtype).to(device, non_blocking=True)


def generator_state(generator):
    """The generator's state, a picklable CPU tensor (for snapshot_state)."""
    return generator.get_state().clone()


def set_generator_state(generator, state):
    """Restore what generator_state returned."""
    generator.set_state(torch.as_tensor(state, dtype=torch.uint8).cpu())


__all__ = ["make_generator", "subsample", "uniform", "generator_state", "set_generator_state"]
