"""The test, eval and detect commands on a tiny VOC-layout dataset of our own.

`test` and `detect` run the fast CPU net with random weights at a tiny scale
on one image each: they check the plumbing (files written, errors, exit
status, the scores of what was written), not accuracy. End-to-end accuracy on
a small trained net is to come when one is checked in.
"""

import argparse
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pyfrcnn_layers import commands
from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn.errors import ConfigError, DataError, PyfrcnnError

CLASSES = ["circle", "square", "triangle", "star", "cross"]
FAST_NET = os.path.join(os.path.dirname(__file__), "..", "..", "..", "prototxt", "fast",
                        "test.prototxt")
SMALL = ["detection.TEST.SCALES=[64]", "detection.TEST.MAX_SIZE=100",
         "TEST.RPN_PRE_NMS_TOP_N=200", "TEST.RPN_POST_NMS_TOP_N=20"]


def xml(objects, width=80, height=60):
    parts = [f"<annotation><size><width>{width}</width><height>{height}</height>"
             "<depth>3</depth></size>"]
    for name, (x1, y1, x2, y2), difficult in objects:
        parts.append(f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
                     f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
                     f"<ymax>{y2}</ymax></bndbox></object>")
    return "".join(parts) + "</annotation>"


@pytest.fixture
def voc(tmp_path):
    """VOC2007/ with images a and b; XML boxes are 1-based."""
    folder = tmp_path / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (folder / sub).mkdir(parents=True)
    (folder / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (folder / "ImageSets/Main/test.txt").write_text("a\nb\n")
    (folder / "Annotations/a.xml").write_text(
        xml([("circle", (10, 10, 30, 30), False), ("square", (40, 5, 70, 50), True)]))
    (folder / "Annotations/b.xml").write_text(xml([("square", (1, 1, 20, 20), False)]))
    rng = np.random.RandomState(0)
    for name in ("a", "b"):
        Image.fromarray(rng.randint(0, 255, (60, 80, 3), dtype=np.uint8)).save(
            folder / "JPEGImages" / f"{name}.jpg")
    return folder


def run(name, argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    getattr(commands, f"add_{name}_arguments")(parser)
    return getattr(commands, f"run_{name}")(parser.parse_args(argv))


def sets(*overrides):
    """--set K=V, one per value."""
    return [word for text in overrides for word in ("--set", text)]


def data_args(voc, tmp_path):
    return ["--data", f"voc:{voc}:test", "--cache-dir", str(tmp_path / "cache")]


# -- eval -----------------------------------------------------------------------

def test_eval_scores_a_detections_file(voc, tmp_path, capsys):
    dets = [
        {"image_id": "a", "class": "circle", "bbox": [9, 9, 29, 29], "score": 0.9},
        {"image_id": "a", "class": "square", "bbox": [39, 4, 69, 49], "score": 0.99},  # difficult
        {"image_id": "a", "class": "square", "bbox": [0, 30, 10, 40], "score": 0.95},  # miss
        {"image_id": "b", "class": "square", "bbox": [0, 0, 19, 19], "score": 0.8},
    ]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "scores.json"
    status = run("eval", ["--dets", str(tmp_path / "dets.json"), *data_args(voc, tmp_path),
                          "--json", str(out)])
    assert status == 0
    # circle: one TP, AP 1. square: the difficult one is ignored; FP then TP gives
    # precision 1/2 at recall 1 -> .5 with both metrics. The others have no object.
    scores = json.loads(out.read_text())
    assert scores["metric"] == "voc07" and scores["mAP"] == pytest.approx(0.75)
    assert scores["ap"] == {"circle": pytest.approx(1.0), "square": pytest.approx(0.5),
                            "triangle": None, "star": None, "cross": None}
    printed = capsys.readouterr().out
    assert "AP (VOC07 11-point)" in printed and "mean      0.7500" in printed
    run("eval", ["--dets", str(tmp_path / "dets.json"), *data_args(voc, tmp_path),
                 "--metric", "voc", "--json", str(out)])
    assert json.loads(out.read_text())["metric"] == "voc"


def test_eval_names_unknown_classes_and_images(voc, tmp_path):
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": "c", "class": "circle", "bbox": [1, 1, 5, 5],
                                 "score": 0.5}]))
    with pytest.raises(DataError, match=r"dets\.json: 1 image id\(s\) not in the dataset: 'c'"):
        run("eval", ["--dets", str(path), *data_args(voc, tmp_path)])
    path.write_text(json.dumps([{"image_id": "a", "class": "circel", "bbox": [1, 1, 5, 5],
                                 "score": 0.5}]))
    with pytest.raises(DataError, match="'circel' \\(did you mean 'circle'\\?\\)"):
        run("eval", ["--dets", str(path), *data_args(voc, tmp_path)])


# -- settings -------------------------------------------------------------------

