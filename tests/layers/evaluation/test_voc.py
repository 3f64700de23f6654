"""VOC AP against a slow, obvious implementation written here with plain loops,
and against values worked out by hand."""

import math
import random

import numpy as np
import pytest

from pyfrcnn_layers.evaluation import evaluate
from pyfrcnn_layers.evaluation.voc import class_ap, evaluate_voc, voc_ap

CLASSES = ["__background__", "cat", "dog", "bird"]


# -- the slow reference ---------------------------------------------------

def slow_iou(a, b):
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area_a = (a[2] - a[0] + 1) * (a[3] - a[1] + 1)
    area_b = (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area_a + area_b - inter)


def slow_ap(dets, objects, use_07_metric):
    """dets: [(image, box, score)]; objects: [(image, box, difficult)] of one class."""
    num_positives = sum(1 for _, _, difficult in objects if not difficult)
    if num_positives == 0:
        return math.nan
    ranked = sorted(range(len(dets)), key=lambda i: -dets[i][2])  # sorted() is stable
    taken = [False] * len(objects)
    outcomes = []  # 'tp', 'fp' or 'ignored', best score first
    for i in ranked:
        image, box, _ = dets[i]
        best, best_iou = None, -1.0
        for g, (gt_image, gt_box, _) in enumerate(objects):
            if gt_image == image:
                iou = slow_iou(box, gt_box)
                if iou > best_iou:
                    best, best_iou = g, iou
        if best is None or best_iou <= 0.5:
            outcomes.append("fp")
        elif objects[best][2]:
            outcomes.append("ignored")
        elif taken[best]:
            outcomes.append("fp")
        else:
            taken[best] = True
            outcomes.append("tp")
    # Ignored detections take no place in the ranking.
    outcomes = [o for o in outcomes if o != "ignored"]
    precisions, recalls = [], []
    tp = 0
    for k, outcome in enumerate(outcomes):
        tp += outcome == "tp"
        precisions.append(tp / (k + 1))
        recalls.append(tp / num_positives)
    if use_07_metric:
        total = 0.0
        for step in range(11):
            t = step * 0.1  # voc_eval's thresholds: 6 * 0.1 > 0.6 (see the test below)
            best = 0.0
            for p, r in zip(precisions, recalls):
                if r >= t and p > best:
                    best = p
            total += best / 11
        return total
    # Area: each true positive adds 1 / num_positives of recall, at the best
    # precision reached at that rank or any later one.
    total = 0.0
    for k, outcome in enumerate(outcomes):
        if outcome == "tp":
            total += max(precisions[k:]) / num_positives
    return total


def as_inputs(dets, objects, label=1):
    """The slow reference's lists as detection records and annotations."""
    records = [{"image_id": image, "class": CLASSES[label], "bbox": list(box), "score": score}
               for image, box, score in dets]
    images = sorted({image for image, _, _ in objects} | {image for image, _, _ in dets})
    annotations = []
    for image in images:
        mine = [(box, difficult) for i, box, difficult in objects if i == image]
        boxes = np.array([b for b, _ in mine], dtype=np.float32).reshape(-1, 4)
        annotations.append({"image_id": image, "width": 100, "height": 100, "boxes": boxes,
                            "labels": np.full(len(mine), label, dtype=np.int64),
                            "difficult": np.array([d for _, d in mine], dtype=bool)})
    return records, annotations


def our_ap(dets, objects, use_07_metric):
    records, annotations = as_inputs(dets, objects)
    return evaluate_voc(records, annotations, CLASSES, use_07_metric)["ap"]["cat"]


def random_case(rng):
    objects, dets = [], []
    for image in range(rng.randint(1, 4)):
        for _ in range(rng.randint(0, 4)):
            x, y = rng.randint(0, 60), rng.randint(0, 60)
            box = (x, y, x + rng.randint(5, 30), y + rng.randint(5, 30))
            objects.append((image, box, rng.random() < 0.2))
            for _ in range(rng.randint(0, 3)):  # near-duplicates of the object
                jitter = [v + rng.randint(-6, 6) for v in box]
                jitter[2], jitter[3] = max(jitter[2], jitter[0]), max(jitter[3], jitter[1])
                dets.append((image, tuple(jitter), rng.randint(0, 10) / 10))  # many ties
        for _ in range(rng.randint(0, 2)):  # background detections
            x, y = rng.randint(0, 80), rng.randint(0, 80)
            dets.append((image, (x, y, x + 10, y + 10), rng.randint(0, 10) / 10))
    return dets, objects


