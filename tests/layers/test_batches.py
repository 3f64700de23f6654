"""N images per forward (TRAIN.IMS_PER_BATCH > 1), checked against the one-image
path: the data layer's batch is the single images padded and indexed, and each
target layer on a batch gives what it gives image by image, fed the same random
draws (its generator runs through the images in order)."""

import logging
import os

import pytest
import torch

from pyfrcnn.cli import main
from pyfrcnn.net import load_weights_file
from pyfrcnn.net import Net
from pyfrcnn_layers.datasets import open_voc
from pyfrcnn_layers.anchor_target import AnchorTargetLayer
from pyfrcnn_layers.proposal import ProposalLayer
from pyfrcnn_layers.proposal_target import ProposalTargetLayer
from pyfrcnn_layers.roi_data import RoIDataLayer

from ..builtin.tiny_nets import layer as tiny_layer, tiny_net
from .rpn_helpers import build_layer
from .test_proposal_target import GT_BOXES, proposals
from .test_roi_data import TOPS, prototxt, sample_key, voc  # noqa: F401 (voc: a fixture)
from ..test_recipes import SHAPES_SOLVER, tiny_shapes


def with_index(rows, n):
    return torch.cat([rows, torch.full((rows.shape[0], 1), float(n))], dim=1)


# -- data ------------------------------------------------------------------
def data_net(dataset, ims_per_batch, scales=(40, 30), workers=0):
    config = {"dataset": open_voc(dataset, "train"), "data": {"workers": workers},
              "detection": {"TRAIN": {"SCALES": list(scales), "ASPECT_GROUPING": False,
                                      "IMS_PER_BATCH": ims_per_batch}}}
    return Net(prototxt(3, TOPS), phase="TRAIN", config=config)


def test_build_time_shapes_of_a_batch():
    net = Net(prototxt(), config={"detection": {"TRAIN": {"IMS_PER_BATCH": 3}}})
    assert [net.blob_shapes[t] for t in TOPS] == [(3, 3, None, None), (3, 3), (None, 6), (None,),
                                                  (None, 5)]
    test_net = Net(prototxt(), phase="TEST", config={"detection": {"TRAIN": {"IMS_PER_BATCH": 3}}})
    assert test_net.blob_shapes["data"] == (1, 3, None, None)


def test_a_batch_is_the_single_images_padded_and_indexed(voc):
    single, batched = data_net(voc, 1), data_net(voc, 2)
    for _ in range(4):   # 8 images: an epoch of 10 (flipped copies) and the start of the next
        out = batched.forward()
        data = out["data"]
        assert data.shape[0] == 2
        sizes = []
        for n in range(2):
            one = single.forward()
            h, w = one["data"].shape[2:]
            sizes.append((h, w))
            assert torch.equal(data[n, :, :h, :w], one["data"][0])
            assert not data[n, :, h:].any() and not data[n, :, :, w:].any()
            assert torch.equal(out["im_info"][n], one["im_info"][0])
            assert torch.equal(out["gt_boxes"][out["gt_boxes"][:, 5] == n],
                               with_index(one["gt_boxes"], n))
            assert torch.equal(out["gt_ishard"][out["gt_boxes"][:, 5] == n], one["gt_ishard"])
            assert torch.equal(out["dontcare_areas"][out["dontcare_areas"][:, 4] == n, :4],
                               one["dontcare_areas"].reshape(-1, 4))
        assert (out["gt_boxes"][:, 5].diff() >= 0).all()   # image by image
        assert tuple(data.shape[2:]) == tuple(map(max, zip(*sizes)))   # the largest, no more


