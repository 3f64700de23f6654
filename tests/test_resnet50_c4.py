"""The ResNet-50-C4 recipe end to end at a tiny scale: a stand-in torchvision
resnet50 converted with `pyfrcnn convert`, then 2 steps of
prototxt/resnet50_c4/train.prototxt on generated shapes images, with the
solver's own settings but for the image size, the RoI counts and the data.
Frozen layers (conv1, res2, every BatchNorm and Scale) must not move; the
rest must learn; in the N x C x H x W layout and channels last alike."""

import math

import pytest
import torch

from pyfrcnn.cli import main
from pyfrcnn.net import load_weights_file
from pyfrcnn.solver_config import load_solver
from tests.conftest import REPO_DIR
from tests.torchvision_resnet import fake_resnet50

SOLVER = REPO_DIR / "solvers" / "resnet50_c4_voc.yaml"


def test_resnet50_c4_solver_is_the_recipe():
    c = load_solver(str(SOLVER))
    assert (c.base_lr, c.lr_policy, c.stepsize, c.max_iter, c.iter_size) == (0.001, "step", 50000, 70000, 2)
    assert (c.momentum, c.weight_decay) == (0.9, 0.0001)
    assert c.train_net.endswith("prototxt/resnet50_c4/train.prototxt")
    assert c.sections["data"].train == "voc_2007_trainval"


@pytest.mark.parametrize("channels_last", ["false", "true"])
def test_resnet50_c4_trains_two_steps(tmp_path, channels_last):
    torch.save(fake_resnet50().state_dict(), tmp_path / "resnet50.pth")
    assert main(["convert", str(tmp_path / "resnet50.pth"), str(tmp_path / "resnet50.weights")]) == 0
    initial = load_weights_file(str(tmp_path / "resnet50.weights"))
    overrides = {
        # No weight decay: a weight that changes was reached by a gradient.
        "max_iter": 2, "iter_size": 1, "weight_decay": 0, "channels_last": channels_last, "display": 1, "snapshot": 0,
        "test_interval": 0,
        "weights": str(tmp_path / "resnet50.weights"),
        "snapshot_prefix": str(tmp_path / "run" / "r50c4"),
        "data": {"train": "shapes:train", "cache_dir": str(tmp_path / "cache"), "workers": 0,
                 "shapes": {"train_images": 2, "test_images": 1}},
        "detection.TRAIN": {"SCALES": [64], "MAX_SIZE": 96, "RPN_PRE_NMS_TOP_N": 200,
                            "RPN_POST_NMS_TOP_N": 30, "RPN_BATCHSIZE": 32, "BATCH_SIZE": 8},
    }
    args = ["solve", str(SOLVER), "--out", str(tmp_path / "run")]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    trained = load_weights_file(str(tmp_path / "run" / "r50c4_iter_2.weights"))
    for name, blobs in trained.items():
        frozen = name.startswith(("conv1", "res2", "bn", "scale"))
        for i, after in enumerate(blobs):
            before = initial[name][i] if name in initial else None
            if frozen:
                assert torch.equal(before, after), f"{name} blob {i} is frozen but changed"
            elif before is not None:
                assert not torch.equal(before, after), f"{name} blob {i} did not train"
    for name in ("rpn_conv/3x3", "cls_score", "bbox_pred"):
        assert name in trained and name not in initial
    log = (tmp_path / "run" / "train.log").read_text()
    losses = [float(line.split("= ")[1].split()[0]) for line in log.splitlines()
              if "Train net output" in line]
    assert len(losses) == 8 and all(math.isfinite(v) for v in losses)
