"""Hostile weights files, detections files, images and data folders: one line on
stderr naming the culprit (data check: the report names every unusable file),
exit status 1, no traceback; a few run in a real process, Ctrl-C included."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from pyfrcnn.net import Net
from pyfrcnn.proto import pyfrcnn_pb2 as pb
from tests.conftest import REPO_DIR
from tests.hostile.runner import assert_one_line_error, run_cli, run_subprocess
from tests.layers.datasets.fixtures import make_voc, voc_xml, write_coco, write_image

FAST_TEST = REPO_DIR / "prototxt" / "fast" / "test.prototxt"
CLASSES = ["a", "b", "c", "d", "e"]


class Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def caffemodel(*layers, legacy=False):
    """Bytes of a NetParameter; each layer is (name, type, [BlobProto])."""
    net = pb.NetParameter()
    for name, kind, blobs in layers:
        lp = net.layers.add() if legacy else net.layer.add()
        lp.name = name
        if not legacy:
            lp.type = kind
        else:
            lp.type = pb.V1LayerParameter.INNER_PRODUCT
        for b in blobs:
            lp.blobs.add().CopyFrom(b)
    return net.SerializeToString()


def blob(values, shape=None, legacy=None):
    b = pb.BlobProto()
    b.data.extend(values)
    if shape is not None:
        b.shape.dim.extend(shape)
    if legacy is not None:
        b.num, b.channels, b.height, b.width = legacy
    return b


def torch_bytes(obj, tmp_path):
    path = tmp_path / "obj.pt"
    torch.save(obj, path)
    return path.read_bytes()


def ours(layers, meta=None):
    return {"format": "pyfrcnn-weights", "version": 1, "layers": layers, "meta": meta or {}}


GOOD = caffemodel(("fc", "InnerProduct", [blob([1.0] * 6, [2, 3]), blob([0.0, 0.0], [2])]))
# (id, the file's bytes from tmp_path, culprit pattern): `pyfrcnn convert FILE OUT`
WEIGHTS = [
    ("empty", lambda t: b"", r"w\.bin: the weights file is empty"),
    ("random_bytes", lambda t: bytes(range(7, 250)) * 3, r"w\.bin: not a Caffe \.caffemodel"),
    ("truncated_caffemodel", lambda t: GOOD[:len(GOOD) // 2], r"w\.bin: not a Caffe \.caffemodel"),
    ("truncated_torch_zip", lambda t: torch_bytes(ours({}), t)[:200],
     r"w\.bin: not a readable torch weights file"),
    ("code_running_pickle", lambda t: torch_bytes(ours({}, {"x": Evil(str(t / "ran"))}), t),
     r"w\.bin: not a readable torch weights file"),
    ("raw_pickle_protocol2", lambda t: pickle.dumps(Evil(str(t / "ran")), protocol=2),
     r"w\.bin: not a readable torch weights file"),
    ("bare_tensor", lambda t: torch_bytes(torch.ones(3), t), r"a torch file holding a Tensor"),
    ("a_list", lambda t: torch_bytes([torch.ones(3)], t), r"a torch file holding a list"),
    ("dict_without_format", lambda t: torch_bytes({"fc": torch.ones(3)}, t),
     r"a dict with keys fc: neither pyfrcnn weights"),
    ("layers_not_a_dict", lambda t: torch_bytes(ours([1, 2]), t), r"without its 'layers' dict"),
    ("blob_not_a_tensor", lambda t: torch_bytes(ours({"fc": [1.0]}), t),
     r"layer 'fc' blob 0: expected a float tensor, got float"),
    ("blob_int_tensor", lambda t: torch_bytes(ours({"fc": [torch.ones(2, dtype=torch.int64)]}), t),
     r"layer 'fc' blob 0: expected a float tensor, got torch.int64"),
    ("blobs_not_a_list", lambda t: torch_bytes(ours({"fc": torch.ones(2)}), t),
     r"layer 'fc': expected a list of tensors"),
    ("empty_layer_name", lambda t: torch_bytes(ours({"": [torch.ones(2)]}), t), r"non-empty string"),
    ("meta_not_a_dict", lambda t: torch_bytes(dict(ours({}), meta=[1]), t), r"entry 'meta' must be a dict"),
    ("meta_classes_not_names", lambda t: torch_bytes(ours({}, {"classes": 5}), t),
     r"meta entry 'classes' must be a list of names"),
    ("meta_detection_not_dict", lambda t: torch_bytes(ours({}, {"detection": "x"}), t),
     r"meta entry 'detection' must be a dict"),
    ("caffe_negative_dim", lambda t: caffemodel(("fc", "InnerProduct", [blob([1.0] * 6, [-2, -3])])),
     r"layer 'fc' \(InnerProduct\) blob 0: shape -2x-3 has a negative dimension"),
    ("caffe_overflowing_dims", lambda t: caffemodel(("fc", "InnerProduct", [blob([], [2 ** 32, 2 ** 32])])),
     r"layer 'fc' \(InnerProduct\) blob 0: shape 4294967296x4294967296 holds 18446744073709551616"),
    ("caffe_count_mismatch", lambda t: caffemodel(("fc", "InnerProduct", [blob([1.0] * 5, [2, 3])])),
     r"blob 0: shape 2x3 holds 6 values, the file gives 5"),
    ("caffe_both_lists", lambda t: caffemodel(("fc", "InnerProduct", [blob([1.0], [1])]))
     + caffemodel(("fc", "InnerProduct", [blob([1.0], legacy=(1, 1, 1, 1))]), legacy=True),
     r"has both 'layer' and legacy 'layers'"),
    ("caffe_unnamed_layer", lambda t: caffemodel(("", "InnerProduct", [blob([1.0], [1])])),
     r"layer 0 \(InnerProduct\) has blobs but no name"),
    ("caffe_twice", lambda t: caffemodel(("fc", "InnerProduct", [blob([1.0], [1])]),
                                         ("fc", "InnerProduct", [blob([1.0], [1])])),
     r"layer 'fc' \(InnerProduct\) has blobs twice"),
    ("caffe_legacy_ip_dims", lambda t: caffemodel(("fc", "X", [blob([1.0] * 6, legacy=(2, 1, 1, 3))]),
                                                  legacy=True),
     r"legacy shape 2x1x1x3; InnerProduct weights must be 1x1xNxK"),
    ("caffe_no_blobs", lambda t: caffemodel(("relu", "ReLU", [])), r"no layer with blobs"),
    ("vgg16_missing_keys", lambda t: torch_bytes({"features.0.weight": torch.ones(64, 3, 3, 3)}, t),
     r"not torchvision's VGG16 state_dict: no features.0.bias"),
    ("vgg16_bn", lambda t: torch_bytes({"features.0.weight": torch.ones(1),
                                        "features.1.running_mean": torch.ones(1)}, t),
     r"a VGG16 with batch normalisation"),
]


@pytest.mark.parametrize("case_id, make, pattern", WEIGHTS, ids=[c[0] for c in WEIGHTS])
def test_hostile_weights(tmp_path, case_id, make, pattern):
    path = tmp_path / "w.bin"
    path.write_bytes(make(tmp_path))
    assert_one_line_error(*run_cli(["convert", path, tmp_path / "out.weights"]), pattern)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out.weights").exists()


@pytest.mark.parametrize("source, pattern", [
    ("/dev/zero", r"/dev/zero: not a regular file"),
    ("{tmp}", r"is a folder, not a weights file"),
    ("{tmp}/none.weights", r"none\.weights: no such weights file"),
], ids=["dev_zero", "folder", "missing"])
def test_hostile_weights_paths(tmp_path, source, pattern):
    argv = ["convert", source.format(tmp=tmp_path), tmp_path / "out.weights"]
    assert_one_line_error(*run_cli(argv), pattern)


def test_convert_into_a_folder_that_is_a_file(tmp_path):
    (tmp_path / "w.caffemodel").write_bytes(GOOD)
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(*run_cli(["convert", tmp_path / "w.caffemodel", tmp_path / "afile" / "o"]),
                          r"afile/o: cannot write: a file stands where a folder is needed")


def test_convert_onto_a_device(tmp_path):
    (tmp_path / "w.caffemodel").write_bytes(GOOD)
    assert_one_line_error(*run_cli(["convert", tmp_path / "w.caffemodel", "/dev/null"]),
                          r"/dev/null: cannot write: it exists and is not a regular file")
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


def test_disk_full_leaves_the_earlier_file(tmp_path, monkeypatch):
    import errno

    import pyfrcnn.net

    (tmp_path / "w.caffemodel").write_bytes(GOOD)
    out = tmp_path / "out.weights"
    assert run_cli(["convert", tmp_path / "w.caffemodel", out])[0] == 0
    before = out.read_bytes()

    def full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pyfrcnn.net.torch, "save", full)
    assert_one_line_error(*run_cli(["convert", tmp_path / "w.caffemodel", out]),
                          r"out\.weights: cannot write: No space left on device")
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


# -- a test net and its weights ------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    net = Net(str(FAST_TEST), "TEST", input_shapes={"data": (1, 3, None, None)})
    net.save(root / "w.weights", meta={"classes": ["__background__", *CLASSES]})
    other = {name: [torch.zeros(3)] + blobs[1:] for name, blobs in net.weights_dict().items()}
    torch.save(ours(other), root / "misfit.weights")
    images = {f"im{k}": (48, 40, [(CLASSES[k % 5], 3, 3, 30, 30)]) for k in range(2)}
    make_voc(str(root / "voc"), images, classes=CLASSES)
    return root


DETECT = [
    ("weights_misfit", ["{m}/im.png", "--weights", "{m}/misfit.weights"],
     r"misfit\.weights: layer 'conv1' \(Convolution\) .* blob 0: the net has shape 24x3x3x3, the file 3"),
    ("classes_count", ["--weights", "{m}/w.weights", "--classes", "a", "b", "--", "{m}/im.png"],
     r"--classes: 2 names given, the net scores 5 classes"),
    ("set_nms", ["{m}/im.png", "--weights", "{m}/w.weights", "--set", "detection.TEST.NMS=2"],
     r"detection\.TEST\.NMS: must be in"),
    ("set_scales", ["{m}/im.png", "--weights", "{m}/w.weights", "--set", "detection.TEST.SCALES=[0]"],
     r"detection\.TEST\.SCALES: must be at least 1"),
    ("device_cuda_missing", ["{m}/im.png", "--weights", "{m}/w.weights", "--device", "cuda:7"],
     r"--device cuda:7: no CUDA device is available|cuda:7"),
    ("image_not_an_image", ["{m}/notimage.png", "--weights", "{m}/w.weights"],
     r"notimage\.png: cannot read image"),
    ("image_missing", ["{m}/none.png", "--weights", "{m}/w.weights"], r"none\.png: image file not found"),
]


def test_detect_out_is_a_file(model, tmp_path):
    write_image(str(model / "im.png"), 40, 30)
    (tmp_path / "afile").write_text("x")
    argv = ["detect", "--net", FAST_TEST, "--weights", model / "w.weights", "--out",
            tmp_path / "afile", "-q", model / "im.png"]
    assert_one_line_error(*run_cli(argv), r"afile: a file stands where a folder is needed")


def test_test_out_is_a_file(model, tmp_path):
    (tmp_path / "afile").write_text("x")
    argv = ["test", "--net", FAST_TEST, "--weights", model / "w.weights", "--data",
            f"voc:{model / 'voc'}:train", "--cache-dir", tmp_path / "cache", "--out",
            tmp_path / "afile", "-q"]
    assert_one_line_error(*run_cli(argv), r"afile: a file stands where a folder is needed")


@pytest.mark.parametrize("case_id, extra, pattern", DETECT, ids=[c[0] for c in DETECT])
def test_hostile_detect(model, tmp_path, case_id, extra, pattern):
    if case_id == "device_cuda_missing" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    write_image(str(model / "im.png"), 40, 30)
    (model / "notimage.png").write_bytes(b"\x89PNG not really")
    argv = ["detect", "--net", FAST_TEST, "--out", tmp_path / "out", "-q",
            *[a.format(m=model) for a in extra]]
    assert_one_line_error(*run_cli(argv), pattern, summary=r"1 of 1 image\(s\) failed")


# -- detections files: `pyfrcnn eval` ------------------------------------------------------
def record(**changes):
    det = {"image_id": "im0", "class": "a", "bbox": [1, 2, 20, 20], "score": 0.9}
    det.update(changes)
    return json.dumps([det])


DETECTIONS = [
    ("not_json", "detections", r"d\.json:1:1: not valid JSON"),
    ("empty", "", r"d\.json:1:1: not valid JSON"),
    ("deep", "[" * 100000 + "]" * 100000, r"d\.json: not usable JSON: nested too deeply"),
    ("not_utf8", b'[{"class": "\xe9"}]', r"d\.json:1:13: not UTF-8 text"),
    ("a_dict", '{"image_id": "im0"}', r"d\.json: expected a JSON list of detections, got a dict"),
    ("record_not_object", "[1]", r"d\.json"),
    ("no_bbox", json.dumps([{"image_id": "im0", "class": "a", "score": 0.5}]), r"d\.json.*bbox"),
    ("bbox_three", record(bbox=[1, 2, 3]), r"d\.json.*bbox"),
    ("score_nan", record(score=float("nan")), r"d\.json.*score"),
    ("score_string", record(score="high"), r"d\.json.*score"),
    ("bbox_inf", record(bbox=[1, 2, float("inf"), 3]), r"d\.json.*bbox"),
    ("unknown_class", record(**{"class": "zebra"}), r"zebra"),
    ("unknown_image", record(image_id="im9"), r"im9"),
    ("huge_number", '[{"image_id": "im0", "class": "a", "bbox": [' + "9" * 5000 + ', 1, 2, 3]}]',
     r"d\.json: not usable JSON: Exceeds the limit"),
]


@pytest.mark.parametrize("case_id, text, pattern", DETECTIONS, ids=[c[0] for c in DETECTIONS])
def test_hostile_detections(model, tmp_path, case_id, text, pattern):
    path = tmp_path / "d.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    argv = ["eval", "--dets", path, "--data", f"voc:{model / 'voc'}:train",
            "--cache-dir", tmp_path / "cache", "-q"]
    assert_one_line_error(*run_cli(argv), pattern)


def test_detections_from_a_device(model, tmp_path):
    argv = ["eval", "--dets", "/dev/zero", "--data", f"voc:{model / 'voc'}:train", "-q",
            "--cache-dir", tmp_path / "cache"]
    assert_one_line_error(*run_cli(argv), r"/dev/zero: not a regular file")


# -- data folders: `pyfrcnn data check` ------------------------------------------------------
BOMB_XML = ('<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "' + "lol" * 30 + '">\n'
            + "".join(f' <!ENTITY lol{i} "' + f"&lol{'' if i == 1 else i - 1};" * 10 + '">\n'
                      for i in range(1, 10))
            + ']>\n<annotation><filename>&lol9;</filename></annotation>\n')


def jpeg_bytes(width=40, height=30, mode="RGB"):
    import io

    buffer = io.BytesIO()
    pixels = np.random.default_rng(1).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(buffer, "JPEG")
    return buffer.getvalue()


def png_bytes(width=40, height=30):
    import io

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def huge_png_header(width, height):
    """A PNG whose header claims width x height (the pixel data is never reached)."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk +
            struct.pack(">I", zlib.crc32(chunk)) + b"\x00\x00\x00\x00IDAT" + b"\x00" * 8)


