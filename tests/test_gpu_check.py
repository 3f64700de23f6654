"""benchmarks/gpu_check.sh --cpu: the GPU check's every step, tiny, on the CPU,
so that the script is ready the day it runs on a GPU."""

import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_DIR

STEPS = ["environment", "cuda_tests", "vgg16_step", "vgg16_test", "time_cli", "bench_vs_torchvision",
         "fast_batches", "main_job"]


@pytest.mark.slow
def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    out = tmp_path / "gpu check"  # a space: the script quotes its paths
    env = dict(os.environ, PYTHON=sys.executable)
    env.pop("PYTHONPATH", None)  # the script sets up its own path
    result = subprocess.run(["bash", str(REPO_DIR / "benchmarks" / "gpu_check.sh"), "--cpu", str(out)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    steps = summary["steps"]
    assert list(steps) == STEPS, result.stdout + result.stderr
    assert summary["mode"] == "cpu" and summary["finished"]

    bench = steps.pop("bench_vs_torchvision")
    if not (REPO_DIR / "benchmarks" / "bench_vs_torchvision.py").exists():
        assert bench["status"] == "missing"
    elif importlib.util.find_spec("torchvision") is not None:
        assert bench["status"] == "ok", (out / "bench_vs_torchvision.log").read_text()
    for name, record in steps.items():
        assert record["status"] == "ok", f"{name}: {(out / record['log']).read_text()[-2000:]}"
        assert (out / record["log"]).exists() and record["seconds"] > 0
    assert result.returncode == (0 if bench["status"] in ("ok", "missing") else 1)

    env_info = steps["environment"]
    assert env_info["pyfrcnn_pb2"] == "ok" and env_info["cuda_available"] is False
    tests = steps["cuda_tests"]
    assert tests["failed"] == 0 and tests["skipped"] == tests["tests"] > 0  # no GPU here
    job = steps["main_job"]
    assert 0.0 <= job["map"] <= 1.0 and job["wall_s"] > job["train_s"] > 0 and job["images_per_s"] > 0
    assert (out / "main_job" / "metrics.jsonl").exists()
    step = steps["vgg16_step"]
    assert step["blob"] == [1, 3, 64, 96] and step["steps"] == 2 and step["rois"] > 0
    assert 0 < step["min_s"] <= step["median_s"] and math.isfinite(step["loss"])
    test = steps["vgg16_test"]
    assert test["median_ms"] > 0 and test["device"] == "cpu"
    assert steps["time_cli"]["forward_backward_ms"] > 0
    batches = steps["fast_batches"]["images_per_s"]
    assert sorted(batches) == ["1", "1-nchw", "2", "4"]
    assert all(v["prepared_images_per_s"] > 0 and v["solve_images_per_s"] > 0 for v in batches.values())

    table = result.stdout.splitlines()
    assert table[-len(STEPS) - 1].startswith("GPU check (cpu)")
    assert all(any(line.split()[0] == name for line in table[-len(STEPS):]) for name in STEPS)


def test_device_waits_are_counted_by_our_source_line(monkeypatch):
    # torch.cuda.set_sync_debug_mode("warn") makes each wait for the GPU a
    # warning; here warnings stand in for them (no GPU on this machine).
    import warnings

    import torch

    sys.path.insert(0, str(REPO_DIR / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    modes = []
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", modes.append)

    def step():
        for _ in range(3):
            warnings.warn("called a synchronizing CUDA operation")
        warnings.warn("called a synchronizing CUDA operation")

    waits = gpu_check.device_waits(step)
    assert modes == ["warn", 0] and waits["device_waits_per_step"] == 4
    lines = sorted(int(site.split(":")[1]) for site in waits["device_waits"])
    assert [waits["device_waits"][f"tests/test_gpu_check.py:{n}"] for n in lines] == [3, 1]