def test_detection_config_from_meta_and_overrides():
    meta = {"detection": DetectionConfig.from_dict({"TEST": {"NMS": 0.5}}).to_dict()}
    cfg = commands.detection_config(meta, ["detection.TEST.SCORE_THRESH=0.1", "TEST.SCALES=480"])
    assert (cfg.TEST.NMS, cfg.TEST.SCORE_THRESH, cfg.TEST.SCALES) == (0.5, 0.1, (480,))
    assert commands.detection_config({}, []).TEST.NMS == 0.3
    with pytest.raises(ConfigError, match="NMSS: unknown key.*did you mean 'NMS'"):
        commands.detection_config({}, ["detection.TEST.NMSS=0.4"])
    with pytest.raises(ConfigError, match="expected key.path=value"):
        commands.detection_config({}, ["image.jpg"])


def test_detect_class_names():
    assert commands.detect_class_names(["cat", "dog"], {}, 3) == ["cat", "dog"]
    assert commands.detect_class_names(["cat,dog"], {}, 3) == ["cat", "dog"]
    assert commands.detect_class_names(None, {"classes": ["__background__", "a", "b"]}, 3) == \
        ["a", "b"]
    assert commands.detect_class_names(None, {}, 3) == ["class_1", "class_2"]
    with pytest.raises(ConfigError, match="3 names given, the net scores 2 classes"):
        commands.detect_class_names(["a", "b", "c"], {}, 3)


# -- test and detect with random weights --------------------------------------------

@pytest.fixture
def weights(tmp_path):
    from pyfrcnn.net import Net

    torch.manual_seed(0)
    net = Net(FAST_NET, "TEST")
    path = tmp_path / "w.pt"
    net.save(path, meta={"detection": DetectionConfig().to_dict(), "classes": CLASSES})
    return path


def test_test_writes_detections_and_scores_them(voc, tmp_path, weights):
    from pyfrcnn_layers.datasets import open_dataset
    from pyfrcnn_layers.evaluation import evaluate, result_to_json

    out = tmp_path / "out"
    status = run("test", ["--net", FAST_NET, "--weights", str(weights), *data_args(voc, tmp_path),
                          "--out", str(out), "--vis", "1", "--vis-thresh", "0", "--num-images", "1",
                          *sets(*SMALL, "detection.TEST.MAX_PER_IMAGE=7")])
    assert status == 0
    records = json.loads((out / "detections.json").read_text())
    assert records and {r["image_id"] for r in records} == {"a"}
    scores = sorted((r["score"] for r in records), reverse=True)
    assert len(records) <= 7 or scores[6] == scores[7]  # ties at the cut may add a few
    assert all(0 <= r["bbox"][0] <= r["bbox"][2] <= 79 and 0 <= r["bbox"][1] <= r["bbox"][3] <= 59
               for r in records)
    assert sorted(os.listdir(out / "vis")) == ["a.jpg"]
    assert Image.open(out / "vis" / "a.jpg").size == (80, 60)
    lines = sum(len((out / f"comp4_det_test_{c}.txt").read_text().splitlines()) for c in CLASSES)
    assert lines == len(records)
    # scored on the images tested only, as the devkit scores the VOC results files
    dataset = open_dataset(f"voc:{voc}:test", cache_dir=tmp_path / "cache")
    expected = evaluate(read_voc_results_files(out, CLASSES), [dataset.annotation(0)],
                        dataset.classes, "voc07")
    assert json.loads((out / "metrics.json").read_text()) == result_to_json(expected)


def read_voc_results_files(folder, classes):
    """The detections the VOC results files hold, as voc_eval reads them: 'image
    score x1 y1 x2 y2' per line, 1-based corners (back to 0-based here)."""
    records = []
    for name in classes:
        for line in (folder / f"comp4_det_test_{name}.txt").read_text().splitlines():
            image, score, *corners = line.split(" ")
            records.append({"image_id": image, "class": name, "score": float(score),
                            "bbox": [float(v) - 1 for v in corners]})
    return records


def test_test_refuses_a_dataset_with_other_classes(voc, tmp_path, weights):
    (voc / "classes.txt").write_text("cat\ndog\n")
    with pytest.raises(PyfrcnnError, match="scores 6 classes .* has 3"):
        run("test", ["--net", FAST_NET, "--weights", str(weights), *data_args(voc, tmp_path),
                     "--out", str(tmp_path / "out")])


def test_detect_writes_json_and_pictures_and_survives_bad_files(voc, tmp_path, weights, capsys):
    (tmp_path / "broken.jpg").write_text("not an image")
    images = [str(voc / "JPEGImages" / "a.jpg"), str(tmp_path / "missing.png"),
              str(tmp_path / "broken.jpg")]
    out = tmp_path / "dets"
    status = run("detect", [*images, "--net", FAST_NET, "--weights", str(weights),
                            "--thresh", "0.3", "--out", str(out), *sets(*SMALL)])
    assert status == 1
    err = capsys.readouterr().err
    assert "missing.png: image file not found" in err and "broken.jpg: cannot read image" in err
    assert "2 of 3 image(s) failed" in err
    assert sorted(os.listdir(out)) == ["a.json", "a_det.jpg"]
    result = json.loads((out / "a.json").read_text())
    assert (result["width"], result["height"]) == (80, 60)
    assert all(d["class"] in CLASSES and d["score"] >= 0.3 for d in result["detections"])
    assert [d["score"] for d in result["detections"]] == \
        sorted((d["score"] for d in result["detections"]), reverse=True)
