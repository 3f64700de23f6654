"""The Python API: pyfrcnn.Net, pyfrcnn.Detector, pyfrcnn.Solver."""

import numpy as np
import pytest
import torch

import pyfrcnn
from pyfrcnn_layers.commands import load_test_net
from pyfrcnn_layers.image import load_image
from pyfrcnn_layers.inference import detect
from pyfrcnn.run_dir import RunFolderError, snapshots
from tests.engine.netlib import write_run
from tests.layers.evaluation.test_commands import FAST_NET, SMALL, voc, weights  # noqa: F401


def test_net_forward_and_blobs_as_pycaffe(weights):  # noqa: F811
    from pyfrcnn.net import Net as PlainNet

    net = pyfrcnn.Net(FAST_NET, "TEST", weights=str(weights), device="cpu")
    assert isinstance(net, PlainNet) and not net.training
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)  # any size
    im_info = np.array([[64, 96, 1.0]], np.float32)
    outputs = net.forward(data=data, im_info=im_info)
    assert "cls_prob" in outputs and net.blobs["conv1"].shape[-2:] == (32, 48)
    # the same as the engine's own Net with the same weights
    plain = PlainNet(FAST_NET, "TEST", input_shapes={"data": (1, 3, None, None)})
    plain.load(str(weights))
    plain.eval()
    with torch.no_grad():
        expected = plain.forward(data=torch.from_numpy(data), im_info=torch.from_numpy(im_info))
    torch.testing.assert_close(outputs["cls_prob"], expected["cls_prob"])
    # pycaffe's argument order
    same = pyfrcnn.Net(FAST_NET, str(weights), "TEST")
    torch.testing.assert_close(same.forward(data=data, im_info=im_info)["cls_prob"],
                               expected["cls_prob"])


def test_detector_gives_boxes_scores_labels(voc, weights):  # noqa: F811
    image = str(voc / "JPEGImages" / "a.jpg")
    detector = pyfrcnn.Detector(FAST_NET, weights, device="cpu", overrides=SMALL,
                                score_thresh=0.0)
    boxes, scores, labels = detector.detect(image)
    assert boxes.shape == (len(scores), 4) and labels.shape == scores.shape and len(scores) > 0
    assert torch.all(scores[:-1] >= scores[1:])
    assert labels.min() >= 1 and labels.max() < len(detector.classes)
    # the detections of the engine's im_detect + NMS, flattened
    net, cfg, _, stats = load_test_net(FAST_NET, str(weights), SMALL, "cpu")
    class_dets = detect(net, load_image(image), cfg, stats, score_thresh=0.0)
    expected = sorted((float(r[4]), j, tuple(round(v, 3) for v in r[:4].tolist()))
                      for j, d in enumerate(class_dets) if j > 0 for r in d)
    got = sorted((float(s), int(l), tuple(round(v, 3) for v in b.tolist()))
                 for b, s, l in zip(boxes, scores, labels))
    assert got == expected
    # an array works as a path does
    b2, s2, l2 = detector.detect(load_image(image))
    torch.testing.assert_close(s2, scores)


def test_solver_from_file_trains_under_the_run_folder_rules(tmp_path):
    path = write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 3\ndevice: cpu\n"
                                    "tensorboard: false\n")
    out = tmp_path / "run"
    solver = pyfrcnn.Solver.from_file(path, ["max_iter=2"], out=str(out), dist_info=False)
    assert solver.solve() == 0 and solver.step == 2
    assert sorted(snapshots(str(out))) == [2] and (out / "solver.yaml").exists()
    again = pyfrcnn.Solver.from_file(path, ["max_iter=2"], out=str(out), dist_info=False)
    with pytest.raises(RunFolderError, match="holds an earlier run"):
        again.solve()
    resumed = pyfrcnn.Solver.from_file(path, ["max_iter=4"], out=str(out), resume="auto",
                                       dist_info=False)
    assert resumed.solve() == 0 and resumed.step == 4


def test_stable_names_have_docstrings():
    for name in ("Net", "Solver", "Detector", "Layer", "register", "PyfrcnnError", "read_net",
                 "load_solver"):
        assert getattr(pyfrcnn, name).__doc__, name
    with pytest.raises(AttributeError):
        pyfrcnn.NoSuchThing