# -- against the slow reference ---------------------------------------------

@pytest.mark.parametrize("use_07_metric", [True, False])
def test_random_cases_match_the_slow_reference(use_07_metric):
    rng = random.Random(0)
    checked = 0
    for _ in range(150):
        dets, objects = random_case(rng)
        expected = slow_ap(dets, objects, use_07_metric)
        actual = our_ap(dets, objects, use_07_metric)
        if math.isnan(expected):
            assert math.isnan(actual)
        else:
            assert actual == pytest.approx(expected, abs=1e-12), (dets, objects)
            checked += 1
    assert checked > 100


def test_slow_reference_and_ours_see_the_same_hard_cases():
    a, b = (0, 0, 9, 9), (0, 0, 9, 10)
    cases = [
        # a difficult object matched first, then a normal one
        ([(0, a, 0.9), (1, a, 0.8)], [(0, a, True), (1, a, False)]),
        # duplicates
        ([(0, a, 0.9), (0, a, 0.8), (0, a, 0.7)], [(0, a, False)]),
        # the best match is already taken: a false positive though b would match
        ([(0, a, 0.9), (0, a, 0.8)], [(0, a, False), (0, b, False)]),
        # an image with objects and no detections
        ([(0, a, 0.9)], [(0, a, False), (1, a, False), (1, b, False)]),
    ]
    for dets, objects in cases:
        for metric in (True, False):
            assert our_ap(dets, objects, metric) == pytest.approx(slow_ap(dets, objects, metric))


# -- hand-worked values -----------------------------------------------------

def test_hand_worked_ranking():
    # 3 objects; ranked TP, FP, TP, FP: precision 1, 1/2, 2/3, 1/2 at recall 1/3, 1/3, 2/3, 2/3
    g1, g2, g3 = (0, 0, 9, 9), (20, 20, 39, 39), (50, 50, 59, 69)
    objects = [(0, g1, False), (0, g2, False), (1, g3, False)]
    dets = [(0, g1, 0.9), (1, (70, 70, 79, 79), 0.8), (0, g2, 0.7), (0, (0, 50, 9, 59), 0.6)]
    # area: 1/3 x 1 + 1/3 x 2/3 = 5/9; 11-point: recall >= 0, .1, .2, .3 reach precision 1,
    # recall >= .4, .5, .6 reach 2/3, recall >= .7 .. 1 is never reached: (4 + 3 x 2/3) / 11
    assert our_ap(dets, objects, False) == pytest.approx(5 / 9)
    assert our_ap(dets, objects, True) == pytest.approx(6 / 11)


def test_difficult_objects_are_neither_true_nor_false_positives():
    a, b = (0, 0, 9, 9), (30, 30, 49, 49)
    objects = [(0, a, True), (0, b, False)]
    # the top detection finds the difficult object: ignored, not a false positive,
    # and the difficult object does not count in the recall
    dets = [(0, a, 0.9), (0, b, 0.8)]
    assert our_ap(dets, objects, False) == 1.0
    assert our_ap(dets, objects, True) == pytest.approx(1.0)
    # a second detection of the difficult object is ignored too (not a duplicate)
    assert our_ap([(0, a, 0.9), (0, a, 0.85), (0, b, 0.8)], objects, True) == pytest.approx(1.0)


def test_duplicates_are_false_positives():
    a = (0, 0, 9, 9)
    # TP then FP: precision 1 at recall 1, the duplicate comes after: AP 1
    assert our_ap([(0, a, 0.9), (0, a, 0.8)], [(0, a, False)], False) == 1.0
    # two objects, ranked TP, duplicate, TP: precision 1, 1/2, 2/3 -> 1/2 x 1 + 1/2 x 2/3
    b = (40, 40, 59, 59)
    dets = [(0, a, 0.9), (0, a, 0.8), (0, b, 0.7)]
    assert our_ap(dets, [(0, a, False), (0, b, False)], False) == pytest.approx(5 / 6)