def bad_image(data):
    return lambda folder: (folder / "JPEGImages" / "bad.jpg").write_bytes(data)


def bad_xml(text):
    return lambda folder: (folder / "Annotations" / "bad.xml").write_text(text)


def remove(name):
    return lambda folder: os.remove(folder / name)


# (id, how to break image 'bad' of a VOC folder, culprit named in the report)
DATA_FAILURES = [
    ("corrupt_jpeg", bad_image(b"\xff\xd8\xff broken"), r"bad\.jpg: cannot read image"),
    ("truncated_jpeg", bad_image(jpeg_bytes()[:300]), r"bad\.jpg: cannot read image"),
    ("truncated_png", bad_image(png_bytes()[:60]), r"bad\.jpg: cannot read image"),
    ("zero_bytes", bad_image(b""), r"bad\.jpg: cannot read image"),
    ("text_file", bad_image(b"hello, I am not an image\n"), r"bad\.jpg: cannot read image"),
    ("huge_declared", bad_image(huge_png_header(40000, 40000)),
     r"bad\.jpg: image (is 40000x40000 pixels, more than|too large)"),
    ("wrong_size", bad_image(jpeg_bytes(41, 30)), r"bad\.jpg: image is 41x30 but its annotation says 40x30"),
    ("listed_but_missing", remove("JPEGImages/bad.jpg"), r"bad\.jpg: image file not found"),
    ("image_is_a_folder", lambda f: (os.remove(f / "JPEGImages" / "bad.jpg"),
                                     os.mkdir(f / "JPEGImages" / "bad.jpg")), r"bad\.jpg: "),
    ("xml_missing", remove("Annotations/bad.xml"), r"bad\.xml: annotation file not found"),
    ("xml_broken", bad_xml("<annotation><size>"), r"bad\.xml: not valid XML"),
    ("xml_not_xml", bad_xml("width=40 height=30"), r"bad\.xml: not valid XML"),
    ("xml_entity_bomb", bad_xml(BOMB_XML), r"bad\.xml: not valid XML: limit on input amplification"),
    ("xml_not_utf8", lambda f: (f / "Annotations" / "bad.xml").write_bytes(
        b'<?xml version="1.0" encoding="utf-8"?><annotation><name>\xe9</name></annotation>'),
     r"bad\.xml: not valid XML"),
    ("xml_no_size_bad_image", lambda f: (bad_xml(voc_xml("bad.jpg", 40, 30, [], size=False))(f),
                                         bad_image(b"junk")(f)), r"bad\.xml: no <size> in the XML"),
]

