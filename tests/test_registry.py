"""The layer registry: every registered type builds, duplicates and unknown
types are clear errors, the Python factory checks what it imports."""

import pytest
import torch

from pyfrcnn import registry
from pyfrcnn.errors import RegistryError
from pyfrcnn.layer import Layer
from pyfrcnn.net import Net

X = 'input: "x" input_shape { dim: 2 dim: 4 dim: 6 dim: 6 }\n'
ROIS = 'input: "rois" input_shape { dim: 3 dim: 5 }\n'
LABEL = 'input: "label" input_shape { dim: 2 }\n'

# One small layer per registered type: (extra inputs, bottoms, tops, params).
MINIMAL = {
    "Accuracy": (LABEL, ["fc", "label"], ["acc"], ""),
    "BatchNorm": ("", ["x"], ["y"], ""),
    "Concat": ("", ["x", "x"], ["y"], ""),
    "Convolution": ("", ["x"], ["y"], "convolution_param { num_output: 2 kernel_size: 3 }"),
    "Deconvolution": ("", ["x"], ["y"], "convolution_param { num_output: 2 kernel_size: 3 stride: 2 }"),
    "Dropout": ("", ["x"], ["y"], ""),
    "DummyData": ("", [], ["y"], "dummy_data_param { shape { dim: 2 dim: 3 } }"),
    "Eltwise": ("", ["x", "x"], ["y"], ""),
    "Flatten": ("", ["x"], ["y"], ""),
    "InnerProduct": ("", ["x"], ["y"], "inner_product_param { num_output: 3 }"),
    "Input": ("", [], ["y"], "input_param { shape { dim: 1 } }"),  # given to forward
    "LRN": ("", ["x"], ["y"], ""),
    "Pooling": ("", ["x"], ["y"], "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"),
    "ReLU": ("", ["x"], ["y"], ""),
    "Reshape": ("", ["x"], ["y"], "reshape_param { shape { dim: 0 dim: -1 } }"),
    "ROIAlign": (ROIS, ["x", "rois"], ["y"], "roi_align_param { pooled_h: 2 pooled_w: 2 aligned: true }"),
    "ROIPooling": (ROIS, ["x", "rois"], ["y"], "roi_pooling_param { pooled_h: 2 pooled_w: 2 spatial_scale: 1 }"),
    "Scale": ("", ["x"], ["y"], ""),
    "Sigmoid": ("", ["x"], ["y"], ""),
    "Silence": ("", ["x"], [], ""),
    "Slice": ("", ["x"], ["a", "b"], ""),
    "SmoothL1Loss": ("", ["x", "x"], ["loss"], ""),
    "Softmax": ("", ["x"], ["y"], ""),
    "SoftmaxWithLoss": (LABEL, ["fc", "label"], ["loss"], ""),
    "TanH": ("", ["x"], ["y"], ""),
}
FC = 'layer { name: "fc" type: "InnerProduct" bottom: "x" top: "fc" inner_product_param { num_output: 3 } }\n'


def test_every_registered_type_has_a_minimal_net():
    assert set(registry.known_types()) - {"Python"} == set(MINIMAL)


@pytest.mark.parametrize("type_name", sorted(MINIMAL))
def test_every_registered_type_builds_and_runs(type_name):
    extra, bottoms, tops, params = MINIMAL[type_name]
    text = X + extra + (FC if "fc" in bottoms else "")
    text += (f'layer {{ name: "l" type: "{type_name}" '
             + "".join(f'bottom: "{b}" ' for b in bottoms)
             + "".join(f'top: "{t}" ' for t in tops) + params + " }\n")
    net = Net(text, phase="TRAIN")
    inputs = {"x": torch.randn(2, 4, 6, 6)}
    if "rois" in extra:
        inputs["rois"] = torch.tensor([[0, 0, 0, 3, 3], [1, 1, 1, 5, 4], [0, 2, 0, 2, 5]], dtype=torch.float32)
    if "label" in extra:
        inputs["label"] = torch.tensor([0.0, 2.0])
    if type_name == "Input":
        inputs["y"] = torch.ones(1)
    net.forward(**inputs)
    for top in tops:
        assert torch.isfinite(net.blobs[top]).all()


def test_registering_a_type_twice_is_an_error():
    with pytest.raises(RegistryError, match="'ReLU' is registered twice"):
        @registry.register("ReLU")
        class AnotherReLU(Layer):
            pass


def test_registering_a_non_layer_is_an_error():
    with pytest.raises(RegistryError, match="is not a pyfrcnn Layer"):
        registry.register("NotALayerType")(dict)


def test_unknown_type_lists_the_known_ones_and_the_closest():
    with pytest.raises(RegistryError) as e:
        registry.layer_class("Poolng")
    message = str(e.value)
    assert "did you mean 'Pooling'" in message and "Convolution" in message and "Python" in message


def test_py_faster_rcnn_module_names_resolve_to_our_layers():
    from pyfrcnn_layers.anchor_target import AnchorTargetLayer
    from pyfrcnn_layers.proposal import ProposalLayer
    from pyfrcnn_layers.proposal_target import ProposalTargetLayer
    from pyfrcnn_layers.roi_data import RoIDataLayer
    from pyfrcnn.proto import pyfrcnn_pb2 as pb

    for module, name, cls in [("rpn.proposal_layer", "ProposalLayer", ProposalLayer),
                              ("rpn.anchor_target_layer", "AnchorTargetLayer", AnchorTargetLayer),
                              ("rpn.proposal_target_layer", "ProposalTargetLayer", ProposalTargetLayer),
                              ("roi_data_layer.layer", "RoIDataLayer", RoIDataLayer)]:
        param = pb.LayerParameter(name="p", type="Python")
        param.python_param.module, param.python_param.layer = module, name
        assert registry.python_layer_class(param) is cls


def test_plugin_commands_and_sections_are_registered():
    assert {"test", "eval", "detect", "data"} <= set(registry.commands())
    assert {"detection", "data"} <= set(registry.config_sections())