@pytest.mark.parametrize("workers", [0, 2])
def test_a_batch_resumes_exactly(voc, workers):
    net = data_net(voc, 2, workers=workers)
    for _ in range(4):
        net.forward()
    state = net.layers[0].snapshot_state()
    expected = [sample_key(net.forward()) for _ in range(3)]   # crosses into the next epoch
    fresh = data_net(voc, 2, workers=workers)
    fresh.layers[0].restore_state(state)
    assert [sample_key(fresh.forward()) for _ in range(3)] == expected
    net.layers[0].restore_state(state)
    assert [sample_key(net.forward()) for _ in range(3)] == expected
    net.layers[0].close()
    fresh.layers[0].close()


def test_a_failed_sample_skips_its_batch(voc, caplog):
    with open(os.path.join(voc, "JPEGImages", "sq1.jpg"), "wb") as f:
        f.write(b"garbage")
    net = data_net(voc, 2, workers=2)
    with caplog.at_level(logging.WARNING):
        batches = [net.forward() for _ in range(6)]
    net.layers[0].close()
    assert all(out["data"].shape[0] == 2 for out in batches)
    assert set(net.layers[0].failed_samples) == {os.path.join(voc, "JPEGImages", "sq1.jpg")}
    assert "sq1.jpg: cannot read image" in caplog.text


# -- target layers -----------------------------------------------------------
def gt_of_images():
    """G x 5 gt boxes of two images (in blob pixels), and their hard flags."""
    gt0 = torch.tensor(GT_BOXES[:3], dtype=torch.float32)
    gt1 = torch.tensor(GT_BOXES[3:] + [[20, 20, 100, 120, 2]], dtype=torch.float32) * torch.tensor(
        [0.7, 0.7, 0.7, 0.7, 1.0])
    return [gt0, gt1.round()], [torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.0, 0.0])]


IM_INFO = torch.tensor([[320.0, 400.0, 1.0], [240.0, 290.0, 0.7]])


def test_anchor_target_per_image_equals_one_image_at_a_time():
    detection = {"TRAIN": {"RPN_BATCHSIZE": 32}}
    param_str = "'feat_stride': 16"
    gts, hards = gt_of_images()
    dontcares = [torch.tensor([[300.0, 250.0, 390.0, 310.0]]), torch.zeros(0, 4)]
    score = torch.zeros(2, 18, 20, 25)
    data = torch.zeros(2, 3, 320, 400)
    batched, shapes = build_layer(AnchorTargetLayer, param_str,
                                  [(2, 18, 20, 25), (None, 6), (2, 3), (2, 3, 320, 400), (None,),
                                   (None, 5)], 4, detection=detection)
    assert shapes[0] == (2, 1, 180, 25) and shapes[1] == (2, 36, 20, 25)
    single, _ = build_layer(AnchorTargetLayer, param_str,
                            [(1, 18, 20, 25), (None, 5), (1, 3), (1, 3, 320, 400), (None,),
                             (None, 4)], 4, detection=detection)
    tops = batched.forward(score, torch.cat([with_index(g, n) for n, g in enumerate(gts)]), IM_INFO,
                           data, torch.cat(hards),
                           torch.cat([with_index(d, n) for n, d in enumerate(dontcares)]))
    for n in range(2):
        ones = single.forward(score[n:n + 1], gts[n], IM_INFO[n:n + 1], data[n:n + 1], hards[n],
                              dontcares[n])
        labels = ones[0]
        assert 0 < int((labels == 1).sum()) and int((labels >= 0).sum()) == 32   # sampled per image
        for top, one in zip(tops, ones):
            assert torch.equal(top[n:n + 1], one)
    assert torch.equal(batched.generator.get_state(), single.generator.get_state())


