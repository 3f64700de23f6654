import pytest
import torch

from pyfrcnn.errors import NetError

from .layer_nets import gradcheck_net, one_layer_net


def test_train_keeps_with_probability_one_minus_ratio_and_rescales(device):
    net = one_layer_net("Dropout", "dropout_param { dropout_ratio: 0.3 }", x=(200, 100)).to(device)
    torch.manual_seed(0)
    x = torch.rand(200, 100, device=device) + 1.0  # never 0, so 0 marks a dropped element
    y = net.forward(x=x)["out"]
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.7)
    # 20000 Bernoulli(0.7) draws: the fraction is within 4 standard deviations (0.013)
    assert abs(kept.double().mean().item() - 0.7) < 0.013
    y2 = net.forward(x=x)["out"]
    assert not torch.equal(y, y2), "a fresh mask every forward"


def test_gradient_is_mask_times_scale():
    net = one_layer_net("Dropout", x=(50,))
    x = (torch.rand(50) + 1.0).requires_grad_()
    y = net.forward(x=x)["out"]
    y.backward(torch.ones(50))
    torch.testing.assert_close(x.grad, (y != 0).float() * 2.0)


def test_test_phase_is_identity_and_phase_is_read_at_forward():
    net = one_layer_net("Dropout", "dropout_param { dropout_ratio: 0.9 }", phase="TEST", x=(4, 5))
    x = torch.randn(4, 5)
    assert torch.equal(net.forward(x=x)["out"], x)
    net.phase = "TRAIN"
    assert (net.forward(x=x)["out"] == 0).any()


def test_global_generator_makes_it_reproducible():
    net = one_layer_net("Dropout", x=(10, 10))
    x = torch.ones(10, 10)
    torch.manual_seed(3)
    a = net.forward(x=x)["out"]
    torch.manual_seed(3)
    assert torch.equal(a, net.forward(x=x)["out"])


def test_shapes():
    net = one_layer_net("Dropout", x=(None, 4096))
    assert net.blob_shapes["out"] == (None, 4096)


@pytest.mark.parametrize("ratio", [1.0, -0.1, 1.5])
def test_bad_ratio(ratio):
    with pytest.raises(NetError, match=r"layer 'layer' \(Dropout\).*dropout_ratio must be in \[0, 1\)"):
        one_layer_net("Dropout", f"dropout_param {{ dropout_ratio: {ratio} }}", x=(2, 3))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradcheck(seed):
    torch.manual_seed(seed)
    net = one_layer_net("Dropout", x=(3, 4))
    assert gradcheck_net(net, seed=seed, x=torch.randn(3, 4))


# py-faster-rcnn's Caffe fork (dropout_layer.cpp): with scale_train false the kept
# elements are not scaled when training, and the test phase multiplies by 1 - ratio.
NO_SCALE_TRAIN = "dropout_param { dropout_ratio: 0.3 scale_train: false }"


def test_scale_train_false_keeps_training_activations_unscaled():
    net = one_layer_net("Dropout", NO_SCALE_TRAIN, x=(200, 100))
    torch.manual_seed(0)
    x = torch.rand(200, 100) + 1.0
    y = net.forward(x=x)["out"]
    kept = y != 0
    assert torch.equal(y[kept], x[kept])
    assert abs(kept.double().mean().item() - 0.7) < 0.013


def test_scale_train_false_scales_by_one_minus_ratio_at_test_time():
    net = one_layer_net("Dropout", NO_SCALE_TRAIN, phase="TEST", x=(4, 5))
    x = torch.randn(4, 5)
    torch.testing.assert_close(net.forward(x=x)["out"], x * 0.7)
    x = x.requires_grad_()
    net.forward(x=x)["out"].backward(torch.ones(4, 5))
    torch.testing.assert_close(x.grad, torch.full((4, 5), 0.7))


def test_scale_train_false_gradient_is_the_mask():
    net = one_layer_net("Dropout", NO_SCALE_TRAIN, x=(50,))
    x = (torch.rand(50) + 1.0).requires_grad_()
    y = net.forward(x=x)["out"]
    y.backward(torch.ones(50))
    assert torch.equal(x.grad, (y != 0).float())


def test_scale_train_true_is_caffes_dropout():
    net = one_layer_net("Dropout", "dropout_param { dropout_ratio: 0.3 scale_train: true }",
                        phase="TEST", x=(4, 5))
    x = torch.randn(4, 5)
    assert torch.equal(net.forward(x=x)["out"], x)
