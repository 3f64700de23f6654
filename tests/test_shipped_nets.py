"""Every shipped prototxt builds (`pyfrcnn check`) in each phase it is meant for."""

from pathlib import Path

import pytest

from pyfrcnn.cli import main
from tests.conftest import REPO_DIR

NETS = sorted((REPO_DIR / "prototxt").rglob("*.prototxt"))


def test_there_are_shipped_nets():
    names = {str(p.relative_to(REPO_DIR / "prototxt")) for p in NETS}
    assert {"vgg16/train.prototxt", "vgg16/test.prototxt", "fast/train.prototxt",
            "fast/test.prototxt"} <= names


@pytest.mark.parametrize("path", NETS, ids=lambda p: str(Path(p).relative_to(REPO_DIR / "prototxt")))
def test_shipped_net_builds(path, capsys):
    phase = "TRAIN" if path.name.startswith("train") else "TEST"
    args = ["check", str(path), "--phase", phase]
    if phase == "TEST":
        args += ["--input-shape", "data=1,3,600,1000", "im_info=1,3"]
    assert main(args) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    conv = {"vgg16": "conv5_3", "resnet50_c4": "res4f"}.get(path.parent.name, "conv5")
    stride16 = "38x63" if phase == "TEST" else "?x?"
    assert stride16 in next(line for line in out.splitlines() if line.startswith(conv + " "))
