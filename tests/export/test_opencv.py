"""The exported .caffemodel and deploy prototxt run in OpenCV's DNN
(cv2.dnn.readNetFromCaffe; opencv-python-headless 4.14 is the last series
with a Caffe importer) and give pyfrcnn's outputs: conv5 features,
cls_prob and bbox_pred within 1e-4 of the largest value, rois as sets.

OpenCV's Proposal layer reads min_size but does not apply it, and a box
pyfrcnn drops before NMS may suppress others in OpenCV: these nets run with
RPN_MIN_SIZE 0, so that both compute the same set. OpenCV gives
post_nms_topn rows whatever NMS kept; the rows past pyfrcnn's are zeros.
"""

import os

import numpy as np
import pytest
import torch

from pyfrcnn_layers.caffe_deploy import opencv_replacements
from pyfrcnn.caffe_export import deploy_prototxt, write_caffemodel
from tests.export.netlib import FAST, SHAPES_TEST, VGG16, narrow_vgg16, random_blob, random_net

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromCaffe"):
    pytest.skip(f"OpenCV {cv2.__version__} has no Caffe importer (4.14 is the last)",
                allow_module_level=True)

TEST = dict(SHAPES_TEST, RPN_MIN_SIZE=0, RPN_POST_NMS_TOP_N=60)
RELATIVE = 1e-4
# OpenCV decodes in float32 in its own order: rois differ by up to about 2e-3 px
# on images of 300 px (measured over 24 nets and sizes).
ROI_PIXELS = 1e-2


def _last_writer(net):
    """OpenCV names a blob by the layer that wrote it last (in-place layers)."""
    writers = {}
    for lp in net.netdef.param.layer:
        for top in lp.top:
            writers[top] = lp.name
    return writers


def _match_rows(ours, theirs, tol):
    """theirs[perm] == ours within tol, as a one-to-one matching of rows."""
    distance = np.abs(ours[:, None, :] - theirs[None, :, :]).max(axis=2)
    perm = distance.argmin(axis=1)
    assert len(set(perm.tolist())) == len(perm), "two rois matched the same OpenCV roi"
    worst = distance[np.arange(len(perm)), perm].max(initial=0)
    assert worst <= tol, f"a roi differs by {worst} px"
    return perm


def _relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def run_both(tmp_path, prototxt, conv5, size):
    net, _ = random_net(prototxt, test=TEST, input_shape=(1, 3) + size)
    model, deploy = tmp_path / "net.caffemodel", tmp_path / "deploy.prototxt"
    write_caffemodel(net, model)
    deploy.write_text(deploy_prototxt(net, opencv_replacements(net)))
    data, im_info = random_blob((1, 3) + size, seed=7)
    with torch.no_grad():
        net.forward(data=data, im_info=im_info)
    ours = {name: net.blobs[name].numpy() for name in (conv5, "rois", "cls_prob", "bbox_pred")}

    cv_net = cv2.dnn.readNetFromCaffe(str(deploy), str(model))
    cv_net.setInput(data.numpy(), "data")
    cv_net.setInput(im_info.numpy(), "im_info")
    writers = _last_writer(net)
    theirs = dict(zip(ours, cv_net.forward([writers[name] for name in ours])))
    return ours, theirs


def check(ours, theirs, conv5):
    assert theirs[conv5].shape == ours[conv5].shape
    assert _relative(theirs[conv5], ours[conv5]) <= RELATIVE
    count = ours["rois"].shape[0]
    assert count > 10
    assert theirs["rois"].shape[0] == TEST["RPN_POST_NMS_TOP_N"] >= count
    assert not theirs["rois"][count:].any()
    perm = _match_rows(ours["rois"], theirs["rois"][:count], ROI_PIXELS)
    for name in ("cls_prob", "bbox_pred"):
        assert _relative(theirs[name][:count][perm], ours[name]) <= RELATIVE, name


@pytest.mark.parametrize("size", [(160, 208), (131, 197)])
def test_fast_net_runs_in_opencv(tmp_path, size):
    ours, theirs = run_both(tmp_path, FAST, "conv5", size)
    check(ours, theirs, "conv5")


def test_vgg16_runs_in_opencv(tmp_path):
    """The shipped VGG16 test net with fc6 / fc7 256 wide (its 4096-wide
    weights take 550 MB and half a minute; PYFRCNN_FULL_VGG16=1 runs them)."""
    full = os.environ.get("PYFRCNN_FULL_VGG16") == "1"
    prototxt = VGG16 if full else narrow_vgg16(tmp_path)
    ours, theirs = run_both(tmp_path, prototxt, "conv5_3", (128, 160))
    check(ours, theirs, "conv5_3")
