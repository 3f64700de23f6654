"""`pyfrcnn plot`: a resumed run is one curve; Caffe's `caffe train` logs plot too."""

import json

import pytest

from pyfrcnn import plot

# py-faster-rcnn's Caffe (old) and newer Caffe ("(N iter/s, ...)") write these lines.
CAFFE_LOG = """\
I0522 10:15:17.123456  1234 solver.cpp:228] Iteration 0, loss = 4.5
I0522 10:15:17.123456  1234 solver.cpp:244]     Train net output #0: loss_bbox = 0.1 (* 1 = 0.1 loss)
I0522 10:15:17.123456  1234 solver.cpp:244]     Train net output #1: loss_cls = 3 (* 1 = 3 loss)
I0522 10:15:17.123456  1234 sgd_solver.cpp:106] Iteration 0, lr = 0.001
I0522 10:15:27.123456  1234 solver.cpp:228] Iteration 20 (2.01 iter/s, 9.95s/20 iters), loss = 1.5e+00
I0522 10:15:27.123456  1234 solver.cpp:244]     Train net output #0: loss_bbox = 0.05 (* 1 = 0.05 loss)
I0522 10:15:27.123456  1234 sgd_solver.cpp:106] Iteration 20, lr = 0.0001
I0522 10:15:28.123456  1234 solver.cpp:341] Iteration 40, Testing net (#0)
I0522 10:15:29.123456  1234 solver.cpp:409]     Test net output #0: accuracy = 0.75
I0522 10:15:29.123456  1234 solver.cpp:409]     Test net output #1: loss = 0.9 (* 1 = 0.9 loss)
"""


def test_a_caffe_log_reads_as_metrics_records(tmp_path):
    path = tmp_path / "caffe.log"
    path.write_text(CAFFE_LOG)
    records = plot.read_records(str(path))
    assert records == [
        {"step": 0, "kind": "train", "loss": 4.5, "lr": 0.001,
         "outputs": {"loss_bbox": 0.1, "loss_cls": 3.0}},
        {"step": 20, "kind": "train", "loss": 1.5, "lr": 0.0001, "outputs": {"loss_bbox": 0.05}},
        {"step": 40, "kind": "test", "metrics": {"accuracy": 0.75, "loss": 0.9}},
    ]


def test_our_train_log_reads_as_its_metrics_file(tmp_path, capsys):
    from pyfrcnn import cli
    from tests.engine.netlib import write_run

    path = write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 4\ndevice: cpu\n"
                                    "tensorboard: false\ndisplay: 2\n")
    assert cli.main(["solve", path, "--out", str(tmp_path / "run")]) == 0
    from_log = plot.read_caffe_log(str(tmp_path / "run" / "train.log"))
    from_metrics = plot.read_metrics(str(tmp_path / "run" / "metrics.jsonl"))
    assert [(r["step"], r["lr"], sorted(r["outputs"])) for r in from_log] == \
        [(r["step"], r["lr"], sorted(r["outputs"])) for r in from_metrics]
    for a, b in zip(from_log, from_metrics):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


def test_a_resumed_run_is_one_curve(tmp_path):
    # steps 0..40, then a resume from the snapshot at 20 appends 20..60 again
    first = [{"step": s, "kind": "train", "loss": 1.0, "lr": 0.1} for s in (0, 10, 20, 30, 40)]
    second = [{"step": s, "kind": "train", "loss": 2.0, "lr": 0.1} for s in (20, 30, 40, 50, 60)]
    tests = [{"step": 40, "kind": "test", "metrics": {"mAP": 0.1}},
             {"step": 40, "kind": "test", "metrics": {"mAP": 0.2}}]
    records = first + tests[:1] + second + tests[1:]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    figures = plot.series(plot.read_records(str(tmp_path)))
    steps, values = figures["loss"]["loss (smoothed)"]
    assert steps == [0, 10, 20, 30, 40, 50, 60]  # never backwards
    assert values == [1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]
    assert figures["test"]["mAP"] == ([40], [0.2])