# (id, how to change image 'bad', what the warning says): the image still trains
DATA_WARNINGS = [
    ("box_outside", [("a", 50, 50, 60, 60)], r"bad\.xml: box \(49, 49, 59, 59\) dropped: it lies outside"),
    ("box_x2_before_x1", [("a", 20, 5, 10, 25)], r"bad\.xml: box \(19, 4, 9, 24\) dropped: it has x2 < x1"),
    ("box_zero_area", [("a", 10, 5, 9, 25)], r"dropped: it has x2 < x1"),
    ("box_clipped", [("a", -5, 1, 20, 20)], r"bad\.xml: box \(-6, 0, 19, 19\) clipped to the 40x30 image"),
    ("box_nan", [("a", "nan", 1, 20, 20)], r"bad\.xml: box \(nan, 0, 19, 19\) dropped: it has a non-finite"),
    ("box_not_a_number", [("a", "left", 1, 20, 20)], r"bad\.xml: object 0 'a' dropped: no numeric"),
    ("unknown_class", [("zebra", 1, 1, 20, 20)], r"bad\.xml: object 0 'zebra' dropped: not one of"),
]

# (id, image writer, mode): odd but usable images
DATA_USABLE = [("cmyk_jpeg", "CMYK"), ("grayscale", "L"), ("palette", "P"), ("rgba_png", "RGBA"),
               ("sixteen_bit_png", "I;16"), ("one_by_one", "1x1")]