def test_proposal_per_image_equals_one_image_at_a_time():
    g = torch.Generator().manual_seed(0)
    prob = torch.rand(2, 18, 15, 19, generator=g)
    deltas = torch.randn(2, 36, 15, 19, generator=g) * 0.3
    detection = {"TRAIN": {"RPN_POST_NMS_TOP_N": 50, "RPN_PRE_NMS_TOP_N": 600}}
    batched, _ = build_layer(ProposalLayer, "'feat_stride': 16", [(2, 18, 15, 19), (2, 36, 15, 19), (2, 3)],
                             2, detection=detection)
    rois, scores = batched.forward(prob, deltas, IM_INFO)
    for n in range(2):
        one_rois, one_scores = batched.forward(prob[n:n + 1], deltas[n:n + 1], IM_INFO[n:n + 1])
        assert one_rois.shape[0] == 50   # RPN_POST_NMS_TOP_N per image
        mine = rois[:, 0] == n
        assert torch.equal(rois[mine, 1:], one_rois[:, 1:]) and torch.equal(scores[mine], one_scores)
        assert float(rois[mine, 3].max()) <= IM_INFO[n, 1] - 1   # clipped to its own width
    assert (rois[:, 0].diff() >= 0).all() and rois.shape[0] == 100


def test_proposal_target_per_image_equals_one_image_at_a_time():
    detection = {"TRAIN": {"BATCH_SIZE": 16, "ADD_JITTERED_GT": True}}
    param_str = "'num_classes': 6"
    gts, hards = gt_of_images()
    rpn_rois = [proposals(60, 1), proposals(50, 2) * torch.tensor([1.0, 0.7, 0.7, 0.7, 0.7])]
    batched, _ = build_layer(ProposalTargetLayer, param_str, [(None, 5), (None, 6), (None,)], 5,
                             detection=detection)
    single, _ = build_layer(ProposalTargetLayer, param_str, [(None, 5), (None, 5), (None,)], 5,
                            detection=detection)
    indexed_rois = torch.cat([torch.cat([torch.full((r.shape[0], 1), float(n)), r[:, 1:]], dim=1)
                              for n, r in enumerate(rpn_rois)])
    tops = batched.forward(indexed_rois, torch.cat([with_index(g, n) for n, g in enumerate(gts)]),
                           torch.cat(hards))
    for n in range(2):
        ones = single.forward(rpn_rois[n], gts[n], hards[n])
        assert ones[0].shape[0] == 16 and bool((ones[1] > 0).any())   # BATCH_SIZE per image
        mine = tops[0][:, 0] == n
        assert torch.equal(tops[0][mine, 1:], ones[0][:, 1:])
        for top, one in zip(tops[1:], ones[1:]):
            assert torch.equal(top[mine], one)
    assert tops[0].shape[0] == 32 and (tops[0][:, 0].diff() >= 0).all()
    assert torch.equal(batched.generator.get_state(), single.generator.get_state())


# -- training ----------------------------------------------------------------
def test_fast_net_trains_two_steps_on_batches_of_two(tmp_path, monkeypatch):
    seen = []

    def spy(cls):
        forward = cls.forward

        def recorded(self, *bottoms):
            tops = forward(self, *bottoms)
            if cls is RoIDataLayer or bottoms[1].shape[1] == 6:   # not the per-image calls
                seen.append((cls.__name__, tops))
            return tops
        monkeypatch.setattr(cls, "forward", recorded)

    for cls in (RoIDataLayer, ProposalTargetLayer):
        spy(cls)
    out = tmp_path / "run"
    status = main(["solve", SHAPES_SOLVER, "--out", str(out), "--set", "max_iter=2",
                   "--set", "display=1", "--set", "test_interval=1000", "--set", "snapshot=2",
                   "--set", "detection.TRAIN.IMS_PER_BATCH=2", "--set", "detection.TRAIN.SCALES=[128]",
                   "--set", "detection.TRAIN.MAX_SIZE=200", "--set", "detection.TRAIN.BATCH_SIZE=32",
                   *tiny_shapes(tmp_path / "cache")])
    assert status == 0
    assert (out / "fast_shapes_iter_2.solverstate").exists()
    data = [tops for name, tops in seen if name == "RoIDataLayer"]
    rois = [tops[0] for name, tops in seen if name == "ProposalTargetLayer"]
    assert len(data) == len(rois) == 2
    assert all(tops[0].shape[0] == 2 and tops[2].shape[1] == 6 for tops in data)
    assert all(r[:, 0].unique().tolist() == [0.0, 1.0] and r.shape[0] == 64 for r in rois)


