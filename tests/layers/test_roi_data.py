import logging
import os

import pytest
import torch

from pyfrcnn_layers.datasets import open_voc
from pyfrcnn_layers.image import image_to_blob, load_image
from pyfrcnn.errors import DataError, NetError
from pyfrcnn.net import Net

from .datasets.fixtures import make_voc

TOPS = ("data", "im_info", "gt_boxes", "gt_ishard", "dontcare_areas")


def prototxt(num_classes=3, tops=TOPS):
    top_lines = "\n".join(f"  top: '{t}'" for t in tops)
    return f"""name: "data_only"
layer {{
  name: 'input-data'
  type: 'Python'
{top_lines}
  python_param {{
    module: 'roi_data_layer.layer'
    layer: 'RoIDataLayer'
    param_str: "'num_classes': {num_classes}"
  }}
}}
"""


@pytest.fixture
def voc(tmp_path):
    return make_voc(tmp_path / "VOC", {
        "wide": (40, 20, [("cat", 5, 3, 14, 10), ("dog", 1, 1, 8, 8, 1)]),
        "tall": (20, 30, [("dog", 2, 2, 19, 29)]),
        "sq0": (24, 24, [("cat", 3, 3, 9, 9)]),
        "sq1": (24, 24, [("dog", 4, 4, 20, 20)]),
        "sq2": (24, 24, [("cat", 1, 1, 24, 24)]),
    }, classes=["cat", "dog"])


def build(dataset, phase="TRAIN", workers=0, scales=(40,), num_classes=3, tops=TOPS, flipped=True,
          **data):
    config = {"dataset": dataset, "data": {"workers": workers, **data},
              "detection": {"TRAIN": {"SCALES": list(scales), "ASPECT_GROUPING": False,
                                      "USE_FLIPPED": flipped},
                            "TEST": {"SCALES": [scales[0]]}}}
    return Net(prototxt(num_classes, tops), phase=phase, config=config)


def sample_key(out):
    return (tuple(out["im_info"].flatten().tolist()), tuple(out["gt_boxes"].flatten().tolist()),
            round(float(out["data"].sum()), 2))


def test_build_time_shapes():
    net = Net(prototxt())
    assert [net.blob_shapes[t] for t in TOPS] == [(1, 3, None, None), (1, 3), (None, 5), (None,),
                                                  (None, 4)]
    assert list(Net(prototxt(tops=TOPS[:3])).blob_shapes) == list(TOPS[:3])


def test_test_phase_tops_by_hand(voc):
    net = build(open_voc(voc, "train"), phase="TEST")
    out = net.forward()
    # "wide" is 40 x 20: the shorter side 20 -> 40 gives im_scale 2 and an 80 x 40 blob.
    assert out["im_info"].tolist() == [[40.0, 80.0, 2.0]]
    # VOC (5, 3, 14, 10) -> 0-based (4, 2, 13, 9) -> x2: (8, 4, 26, 18); the difficult dog is kept.
    assert out["gt_boxes"].tolist() == [[8, 4, 26, 18, 1], [0, 0, 14, 14, 2]]
    assert out["gt_ishard"].tolist() == [0.0, 1.0]
    assert out["dontcare_areas"].shape == (0, 4)
    expected, _ = image_to_blob(load_image(os.path.join(voc, "JPEGImages", "wide.jpg")), 40, 1000,
                                (102.9801, 115.9465, 122.7717))
    torch.testing.assert_close(out["data"], expected)
    assert net.forward()["im_info"].tolist() == [[60.0, 40.0, 2.0]]  # then "tall", in order


def test_flipped_copy_by_hand(voc):
    dataset = open_voc(voc, "train")
    dataset.records = dataset.records[:1]          # just "wide"
    net = build(dataset)
    seen = {}
    for _ in range(2):
        out = net.forward()
        seen[out["gt_boxes"][0, 0].item()] = out
    original, flipped = seen[8.0], seen[52.0]
    # Width 40: (4, 2, 13, 9) -> (40 - 13 - 1, 2, 40 - 4 - 1, 9) = (26, 2, 35, 9), then x2.
    assert flipped["gt_boxes"].tolist() == [[52, 4, 70, 18, 1]]   # difficult dog dropped for training
    assert flipped["gt_ishard"].tolist() == [0.0]
    # An exact 2x bilinear resize commutes with the mirror.
    torch.testing.assert_close(flipped["data"], original["data"].flip(-1))


def test_num_classes_must_cover_the_dataset(voc, caplog):
    with pytest.raises(NetError, match=r"'num_classes': 2 but dataset '.*' has 3 classes"):
        build(open_voc(voc, "train"), num_classes=2).forward()
    out = build(open_voc(voc, "train"), num_classes=21).forward()
    assert out["gt_boxes"][:, 4].max() < 3
    assert "classes 3 and up are never labelled" in caplog.text