def voc_with_bad_image(root, objects=(("a", 3, 3, 30, 25),), size=(40, 30)):
    images = {"ok": (40, 30, [("b", 2, 2, 20, 20)]), "bad": (size[0], size[1], list(objects))}
    return make_voc(str(root), images, classes=CLASSES)


def data_check(folder, tmp_path):
    return run_cli(["data", "-q", "check", f"voc:{folder}:train", "--cache-dir",
                    tmp_path / "cache", "--workers", "0"])


def assert_report(status, out, err, pattern, status_expected):
    assert "Traceback" not in out and "Traceback" not in err, err
    assert status == status_expected, (status, out, err)
    assert re.search(pattern, out), out


@pytest.mark.parametrize("case_id, breaks, pattern", DATA_FAILURES, ids=[c[0] for c in DATA_FAILURES])
def test_hostile_data_folder(tmp_path, case_id, breaks, pattern):
    folder = voc_with_bad_image(tmp_path / "voc")
    breaks(tmp_path / "voc")
    status, out, err = data_check(folder, tmp_path)
    assert_report(status, out, err, pattern, 1)
    assert "failed files: 1" in out and out.rstrip().endswith("FAILED: 1 file(s) unusable")


@pytest.mark.parametrize("case_id, objects, pattern", DATA_WARNINGS, ids=[c[0] for c in DATA_WARNINGS])
def test_questionable_boxes_are_named_and_skipped(tmp_path, case_id, objects, pattern):
    folder = voc_with_bad_image(tmp_path / "voc", objects)
    status, out, err = data_check(folder, tmp_path)
    assert_report(status, out, err, pattern, 0)


