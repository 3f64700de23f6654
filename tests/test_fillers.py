import math

import pytest
import torch

from pyfrcnn.errors import NetError
from pyfrcnn.fillers import fill
from pyfrcnn.proto import pyfrcnn_pb2 as pb

FAN = pb.FillerParameter


def filled(shape, dtype=torch.float64, **filler):
    torch.manual_seed(0)
    return fill(torch.empty(shape, dtype=dtype), pb.FillerParameter(**filler))


def test_default_is_constant_zero():
    assert filled((3, 4)).eq(0).all()


def test_constant():
    assert filled((2, 3, 4), type="constant", value=2.5).eq(2.5).all()


def test_gaussian_moments():
    x = filled((200, 100), type="gaussian", mean=1.5, std=0.5)
    # 20000 draws: the sample mean's standard error is 0.5 / sqrt(20000) = 0.0035
    assert abs(x.mean().item() - 1.5) < 0.02
    assert abs(x.std().item() - 0.5) < 0.02


@pytest.mark.parametrize("shape", [(50, 400), (20000,)])
def test_gaussian_sparse_keeps_sparse_over_num_outputs(shape):
    x = filled(shape, type="gaussian", std=1.0, sparse=10)
    expected = 10 / shape[0]
    assert abs(x.ne(0).double().mean().item() - expected) < 5 * math.sqrt(expected * (1 - expected) / x.numel())


def test_uniform_range():
    x = filled((100, 100), type="uniform", min=-3.0, max=-1.0)
    assert x.min() >= -3.0 and x.max() < -1.0
    assert x.min() < -2.99 and x.max() > -1.01
    assert abs(x.mean().item() + 2.0) < 0.02


@pytest.mark.parametrize("norm, n", [(FAN.FAN_IN, 10 * 3 * 3), (FAN.FAN_OUT, 40 * 3 * 3),
                                     (FAN.AVERAGE, (90 + 360) / 2)])
def test_xavier_scale(norm, n):
    x = filled((40, 10, 3, 3), type="xavier", variance_norm=norm)
    scale = math.sqrt(3.0 / n)
    assert x.abs().max() <= scale and x.abs().max() > 0.98 * scale
    # uniform(-scale, scale) has variance scale^2 / 3 = 1 / n
    assert abs(x.var().item() * n - 1.0) < 0.08


@pytest.mark.parametrize("norm, n", [(FAN.FAN_IN, 10 * 3 * 3), (FAN.FAN_OUT, 40 * 3 * 3),
                                     (FAN.AVERAGE, (90 + 360) / 2)])
def test_msra_scale(norm, n):
    x = filled((40, 10, 3, 3), type="msra", variance_norm=norm)
    assert abs(x.mean().item()) < 5 * math.sqrt(2.0 / n / x.numel())
    assert abs(x.std().item() / math.sqrt(2.0 / n) - 1.0) < 0.05


def test_fans_of_a_2d_blob():
    # InnerProduct's num_output x K weight: fan_in K, fan_out num_output
    x = filled((8, 3000), type="xavier", variance_norm=FAN.FAN_OUT)
    assert x.abs().max() <= math.sqrt(3.0 / 8) and x.abs().max() > 0.98 * math.sqrt(3.0 / 8)


def test_bilinear_4x4_by_hand():
    # f = ceil(4 / 2) = 2, c = (2f - 1 - f % 2) / 2f = 0.75; 1 - |x / f - c| for x = 0..3
    row = [0.25, 0.75, 0.75, 0.25]
    expected = torch.tensor([[a * b for b in row] for a in row], dtype=torch.float64)
    x = filled((2, 3, 4, 4), type="bilinear")
    for i in range(2):
        for j in range(3):
            torch.testing.assert_close(x[i, j], expected)


def test_positive_unitball_rows_sum_to_one():
    x = filled((5, 3, 2, 2), type="positive_unitball")
    assert (x > 0).all()
    torch.testing.assert_close(x.view(5, -1).sum(1), torch.ones(5, dtype=torch.float64))
    # Caffe's rows are shape[0]: a 1-D blob normalises each element alone
    assert filled((4,), type="positive_unitball").eq(1).all()


@pytest.mark.parametrize("filler, shape, message", [
    (dict(type="nonsense"), (2, 2), "unknown filler type 'nonsense'; known: constant"),
    (dict(type="bilinear"), (2, 2, 3, 4), r"square kernels, got \[2, 2, 3, 4\]"),
    (dict(type="bilinear"), (3, 3), "4-D blob"),
    (dict(type="uniform", min=2.0, max=1.0), (2, 2), "min <= max"),
    (dict(type="gaussian", std=-1.0), (2, 2), "std >= 0"),
])
def test_errors(filler, shape, message):
    with pytest.raises(NetError, match=message):
        filled(shape, **filler)
