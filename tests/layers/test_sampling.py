import torch

from pyfrcnn_layers.sampling import generator_state, make_generator, set_generator_state, subsample


def test_subsample_draws_k_distinct_members(device):
    indices = torch.arange(100, 200, device=device)
    chosen = subsample(indices, 10, make_generator(0))
    assert chosen.shape == (10,) and chosen.device.type == device.type
    assert len(set(chosen.tolist())) == 10
    assert set(chosen.tolist()) <= set(range(100, 200))


def test_subsample_keeps_all_when_few_and_draws_nothing():
    g = make_generator(0)
    before = generator_state(g)
    indices = torch.tensor([5, 3, 9])
    assert subsample(indices, 3, g).tolist() == [5, 3, 9]
    assert subsample(indices, 0, g).tolist() == []
    assert torch.equal(generator_state(g), before)


def test_subsample_is_uniform():
    g = make_generator(1)
    counts = torch.zeros(10)
    for _ in range(2000):
        counts[subsample(torch.arange(10), 3, g)] += 1
    # each index is chosen with probability 3/10: 600 expected, sd about 20
    assert (counts - 600).abs().max() < 100


def test_seed_and_state_reproduce_draws():
    a, b = make_generator(3), make_generator(3)
    indices = torch.arange(1000)
    assert torch.equal(subsample(indices, 5, a), subsample(indices, 5, b))
    state = generator_state(a)
    first = subsample(indices, 5, a)
    set_generator_state(b, state)
    assert torch.equal(subsample(indices, 5, b), first)
    assert not torch.equal(subsample(indices, 5, make_generator(4)), subsample(indices, 5, make_generator(3)))
