"""`pyfrcnn solve --cfg`: py-faster-rcnn's cfg files mapped onto our sections."""

import logging

import yaml

from pyfrcnn import cli, registry
from pyfrcnn.cfg_file import read_cfg
from tests.engine.netlib import write_run


def test_the_end2end_cfg_maps_onto_detection(reference_dir):
    overrides, out, device = read_cfg(str(reference_dir / "faster_rcnn_end2end.yml"),
                                      registry.config_sections())
    assert out == "output/faster_rcnn_end2end" and device is None
    assert "detection.TRAIN.RPN_BATCHSIZE=256" in overrides
    assert "detection.TRAIN.BG_THRESH_LO=0.0" in overrides
    assert "detection.TRAIN.BBOX_NORMALIZE_TARGETS_PRECOMPUTED=true" in overrides
    assert "detection.TEST.HAS_RPN=true" in overrides


def test_tuples_seeds_pixel_means_and_meaningless_keys(tmp_path, caplog):
    path = tmp_path / "cfg.yml"
    path.write_text("RNG_SEED: 7\nPIXEL_MEANS: [[[100.0, 110.0, 120.0]]]\nUSE_GPU_NMS: False\n"
                    "TRAIN:\n  SCALES: !!python/tuple [400, 500]\n  NO_SUCH: 1\nGPU_ID: 2\n")
    with caplog.at_level(logging.WARNING):
        overrides, out, device = read_cfg(str(path), registry.config_sections())
    assert "random_seed=7" in overrides and "detection.RNG_SEED=7" in overrides
    assert "detection.PIXEL_MEANS=[100.0, 110.0, 120.0]" in overrides
    assert "detection.TRAIN.SCALES=[400, 500]" in overrides and device == "cuda:2"
    assert "USE_GPU_NMS, TRAIN.NO_SUCH mean nothing to pyfrcnn" in caplog.text


def test_solve_with_a_cfg(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    write_run(str(tmp_path), "base_lr: 0.01\nmax_iter: 1\ndevice: cpu\ntensorboard: false\n")
    (tmp_path / "cfg.yml").write_text("EXP_DIR: exp\nRNG_SEED: 5\nTRAIN:\n  SCALES: [100]\n")
    assert cli.main(["solve", "solver.yaml", "--cfg", "cfg.yml", "--set", "random_seed=6"]) == 0
    resolved = yaml.safe_load((tmp_path / "output" / "exp" / "solver.yaml").read_text())
    assert resolved["random_seed"] == 6  # the command line's --set wins
    assert resolved["detection"]["TRAIN"]["SCALES"] == [100]
    status = cli.main(["solve", "solver.yaml", "--cfg", "cfg.yml"])
    err = capsys.readouterr().err
    assert status == 1 and "`pyfrcnn solve solver.yaml --cfg cfg.yml --resume auto`" in err