@pytest.mark.parametrize("case_id, mode", DATA_USABLE, ids=[c[0] for c in DATA_USABLE])
def test_odd_images_load(tmp_path, case_id, mode):
    size = (1, 1) if mode == "1x1" else (40, 30)
    objects = [("a", 1, 1, 1, 1)] if mode == "1x1" else [("a", 3, 3, 30, 25)]
    folder = voc_with_bad_image(tmp_path / "voc", objects, size)
    path = tmp_path / "voc" / "JPEGImages" / "bad.jpg"
    if mode == "I;16":
        Image.fromarray(np.full((30, 40), 40000, np.uint16)).save(path, "PNG")
    elif mode != "1x1":
        write_image(str(path), 40, 30, mode=mode, fmt="PNG" if mode in ("RGBA", "P") else None)
    status, out, err = data_check(folder, tmp_path)
    assert_report(status, out, err, r"OK$", 0)


DATASETS = [
    ("voc_folder_missing", "voc:{tmp}/nowhere:train", r"VOC folder '.*nowhere' not found"),
    ("voc_set_missing", "voc:{voc}:val", r"val"),
    ("coco_broken_json", "coco:{tmp}/broken.json:{tmp}", r"broken\.json:1:\d+: not valid JSON"),
    ("coco_deep_json", "coco:{tmp}/deep.json:{tmp}", r"deep\.json: not usable JSON: nested too deeply"),
    ("coco_not_a_dict", "coco:{tmp}/list.json:{tmp}", r"list\.json"),
    ("coco_no_images", "coco:{tmp}/noimages.json:{tmp}", r"noimages\.json.*images"),
    ("coco_dev_zero", "coco:/dev/zero:{tmp}", r"/dev/zero"),
    ("bad_spec", "bogus:thing", r"bogus"),
]