def test_rpn_losses_of_a_batch_normalise_as_caffe():
    """SmoothL1Loss divides by N (py-faster-rcnn's layer divides by bottom[0]'s num)
    and the outside weights are per image: the batch's box loss is the mean of the
    images' losses. SoftmaxWithLoss (normalize: VALID) divides by every valid label
    of the batch: the images' losses weighted by their sampled anchor counts."""
    gts, _ = gt_of_images()
    detection = {"TRAIN": {"RPN_BATCHSIZE": 32}}
    layer_, _ = build_layer(AnchorTargetLayer, "'feat_stride': 16",
                            [(2, 18, 20, 25), (None, 6), (2, 3), (2, 3, 320, 400)], 4, detection=detection)
    labels, targets, inside, outside = layer_.forward(
        torch.zeros(2, 18, 20, 25), torch.cat([with_index(g, n) for n, g in enumerate(gts)]), IM_INFO,
        torch.zeros(2, 3, 320, 400))
    g = torch.Generator().manual_seed(3)
    pred, score = torch.randn(2, 36, 20, 25, generator=g), torch.randn(2, 2, 180, 25, generator=g)
    box_net = tiny_net(tiny_layer("SmoothL1Loss", ["p", "t", "i", "o"], ["loss"],
                                  "smooth_l1_loss_param { sigma: 3.0 }"),
                       p=(None, 36, 20, 25), t=(None, 36, 20, 25), i=(None, 36, 20, 25),
                       o=(None, 36, 20, 25))
    cls_net = tiny_net(tiny_layer("SoftmaxWithLoss", ["s", "l"], ["loss"],
                                  "loss_param { ignore_label: -1 normalize: true }"),
                       s=(None, 2, 180, 25), l=(None, 1, 180, 25))

    def box_loss(rows):
        return float(box_net.forward(p=pred[rows], t=targets[rows], i=inside[rows], o=outside[rows])["loss"])

    def cls_loss(rows):
        return float(cls_net.forward(s=score[rows], l=labels[rows])["loss"])

    images = [slice(0, 1), slice(1, 2)]
    assert box_loss(slice(0, 2)) == pytest.approx(sum(map(box_loss, images)) / 2, rel=1e-5)
    valid = [int((labels[rows] >= 0).sum()) for rows in images]
    assert valid == [32, 32]
    expected = sum(v * cls_loss(rows) for v, rows in zip(valid, images)) / sum(valid)
    assert cls_loss(slice(0, 2)) == pytest.approx(expected, rel=1e-5)


def test_training_on_batches_resumes_exactly(tmp_path):
    def solve(out, *extra):
        return main(["solve", SHAPES_SOLVER, "--out", str(out), "--set", "test_interval=1000",
                     "--set", "snapshot=2", "--set", "detection.TRAIN.IMS_PER_BATCH=2",
                     "--set", "detection.TRAIN.SCALES=[96,128]", "--set", "detection.TRAIN.MAX_SIZE=200",
                     *tiny_shapes(tmp_path / "cache"), *extra])

    assert solve(tmp_path / "a", "--set", "max_iter=4") == 0
    assert solve(tmp_path / "b", "--set", "max_iter=2") == 0
    assert solve(tmp_path / "b", "--set", "max_iter=4",
                 "--resume", str(tmp_path / "b" / "fast_shapes_iter_2.solverstate")) == 0
    a = load_weights_file(str(tmp_path / "a" / "fast_shapes_iter_4.weights"))
    b = load_weights_file(str(tmp_path / "b" / "fast_shapes_iter_4.weights"))
    assert a.keys() == b.keys()
    assert all(torch.equal(x, y) for name in a for x, y in zip(a[name], b[name]))