def test_dataset_from_the_data_section_by_phase(voc, tmp_path):
    config = {"data": {"train": f"voc:{voc}:train", "workers": 0,
                       "cache_dir": str(tmp_path / "cache")},
              "detection": {"TRAIN": {"SCALES": [24]}, "TEST": {"SCALES": [24]}}}
    assert Net(prototxt(), phase="TRAIN", config=config).forward()["data"].shape[1] == 3
    with pytest.raises(NetError, match=r"no TEST dataset: .*'test: <dataset spec>'"):
        Net(prototxt(), phase="TEST", config=config).forward()


def test_prefetch_order_equals_serial_order(voc):
    runs = []
    for workers in (0, 3):
        net = build(open_voc(voc, "train"), workers=workers, scales=(24, 32, 40), prefetch=3)
        runs.append([sample_key(net.forward()) for _ in range(14)])
        net.layers[0].close()
    assert runs[0] == runs[1]
    assert len(set(runs[0][:10])) == 10  # an epoch: 5 images and their flips


@pytest.mark.parametrize("workers", [0, 2])
def test_snapshot_and_restore_continue_the_exact_sequence(voc, workers):
    net = build(open_voc(voc, "train"), workers=workers, scales=(24, 32))
    for _ in range(7):
        net.forward()
    state = net.layers[0].snapshot_state()
    expected = [sample_key(net.forward()) for _ in range(6)]   # crosses into the next epoch
    # A new net restored before its first forward ...
    fresh = build(open_voc(voc, "train"), workers=workers, scales=(24, 32))
    fresh.layers[0].restore_state(state)
    assert [sample_key(fresh.forward()) for _ in range(6)] == expected
    # ... and the same layer rewound, its read-ahead discarded.
    net.layers[0].restore_state(state)
    assert [sample_key(net.forward()) for _ in range(6)] == expected


def test_bad_image_is_skipped_with_a_warning(voc, caplog):
    with open(os.path.join(voc, "JPEGImages", "sq1.jpg"), "wb") as f:
        f.write(b"garbage")
    os.remove(os.path.join(voc, "JPEGImages", "sq2.jpg"))
    net = build(open_voc(voc, "train"), workers=2, flipped=False)
    with caplog.at_level(logging.WARNING):
        sizes = [tuple(net.forward()["im_info"][0, :2].tolist()) for _ in range(9)]
    assert set(sizes) == {(40.0, 80.0), (60.0, 40.0), (40.0, 40.0)}  # wide, tall, sq0
    failed = net.layers[0].failed_samples
    assert set(failed) == {os.path.join(voc, "JPEGImages", n) for n in ("sq1.jpg", "sq2.jpg")}
    assert "sq1.jpg: cannot read image" in caplog.text and "sq2.jpg: image file not found" in caplog.text


def test_too_many_failures_in_a_row_stop_the_run(voc):
    for name in os.listdir(os.path.join(voc, "JPEGImages")):
        os.remove(os.path.join(voc, "JPEGImages", name))
    net = build(open_voc(voc, "train"), max_failures=3)
    with pytest.raises(DataError, match="3 samples in a row failed to load"):
        net.forward()


def test_wrong_image_size_is_a_failed_sample(voc, caplog):
    from .datasets.fixtures import write_image
    write_image(os.path.join(voc, "JPEGImages", "wide.jpg"), 41, 20)
    net = build(open_voc(voc, "train"), phase="TEST")
    with caplog.at_level(logging.WARNING):
        assert net.forward()["im_info"].tolist() == [[60.0, 40.0, 2.0]]   # "tall"
    assert "wide.jpg: image is 41x20 but its annotation says 40x20" in caplog.text


def test_images_without_objects(tmp_path):
    folder = make_voc(tmp_path / "VOC", {"empty": (20, 20, [])}, classes=["cat", "dog"])
    with pytest.raises(DataError, match="1 image.* with no object skipped; data.skip_empty"):
        build(open_voc(folder, "train")).forward()
    out = build(open_voc(folder, "train"), skip_empty=False).forward()   # background only
    assert out["gt_boxes"].shape == (0, 5) and out["gt_ishard"].shape == (0,)


def test_loader_threads_run_torch_on_one_thread_at_low_priority(voc, monkeypatch):
    """Loader threads must not start a second OpenMP team beside the net's, nor
    change the calling thread's torch threads."""
    import pyfrcnn_layers.roi_data as roi_data

    seen = []
    inner = roi_data.load_sample

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return inner(*args, **kwargs)

    monkeypatch.setattr(roi_data, "load_sample", spy)
    threads = torch.get_num_threads()
    net = build(open_voc(voc, "train"), workers=2)
    for _ in range(4):
        net.forward()
    net.layers[0].close()
    assert seen and all(n == 1 for n in seen)
    assert torch.get_num_threads() == threads


def test_loader_thread_init_lowers_only_its_own_priority():
    import threading

    from pyfrcnn_layers.roi_data import loader_thread_init

    if not hasattr(threading, "get_native_id") or not hasattr(os, "getpriority"):
        pytest.skip("per-thread priorities are a Linux feature")
    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    result = {}

    def run():
        loader_thread_init()
        result["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        result["threads"] = torch.get_num_threads()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert result == {"nice": 19, "threads": 1}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
