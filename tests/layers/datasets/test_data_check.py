import argparse
import os

from pyfrcnn_layers import data_check

from .fixtures import make_voc, write_image


def args_for(*argv):
    parser = argparse.ArgumentParser()
    data_check.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_report_counts_and_lists_failures(tmp_path, capsys):
    folder = make_voc(tmp_path / "VOC", {
        "a": (30, 20, [("cat", 1, 1, 10, 10), ("cat", -3, 2, 12, 12), ("dog", 5, 5, 9, 9, 1)]),
        "b": (30, 20, [("dog", 40, 1, 50, 10)]),        # outside: dropped, image left empty
        "c": (30, 20, [("cat", 1, 1, 10, 10)]),          # its image is corrupt
        "d": (30, 20, [("cat", 1, 1, 10, 10)]),          # its image has the wrong size
        "e": "<annotation>",                               # garbled
    }, classes=["cat", "dog"])
    with open(os.path.join(folder, "JPEGImages", "c.jpg"), "wb") as f:
        f.write(b"\xff\xd8 broken")
    write_image(os.path.join(folder, "JPEGImages", "d.jpg"), 31, 20)

    report = data_check.check_dataset(f"voc:{folder}:train", cache_dir=tmp_path / "cache")
    assert report.images == 4 and report.images_checked == 4
    assert report.objects_per_class == {"cat": 4, "dog": 1}
    assert report.difficult == 1 and report.empty_images == 1
    assert report.boxes_clipped == 1 and report.boxes_dropped == 1
    reasons = dict(report.failures)
    assert set(reasons) == {os.path.join(folder, "Annotations", "e.xml"),
                            os.path.join(folder, "JPEGImages", "c.jpg"),
                            os.path.join(folder, "JPEGImages", "d.jpg")}
    assert "not valid XML" in reasons[os.path.join(folder, "Annotations", "e.xml")]
    assert "cannot read image" in reasons[os.path.join(folder, "JPEGImages", "c.jpg")]
    assert "31x20 but its annotation says 30x20" in reasons[os.path.join(folder, "JPEGImages", "d.jpg")]
    assert not report.ok

    assert data_check.run(args_for(f"voc:{folder}:train", "--cache-dir", str(tmp_path / "c"))) == 1
    printed = capsys.readouterr().out
    assert "cat  4" in printed and "failed files: 3" in printed and "FAILED" in printed


def test_clean_dataset_passes(tmp_path, capsys):
    folder = make_voc(tmp_path / "VOC", {"a": (30, 20, [("cat", 1, 1, 10, 10)])},
                      classes=["cat"])
    assert data_check.run(args_for(f"voc:{folder}:train", "--workers", "0",
                                   "--cache-dir", str(tmp_path / "c"))) == 0
    assert capsys.readouterr().out.rstrip().endswith("OK")


def test_unopenable_dataset_is_status_1(tmp_path, capsys):
    assert data_check.run(args_for("voc_2007_trainval", "--root", str(tmp_path))) == 1
    assert "VOCdevkit2007" in capsys.readouterr().err
