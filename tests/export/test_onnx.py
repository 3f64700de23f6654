"""The ONNX detector, run by onnxruntime, gives pyfrcnn's detections on the
shapes test images (images of several sizes through one file): the same
labels, boxes within 1e-3 px, scores within 1e-4. And the export forwards
compute what the layers' own forwards do."""

import dataclasses
import sys

import numpy as np
import pytest
import torch

from pyfrcnn_layers.image import image_to_blob
from pyfrcnn_layers.inference import detect
from pyfrcnn_layers.onnx_export import proposal_export_forward
from pyfrcnn_layers.proposal import ProposalLayer
from pyfrcnn.net import Net
from pyfrcnn.onnx_export import OnnxExportError, export_blobs
from tests.export.netlib import FAST, random_blob, random_net, shapes_images

BBOX_STATS = ((0.0, 0.05, -0.05, 0.0), (0.1, 0.1, 0.2, 0.2))


def _flat(class_dets):
    """pyfrcnn's per-class detections as (boxes, scores, labels), class by class."""
    rows = [(d, j) for j, d in enumerate(class_dets) if j > 0 and len(d)]
    boxes = torch.cat([d[:, :4] for d, _ in rows]).numpy()
    scores = torch.cat([d[:, 4] for d, _ in rows]).numpy()
    labels = np.concatenate([np.full(len(d), j) for d, j in rows])
    return boxes, scores, labels


@pytest.fixture(scope="module")
def fast_net():
    return random_net(FAST)


# MAX_PER_IMAGE caps the random net's 80-odd detections, or keeps them all.
@pytest.fixture(scope="module", params=[{"MAX_PER_IMAGE": 30},
                                        {"MAX_PER_IMAGE": 100, "SCORE_THRESH": 0.2}])
def fast_onnx(request, fast_net, tmp_path_factory):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from pyfrcnn_layers.onnx_export import export_detector

    net, cfg = fast_net
    cfg = dataclasses.replace(cfg, TEST=dataclasses.replace(cfg.TEST, **request.param))
    path = tmp_path_factory.mktemp("onnx") / "fast.onnx"
    before = {k: v.clone() for k, v in net.state_dict().items()}
    export_detector(net, cfg, BBOX_STATS, path)
    for key, value in net.state_dict().items():  # BatchNorm's sums are restored
        assert torch.equal(value, before[key]), key
    return net, cfg, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_detector_matches_pyfrcnn(fast_onnx):
    net, cfg, session = fast_onnx
    sizes, capped = set(), 0
    for im in shapes_images(3):
        want = _flat(detect(net, im, cfg, bbox_stats=BBOX_STATS))
        blob, scale = image_to_blob(im, cfg.TEST.SCALES[0], cfg.TEST.MAX_SIZE, cfg.PIXEL_MEANS)
        sizes.add(tuple(blob.shape[2:]))
        feed = {"data": blob.numpy(),
                "im_info": np.array([[blob.shape[2], blob.shape[3], scale]], np.float32),
                "image_size": np.array(im.shape[:2], np.float32)}
        boxes, scores, labels = session.run(None, feed)
        assert len(want[0]) > 10 and len(set(want[2].tolist())) > 1
        capped += len(want[0]) == cfg.TEST.MAX_PER_IMAGE
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, want[2])
        np.testing.assert_allclose(boxes, want[0], rtol=0, atol=1e-3)
        np.testing.assert_allclose(scores, want[1], rtol=0, atol=1e-4)
        assert (boxes[:, 2] <= im.shape[1] - 1).all() and (boxes[:, 3] <= im.shape[0] - 1).all()
    assert len(sizes) == 3
    assert capped == (3 if cfg.TEST.MAX_PER_IMAGE == 30 else 0)


def test_onnx_detector_gives_empty_outputs(fast_net, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from pyfrcnn_layers.onnx_export import export_detector

    net, cfg = fast_net
    cfg = dataclasses.replace(cfg, TEST=dataclasses.replace(cfg.TEST, SCORE_THRESH=0.999))
    export_detector(net, cfg, None, tmp_path / "none.onnx")
    session = ort.InferenceSession(str(tmp_path / "none.onnx"), providers=["CPUExecutionProvider"])
    data, im_info = random_blob((1, 3, 48, 64))
    boxes, scores, labels = session.run(None, {"data": data.numpy(), "im_info": im_info.numpy(),
                                               "image_size": np.array([48, 64], np.float32)})
    assert boxes.shape == (0, 4) and scores.shape == (0,) and labels.shape == (0,)


@pytest.mark.parametrize("size", [(160, 208), (131, 197)])
def test_export_forwards_match_the_layers(size):
    """In eager mode the export forwards (proposal, pooling, reshape, ROIPooling)
    give the layers' own tops, bit for bit, at odd sizes too."""
    net, _ = random_net(FAST, input_shape=(1, 3) + size)
    data, im_info = random_blob((1, 3) + size, seed=3)
    with torch.no_grad():
        net.forward(data=data, im_info=im_info)
        want = dict(net.blobs)
        got = export_blobs(net, {"data": data, "im_info": im_info})
    assert want.keys() == got.keys()
    for name in want:
        assert torch.equal(want[name], got[name]), name
    proposal = next(l for l in net.layers if isinstance(l, ProposalLayer))
    bottoms = [want[b] for b in proposal.param.bottom]
    rois = proposal_export_forward(proposal, *bottoms)[0]
    assert torch.equal(rois, proposal.forward(*bottoms)[0])


def test_python_layer_without_export_forward_is_refused(tmp_path, monkeypatch):
    (tmp_path / "plain_layer.py").write_text(
        "from pyfrcnn.layer import Layer\n\n\nclass Twice(Layer):\n"
        "    def reshape(self, shapes):\n        return [shapes[0]]\n\n"
        "    def forward(self, x):\n        return 2 * x\n")
    net_path = tmp_path / "net.prototxt"
    net_path.write_text('input: "data" input_shape { dim: 1 dim: 2 }\n'
                        'layer { name: "twice" type: "Python" bottom: "data" top: "out" '
                        'python_param { module: "plain_layer" layer: "Twice" } }\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "plain_layer", raising=False)
    net = Net(str(net_path), "TEST")
    with pytest.raises(OnnxExportError, match="layer 'twice' \\(Python\\).*export forward"):
        export_blobs(net, {"data": torch.ones(1, 2)})
