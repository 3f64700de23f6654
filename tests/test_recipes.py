"""The shipped recipes end to end: the main job (the shapes solver) for a few
steps followed by `pyfrcnn test` and `pyfrcnn detect` on its snapshot, and
py-faster-rcnn's unmodified VGG16 end2end train net for 2 steps."""

import json
import math

import pytest
import torch

from pyfrcnn.cli import main
from pyfrcnn.net import load_weights_file
from pyfrcnn.solver_config import load_solver
from tests.conftest import REPO_DIR

SHAPES_SOLVER = str(REPO_DIR / "solvers" / "shapes_solver.yaml")
FAST_TEST_NET = str(REPO_DIR / "prototxt" / "fast" / "test.prototxt")


def tiny_shapes(cache):
    return ["--set", f"data.cache_dir={cache}", "--set", "data.shapes.train_images=12",
            "--set", "data.shapes.test_images=4", "--set", "data.workers=1"]


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """20 steps of the main job on 12 generated images, tested on 4."""
    tmp = tmp_path_factory.mktemp("shapes")
    out = tmp / "run"
    status = main(["solve", SHAPES_SOLVER, "--out", str(out), "--set", "max_iter=20",
                   "--set", "display=10", "--set", "average_loss=10", "--set", "test_interval=20",
                   *tiny_shapes(tmp / "cache")])
    assert status == 0
    return tmp, out


def test_main_job_snapshots_and_scores(shapes_run):
    tmp, out = shapes_run
    layers, meta = load_weights_file(str(out / "fast_shapes_iter_20.weights"), with_meta=True)
    assert meta["classes"] == ["__background__", "circle", "square", "triangle", "star", "cross"]
    scales = load_solver(SHAPES_SOLVER).sections["detection"].TRAIN.SCALES
    assert list(meta["detection"]["TRAIN"]["SCALES"]) == list(scales)
    assert (out / "fast_shapes_iter_20.solverstate").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [0, 10]
    assert all(math.isfinite(v) for r in train for v in r["outputs"].values())
    tests = [r for r in records if r["kind"] == "test"]
    assert [r["step"] for r in tests] == [20]
    assert 0.0 <= tests[0]["metrics"]["mAP"] <= 1.0


def test_pyfrcnn_test_scores_the_snapshot_as_training_did(shapes_run):
    tmp, out = shapes_run
    result_dir = tmp / "test"
    status = main(["test", "--net", FAST_TEST_NET, "--weights", str(out / "fast_shapes_iter_20.weights"),
                   "--data", "shapes:test", "--cache-dir", str(tmp / "cache"), "--out", str(result_dir),
                   "--vis", "1"])
    assert status == 0
    metrics = json.loads((result_dir / "metrics.json").read_text())
    detections = json.loads((result_dir / "detections.json").read_text())
    assert metrics["metric"] == "voc07"
    assert all(d["class"] in ("circle", "square", "triangle", "star", "cross") for d in detections)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    in_training = next(r for r in records if r["kind"] == "test")["metrics"]["mAP"]
    assert metrics["mAP"] == pytest.approx(in_training, abs=1e-6)
    assert len(list((result_dir / "vis").iterdir())) == 1


def test_pyfrcnn_detect_names_classes_and_survives_a_bad_file(shapes_run, capsys):
    tmp, out = shapes_run
    images = sorted((tmp / "cache").glob("shapes_*/JPEGImages/*.jpg"))[:1]
    det_dir = tmp / "detect"
    status = main(["detect", "--net", FAST_TEST_NET, "--weights",
                   str(out / "fast_shapes_iter_20.weights"), "--thresh", "0.0",
                   str(images[0]), str(tmp / "missing.jpg"), "--out", str(det_dir)])
    assert status == 1
    assert "missing.jpg" in capsys.readouterr().err
    found = json.loads((det_dir / f"{images[0].stem}.json").read_text())
    classes = {d["class"] for d in found["detections"]}
    assert classes <= {"circle", "square", "triangle", "star", "cross"}
    assert (det_dir / f"{images[0].stem}_det.jpg").exists()


