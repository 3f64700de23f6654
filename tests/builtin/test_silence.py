import pytest
import torch

from pyfrcnn.errors import NetError

from .tiny_nets import layer, tiny_net


def test_consumes_its_bottoms():
    layers = (layer("Silence", ["a", "b"], [], name="silence")
              + layer("Flatten", ["c"], ["d"], name="flatten"))
    net = tiny_net(layers, a=(2, 3), b=(None,), c=(2, 3))
    assert net.output_names == ["d"]
    outputs = net.forward(a=torch.zeros(2, 3), b=torch.zeros(4), c=torch.zeros(2, 3))
    assert set(outputs) == {"d"}


def test_needs_a_bottom_and_no_top():
    with pytest.raises(NetError, match="layer 'layer' \\(Silence\\).*takes at least 1 bottoms, got 0"):
        tiny_net(layer("Silence", [], []), a=(1,))
    with pytest.raises(NetError, match="layer 'layer' \\(Silence\\).*takes 0 tops, got 1"):
        tiny_net(layer("Silence", ["a"], ["b"]), a=(1,))
