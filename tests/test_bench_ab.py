"""benchmarks/bench_ab.py at a tiny scale: both sides run and the ratio is printed."""

import re

from benchmarks import bench_ab
from tests.conftest import REPO_DIR


def test_two_settings_interleaved(tmp_path, capsys):
    tiny = [f"data.cache_dir={tmp_path / 'cache'}", "data.shapes.train_images=8",
            "data.shapes.test_images=2", "data.workers=0", "detection.TRAIN.SCALES=[64]",
            "detection.TRAIN.MAX_SIZE=96"]
    args = [str(REPO_DIR / "solvers" / "shapes_solver.yaml"), "--rounds", "4", "--warmup", "1",
            "--out", str(tmp_path / "out")]
    args += [v for key in tiny for v in ("--a", key)]
    args += [v for key in tiny + ["channels_last=false"] for v in ("--b", key)]
    assert bench_ab.main(args) == 0
    out = capsys.readouterr().out
    assert "B data.cache_dir=" in out and "channels_last=false" in out
    ratio = float(re.search(r"paired ratios ([0-9.]+)", out).group(1))
    assert 0.1 < ratio < 10
