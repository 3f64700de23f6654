"""The detections file: round trip, VOC results files and error messages."""

import json

import pytest

from pyfrcnn_layers.evaluation.detections import (check_detections, read_detections, write_detections,
                                          write_voc_results)
from pyfrcnn.errors import DataError

CLASSES = ["__background__", "aeroplane", "bicycle", "bird"]
DETS = [
    {"image_id": "000001", "class": "bird", "bbox": [10.0, 20.5, 30.0, 40.0], "score": 0.875},
    {"image_id": "000004", "class": "aeroplane", "bbox": [0.0, 0.0, 499.0, 374.0], "score": 0.05},
    {"image_id": "000001", "class": "bird", "bbox": [1.25, 2.0, 3.0, 4.0], "score": 0.3},
]


def write_json(tmp_path, payload, name="dets.json"):
    path = tmp_path / name
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path


def test_round_trip(tmp_path):
    path = tmp_path / "out" / "detections.json"
    write_detections(path, DETS)
    assert json.loads(path.read_text()) == DETS      # plain JSON any tool can read
    assert read_detections(path) == DETS
    write_detections(path, [])
    assert read_detections(path) == []


def test_integer_ids_and_scores_are_accepted(tmp_path):
    path = write_json(tmp_path, [{"image_id": 397133, "class": "bird", "bbox": [1, 2, 3, 4],
                                  "score": 1}])
    (det,) = read_detections(path)
    assert det == {"image_id": 397133, "class": "bird", "bbox": [1.0, 2.0, 3.0, 4.0],
                   "score": 1.0}


@pytest.mark.parametrize("payload, message", [
    ("[{", r"dets\.json:1:3: not valid JSON"),
    ({"image_id": 1}, "expected a JSON list of detections, got a dict"),
    ([{"image_id": "a", "class": "bird", "bbox": [1, 2, 3, 4]}], "detection 0: missing score"),
    ([{"image_id": "a", "class": "bird", "bbox": [1, 2, 3, 4], "score": 1, "scroe": 2}],
     "unknown key.*scroe.*did you mean 'score'"),
    ([{"image_id": "a", "class": "bird", "bbox": [1, 2, 3], "score": 1}], "bbox must be 4"),
    ([{"image_id": "a", "class": "bird", "bbox": [5, 2, 3, 4], "score": 1}], "x2 < x1"),
    ([{"image_id": "a", "class": "bird", "bbox": [1, 2, 3, 4], "score": "high"}],
     "score must be a number"),
    ([{"image_id": "a", "class": 3, "bbox": [1, 2, 3, 4], "score": 1}], "class must be a class"),
    ([{"image_id": None, "class": "bird", "bbox": [1, 2, 3, 4], "score": 1}], "image_id must"),
    ([1], "detection 0: expected an object"),
])
def test_bad_files_name_the_file_and_the_record(tmp_path, payload, message):
    path = write_json(tmp_path, payload)
    with pytest.raises(DataError, match=message) as info:
        read_detections(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such detections file"):
        read_detections(tmp_path / "nope.json")


def test_check_against_the_dataset():
    checked = check_detections(DETS, CLASSES, ["000001", "000004", "000005"])
    assert checked == DETS
    # a file may give integer ids for string ones (and the other way round)
    checked = check_detections([dict(DETS[0], image_id=1)], CLASSES, [1, 2])
    assert checked[0]["image_id"] == 1
    checked = check_detections([dict(DETS[0], image_id="2")], CLASSES, [1, 2])
    assert checked[0]["image_id"] == 2


def test_unknown_classes_are_named():
    dets = DETS + [dict(DETS[0], **{"class": c}) for c in ("brid", "__background__")]
    with pytest.raises(DataError, match=r"dets\.json: unknown class name\(s\) '__background__', "
                                        r"'brid' \(did you mean 'bird'\?\); the dataset's classes "
                                        r"are aeroplane, bicycle, bird"):
        check_detections(dets, CLASSES, ["000001", "000004"], source="dets.json")


def test_unknown_image_ids_are_named():
    dets = DETS + [dict(DETS[0], image_id=f"x{i}") for i in range(7)]
    with pytest.raises(DataError, match=r"dets\.json: 7 image id\(s\) not in the dataset: "
                                        r"'x0', 'x1', 'x2', 'x3', 'x4' and 2 more"):
        check_detections(dets, CLASSES, ["000001", "000004"], source="dets.json")


def test_voc_results_files(tmp_path):
    paths = write_voc_results(tmp_path, DETS, CLASSES)
    assert [p.rsplit("/", 1)[1] for p in paths] == [
        "comp4_det_test_aeroplane.txt", "comp4_det_test_bicycle.txt", "comp4_det_test_bird.txt"]
    # the devkit's 1-based coordinates, score to 3 places, coordinates to 1
    assert (tmp_path / "comp4_det_test_bird.txt").read_text() == (
        "000001 0.875 11.0 21.5 31.0 41.0\n"
        "000001 0.300 2.2 3.0 4.0 5.0\n")
    assert (tmp_path / "comp4_det_test_aeroplane.txt").read_text() == \
        "000004 0.050 1.0 1.0 500.0 375.0\n"
    assert (tmp_path / "comp4_det_test_bicycle.txt").read_text() == ""


def test_voc_results_records_are_what_the_results_files_hold(tmp_path):
    from pyfrcnn_layers.evaluation.detections import voc_results_records, write_voc_results

    classes = ["__background__", "cat", "dog"]
    dets = [{"image_id": "000005", "class": "cat", "bbox": [10.04, 20.06, 99.95, 50.0], "score": 0.98765},
            {"image_id": "000007", "class": "dog", "bbox": [0.0, 0.25, 3.33333, 4.5], "score": 0.0004999},
            {"image_id": "000007", "class": "cat", "bbox": [5.0, 5.0, 8.0, 9.0], "score": 0.12345}]
    write_voc_results(tmp_path, dets, classes)
    from_files = []
    for name in classes[1:]:
        for line in (tmp_path / f"comp4_det_test_{name}.txt").read_text().splitlines():
            image, score, *corners = line.split()
            from_files.append({"image_id": image, "class": name, "score": float(score),
                               "bbox": [float(v) - 1 for v in corners]})
    rounded = voc_results_records(dets)
    assert sorted(rounded, key=str) == sorted(from_files, key=str)
    assert [d["score"] for d in rounded] == [0.988, 0.0, 0.123]
    assert dets[0]["score"] == 0.98765  # the input is left alone