def random_vgg16_weights(path):
    """ImageNet-like stand-in weights for every layer of py-faster-rcnn's VGG16
    (msra-scaled, so activations neither vanish nor blow up)."""
    from pyfrcnn.net import Net

    net = Net(str(REPO_DIR / "prototxt" / "vgg16" / "test.prototxt"), "TEST",
              input_shapes={"data": (1, 3, 64, 64)})
    generator = torch.Generator().manual_seed(0)
    layers = {}
    for name, blobs in net.params.items():
        weight = blobs[0]
        fan_in = weight[0].numel()
        layers[name] = [torch.randn(weight.shape, generator=generator) * math.sqrt(2.0 / fan_in),
                        torch.zeros(blobs[1].shape)]
    torch.save({"format": "pyfrcnn-weights", "version": 1, "layers": layers, "meta": {}}, path)
    return layers


@pytest.mark.slow
def test_unmodified_py_faster_rcnn_vgg16_trains_two_steps(tmp_path, reference_dir):
    initial = random_vgg16_weights(tmp_path / "vgg16_init.weights")
    solver = tmp_path / "vgg16.yaml"
    solver.write_text(f"""
train_net: {reference_dir / 'vgg16_end2end_train.prototxt'}
base_lr: 0.001
lr_policy: step
gamma: 0.1
stepsize: 50000
max_iter: 2
momentum: 0.9
weight_decay: 0.0005
display: 1
snapshot_prefix: vgg16_shapes
weights: vgg16_init.weights
random_seed: 3
data:
  train: shapes:train
  cache_dir: {tmp_path / 'cache'}
  workers: 0
  shapes: {{train_images: 4, test_images: 1}}
detection:
  TRAIN: {{SCALES: [160], MAX_SIZE: 224, RPN_PRE_NMS_TOP_N: 600, RPN_POST_NMS_TOP_N: 100, BATCH_SIZE: 32}}
""")
    assert main(["solve", str(solver), "--out", str(tmp_path / "run")]) == 0
    trained = load_weights_file(str(tmp_path / "run" / "vgg16_shapes_iter_2.weights"))
    frozen = {"conv1_1", "conv1_2", "conv2_1", "conv2_2"}
    for name, blobs in initial.items():
        for i, (before, after) in enumerate(zip(blobs, trained[name])):
            if name in frozen:
                assert torch.equal(before, after), f"{name} blob {i} is frozen but changed"
            else:
                assert not torch.equal(before, after), f"{name} blob {i} did not train"
    log = (tmp_path / "run" / "train.log").read_text()
    losses = [float(line.split("= ")[1].split()[0]) for line in log.splitlines()
              if "Train net output" in line]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)


def test_vgg16_solver_is_py_faster_rcnns_recipe():
    from pyfrcnn.solver_config import load_solver

    c = load_solver(str(REPO_DIR / "solvers" / "vgg16_solver.yaml"))
    assert (c.base_lr, c.lr_policy, c.gamma, c.stepsize, c.max_iter) == (0.001, "step", 0.1, 50000, 70000)
    assert (c.momentum, c.weight_decay, c.iter_size, c.snapshot) == (0.9, 0.0005, 2, 10000)
    assert c.sections["data"].train == "voc_2007_trainval"
    assert c.train_net.endswith("prototxt/vgg16/train.prototxt")


def test_vgg16_solver_without_voc_says_where_the_data_goes(tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)  # no data/VOCdevkit2007 here
    status = main(["solve", str(REPO_DIR / "solvers" / "vgg16_solver.yaml"), "--out", str(tmp_path / "run")])
    assert status == 1
    err = capsys.readouterr().err + caplog.text
    assert "data/VOCdevkit2007/VOC2007" in err and "solvers/shapes_solver.yaml" in err
    assert not list((tmp_path / "run").glob("*.weights"))
