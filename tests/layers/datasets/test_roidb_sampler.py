import collections

import numpy as np
import pytest

from pyfrcnn_layers.datasets import Dataset
from pyfrcnn_layers.datasets.roidb import build_roidb, flip_boxes
from pyfrcnn_layers.datasets.sampler import Sampler
from pyfrcnn.errors import DataError


def record(image_id, width, height, boxes, labels, difficult, dontcare=()):
    return {"image_id": image_id, "path": f"/x/{image_id}.jpg", "width": width, "height": height,
            "boxes": np.array(boxes, np.float32).reshape(-1, 4),
            "labels": np.array(labels, np.int64), "difficult": np.array(difficult, bool),
            "dontcare": np.array(dontcare, np.float32).reshape(-1, 4)}


def toy():
    return Dataset("toy", ("a", "b"), [
        record("0", 10, 8, [[0, 1, 3, 5], [2, 2, 9, 7]], [1, 2], [False, True], [[5, 0, 9, 3]]),
        record("1", 6, 9, [[1, 1, 2, 2]], [2], [True]),   # only a difficult object
        record("2", 7, 7, [], [], []),                    # no object
    ])


def test_flip_by_hand():
    # Width 10: x1' = 10 - x2 - 1, x2' = 10 - x1 - 1.
    np.testing.assert_array_equal(flip_boxes(np.array([[0, 1, 3, 5], [2, 2, 9, 7]], np.float32), 10),
                                  [[6, 1, 9, 5], [0, 2, 7, 7]])
    assert flip_boxes(np.zeros((0, 4), np.float32), 10).shape == (0, 4)


def test_train_roidb_drops_difficult_skips_empty_and_appends_flips():
    roidb, skipped = build_roidb(toy(), "TRAIN", use_flipped=True)
    assert [(e.index, e.flipped) for e in roidb] == [(0, False), (0, True)]
    assert skipped == {"empty_images": 2, "difficult_objects": 2}
    original, flipped = roidb
    np.testing.assert_array_equal(original.boxes, [[0, 1, 3, 5]])
    np.testing.assert_array_equal(flipped.boxes, [[6, 1, 9, 5]])
    np.testing.assert_array_equal(flipped.dontcare, [[0, 0, 4, 3]])
    assert flipped.labels.tolist() == [1] and flipped.hard.tolist() == [False]


def test_train_roidb_options_and_test_roidb():
    roidb, _ = build_roidb(toy(), "TRAIN", use_flipped=False, use_difficult=True, skip_empty=False)
    assert [len(e.labels) for e in roidb] == [2, 1, 0]
    assert roidb[0].hard.tolist() == [False, True]
    roidb, _ = build_roidb(toy(), "TEST")
    assert [(e.index, e.flipped, len(e.labels)) for e in roidb] == [(0, False, 2), (1, False, 1),
                                                                     (2, False, 0)]


def visits(sampler, n):
    return [sampler.next() for _ in range(n)]


def test_shuffled_epochs_cover_every_entry_once():
    sampler = Sampler([10] * 7, [5] * 7, num_scales=3, seed=3)
    seen = visits(sampler, 14)
    assert sorted(i for i, _ in seen[:7]) == list(range(7))
    assert sorted(i for i, _ in seen[7:]) == list(range(7))
    assert sampler.epoch == 1 and seen[:7] != seen[7:]
    assert {s for _, s in seen} <= {0, 1, 2} and len({s for _, s in seen}) > 1
    assert visits(Sampler([10] * 7, [5] * 7, num_scales=3, seed=3), 14) == seen
    assert visits(Sampler([10] * 7, [5] * 7, num_scales=3, seed=4), 14) != seen


def test_aspect_grouping_pairs_like_aspects():
    widths = [10, 5, 10, 5, 10, 5, 10, 5, 10, 10]   # 6 landscape, 4 portrait
    heights = [5, 10, 5, 10, 5, 10, 5, 10, 5, 5]
    for seed in range(5):
        sampler = Sampler(widths, heights, seed=seed, aspect_grouping=True)
        order = [i for i, _ in visits(sampler, 10)]
        assert sorted(order) == list(range(10))
        landscape = [widths[i] >= heights[i] for i in order]
        assert all(landscape[k] == landscape[k + 1] for k in range(0, 10, 2))


def test_test_order_is_sequential_and_wraps():
    sampler = Sampler([1] * 3, [1] * 3, num_scales=2, shuffle=False)
    assert visits(sampler, 5) == [(0, 0), (1, 0), (2, 0), (0, 0), (1, 0)]


def test_state_resumes_the_exact_sequence():
    sampler = Sampler([10, 5, 10, 5, 10], [5, 10, 5, 10, 5], num_scales=2, seed=0,
                      aspect_grouping=True)
    visits(sampler, 3)
    state = sampler.state()
    expected = visits(sampler, 9)  # crosses an epoch boundary
    other = Sampler([10, 5, 10, 5, 10], [5, 10, 5, 10, 5], num_scales=2, seed=99,
                    aspect_grouping=True)
    other.set_state(collections.OrderedDict(state))
    assert visits(other, 9) == expected
    with pytest.raises(DataError, match="covers 5 images but the dataset now has 4"):
        Sampler([1] * 4, [1] * 4).set_state(state)