def test_taken_best_match_is_a_false_positive_even_if_another_object_fits():
    a, b = (0, 0, 9, 9), (0, 0, 9, 10)  # IoU(a, b) = 100 / 110
    dets = [(0, a, 0.9), (0, a, 0.8)]
    # the second detection's best object (a) is taken: FP; b is never found
    # precision 1, 1/2 at recall 1/2, 1/2 -> area 1/2
    assert our_ap(dets, [(0, a, False), (0, b, False)], False) == pytest.approx(0.5)


def test_iou_of_exactly_one_half_is_not_a_match():
    gt = (0, 0, 9, 9)        # 10 x 10 pixels (inclusive corners)
    half = (0, 0, 9, 4)      # 10 x 5: IoU = 50 / 100 exactly
    more = (0, 0, 9, 5)      # 10 x 6: IoU = 60 / 100
    assert our_ap([(0, half, 0.9)], [(0, gt, False)], False) == 0.0
    assert our_ap([(0, more, 0.9)], [(0, gt, False)], False) == 1.0
    # a box that matches only with the +1 convention: 3 x 3 pixels inside 4 x 4
    # (IoU 9 / 16 with +1; without it 4 / 9, below the threshold)
    gt_small, det_small = (0, 0, 3, 3), (0, 0, 2, 2)
    assert our_ap([(0, det_small, 0.9)], [(0, gt_small, False)], False) == 1.0


def test_ties_in_score_keep_the_order_given():
    a = (0, 0, 9, 9)
    miss = (50, 50, 59, 59)
    objects = [(0, a, False)]
    # FP listed first: precision 0 then 1/2 at recall 1 -> area 1/2
    assert our_ap([(0, miss, 0.5), (0, a, 0.5)], objects, False) == pytest.approx(0.5)
    # TP listed first: AP 1
    assert our_ap([(0, a, 0.5), (0, miss, 0.5)], objects, False) == pytest.approx(1.0)


def test_images_without_detections_and_classes_without_objects():
    a = np.array([[0, 0, 9, 9]], dtype=np.float32)
    annotations = [
        {"image_id": "000001", "boxes": a, "labels": np.array([1]), "difficult": np.array([False])},
        {"image_id": "000002", "boxes": a, "labels": np.array([2]), "difficult": np.array([False])},
        {"image_id": "000003", "boxes": np.zeros((0, 4), np.float32),
         "labels": np.zeros(0, np.int64), "difficult": np.zeros(0, bool)},
    ]
    dets = [{"image_id": "000001", "class": "cat", "bbox": [0, 0, 9, 9], "score": 0.9},
            {"image_id": "000003", "class": "bird", "bbox": [0, 0, 9, 9], "score": 0.9}]
    result = evaluate(dets, annotations, CLASSES, "voc07")
    assert result["ap"]["cat"] == pytest.approx(1.0)
    assert result["ap"]["dog"] == 0.0               # an object, never detected
    assert math.isnan(result["ap"]["bird"])         # no object at all: undefined
    assert result["mAP"] == pytest.approx(0.5)      # mean over cat and dog only
    assert result["metric"] == "voc07"