@pytest.mark.parametrize("case_id, spec, pattern", DATASETS, ids=[c[0] for c in DATASETS])
def test_hostile_dataset(tmp_path, case_id, spec, pattern):
    voc = voc_with_bad_image(tmp_path / "voc")
    (tmp_path / "broken.json").write_text('{"images": [')
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    write_coco(str(tmp_path / "list.json"), [1, 2])
    write_coco(str(tmp_path / "noimages.json"), {"annotations": [], "categories": []})
    argv = ["data", "-q", "check", spec.format(tmp=tmp_path, voc=voc), "--cache-dir",
            tmp_path / "cache", "--workers", "0"]
    assert_one_line_error(*run_cli(argv), pattern)


# -- real processes ------------------------------------------------------------------------
def test_subprocess_check_dev_zero():
    assert_one_line_error(*run_subprocess(["check", "/dev/zero"]), r"^pyfrcnn check: error: "
                          r"/dev/zero: not a regular file")


def test_subprocess_convert_code_running_pickle(tmp_path):
    (tmp_path / "evil.pt").write_bytes(torch_bytes({"x": Evil(str(tmp_path / "ran"))}, tmp_path))
    assert_one_line_error(*run_subprocess(["convert", tmp_path / "evil.pt", tmp_path / "o"]),
                          r"evil\.pt: not a readable torch weights file")
    assert not (tmp_path / "ran").exists()


def test_subprocess_solve_alias_bomb(tmp_path):
    bomb = "".join([f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "lol"] * 9) + "]\n"
                    for i in range(9)])
    (tmp_path / "s.yaml").write_text("base_lr: 0.1\nmax_iter: 1\n" + bomb)
    start = time.monotonic()
    assert_one_line_error(*run_subprocess(["solve", tmp_path / "s.yaml"]),
                          r"s\.yaml:\d+:\d+: its aliases expand")
    assert time.monotonic() - start < 60


INTERRUPT_DURING_IMPORT = """
import os, signal, sys

class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

from pyfrcnn.cli import main
assert "torch" not in sys.modules
sys.meta_path.insert(0, CtrlC())
sys.exit(main(["check", "prototxt/fast/test.prototxt"]))
"""


def test_ctrl_c_while_torch_imports():
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    result = subprocess.run([sys.executable, "-c", INTERRUPT_DURING_IMPORT], cwd=REPO_DIR, env=env,
                            capture_output=True, text=True, timeout=120)
    assert_one_line_error(result.returncode, result.stdout, result.stderr,
                          r"^pyfrcnn: interrupted$", status_expected=130)


@pytest.mark.parametrize("delay", [0.8, 2.0])
def test_ctrl_c_at_a_random_moment(delay):
    env = dict(os.environ, PYTHONPATH=str(REPO_DIR))
    process = subprocess.Popen([sys.executable, "-m", "pyfrcnn", "check",
                                "prototxt/vgg16/train.prototxt", "--phase", "TRAIN"],
                               cwd=REPO_DIR, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    if process.returncode == 0 or "multiply-adds per forward" in out:
        pytest.skip("the check finished before the signal")
    assert_one_line_error(process.returncode, out, err, r"interrupted$", status_expected=130)