def test_eleven_point_thresholds_are_voc_evals_floats():
    # 5 objects, all found with precision 1: recall 1/5 .. 5/5. A recall of exactly
    # 3/5 does not reach voc_eval's t = 0.6000000000000001, but 4/5 does, so the
    # curve is still 1 everywhere; with a miss ranked between, it shows.
    boxes = [(20 * i, 0, 20 * i + 9, 9) for i in range(5)]
    objects = [(0, b, False) for b in boxes]
    all_found = [(0, b, 1 - i / 10) for i, b in enumerate(boxes)]
    assert our_ap(all_found, objects, True) == pytest.approx(1.0)
    # TP TP TP FP(miss) TP TP: recall .2 .4 .6 .6 .8 1 with precision 1 1 1 3/4 4/5 5/6.
    # t = 0 .. .5 -> 1 (6 points); t = .6 + epsilon misses recall 3/5, so t = .6 .. 1
    # reach at best 5/6 (5 points). With an exact t = .6 it would be 1.
    miss = (0, 50, 9, 59)
    dets = [(0, b, 1 - i / 10) for i, b in enumerate(boxes[:3])] + [(0, miss, 0.65)] + \
        [(0, b, 0.6 - i / 10) for i, b in enumerate(boxes[3:])]
    expected = (6 + 5 * 5 / 6) / 11
    assert our_ap(dets, objects, True) == pytest.approx(expected)
    assert slow_ap(dets, objects, True) == pytest.approx(expected)


def test_only_difficult_objects_make_an_undefined_ap():
    a = (0, 0, 9, 9)
    assert math.isnan(our_ap([(0, a, 0.9)], [(0, a, True)], True))


def test_voc_ap_on_a_given_curve():
    recall = np.array([0.2, 0.4, 0.4, 0.8])
    precision = np.array([1.0, 1.0, 0.5, 0.6])
    # area: .4 x 1 + .4 x .6; 11-point: t = 0 .. .4 -> 1 (5 points), .5 .. .8 -> .6 (4 points)
    assert voc_ap(recall, precision) == pytest.approx(0.64)
    assert voc_ap(recall, precision, use_07_metric=True) == pytest.approx((5 + 4 * 0.6) / 11)
    assert voc_ap(np.zeros(0), np.zeros(0)) == 0.0


def test_class_ap_returns_the_curve():
    gt = {0: (np.array([[0, 0, 9, 9], [20, 20, 29, 29]]), np.array([False, False]))}
    recall, precision, ap = class_ap([0, 0], [[0, 0, 9, 9], [50, 50, 55, 55]], [0.2, 0.7], gt)
    np.testing.assert_allclose(recall, [0.0, 0.5])
    np.testing.assert_allclose(precision, [0.0, 0.5])
    assert ap == pytest.approx(0.25)


def test_ground_truth_is_scored_as_given_not_clipped():
    # A 100 x 50 object on a 50 x 50 image: the dataset clips it to 50 x 50 for
    # training, voc_eval scores the XML's box. A detection of the clipped box has
    # IoU 2500 / 5000 = 0.5 with the given one: not a match, as in voc_eval.
    from pyfrcnn_layers.datasets.base import RecordBuilder

    builder = RecordBuilder()
    builder.add("a", "a.jpg", 50, 50, [[0, 0, 99, 49]], [1], [False])
    ann = builder.dataset("toy", CLASSES).annotation(0)
    assert ann["boxes"].tolist() == [[0, 0, 49, 49]]
    assert ann["eval_boxes"].tolist() == [[0, 0, 99, 49]]
    dets = [{"image_id": "a", "class": "cat", "bbox": [0.0, 0.0, 49.0, 49.0], "score": 0.9},
            {"image_id": "a", "class": "cat", "bbox": [0.0, 0.0, 98.0, 49.0], "score": 0.8}]
    result = evaluate_voc(dets, [ann], CLASSES, use_07_metric=False)
    assert result["ap"]["cat"] == pytest.approx(0.5)  # FP then TP: precision 1/2 at recall 1


def test_scores_as_the_voc_results_files_hold_them():
    # 0.9004 and 0.9001 both become 0.900 in the results files: tied, the first
    # given (a miss, FP) goes first, where the raw scores rank the TP first.
    objects = [("a", (0, 0, 9, 9), False)]
    dets = [("a", (0, 0, 30, 30), 0.9001), ("a", (0, 0, 9, 9), 0.9004)]
    records, annotations = as_inputs(dets, objects)
    raw = evaluate(records, annotations, CLASSES, "voc")["ap"]["cat"]
    as_written = evaluate(records, annotations, CLASSES, "voc", as_voc_results=True)["ap"]["cat"]
    assert raw == pytest.approx(1.0) and as_written == pytest.approx(0.5)
