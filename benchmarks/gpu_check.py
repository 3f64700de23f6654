"""Proves the GPU path in one run and writes every figure to one folder.

    python benchmarks/gpu_check.py --out gpu_check_out            # on a GPU
    python benchmarks/gpu_check.py --cpu --out /tmp/gpu_check_cpu # the same steps, tiny, on the CPU

benchmarks/gpu_check.sh is the way to run it (it sets up the Python path and
the carried wheels first). Steps, each a subprocess with its own timeout, all
inside one overall budget (480 s on a GPU, 180 s with --cpu); a step that
fails, times out or is missing is recorded and the next one runs:

  environment           versions of Python, torch, CUDA, cupy, protobuf; the GPU's name
  cuda_tests            pytest -m requires_cuda (CuPy roi_pool forward bit-equal to the
                        CPU path, backward <= 1e-6, CuPy NMS the same keeps, every layer
                        test's cuda case)
  vgg16_step            pyfrcnn's VGG16 end2end training step on a prepared 600x1000 blob
                        (one image, forward + backward + update): median of 20 after 5
                        warm-up steps, peak GPU memory, and the waits for the device in
                        one more step (torch.cuda.set_sync_debug_mode, by source line)
  vgg16_test            benchmarks/bench_inference.py on prototxt/vgg16/test.prototxt at
                        scale 600: ms/image
  time_cli              pyfrcnn time --device cuda on the fast test net
  bench_vs_torchvision  benchmarks/bench_vs_torchvision.py --device cuda --nets vgg16
                        --vgg16-steps 20: the same step beside torchvision's FasterRCNN
  fast_batches          benchmarks/bench_step.py on the fast net with TRAIN.IMS_PER_BATCH
                        1, 2 and 4: images/s of the prepared step and of the solve loop
                        (each step reads its losses back, so the clock sees the GPU's work);
                        and 1 with channels_last false ("1-nchw")
  main_job              pyfrcnn solve solvers/shapes_solver.yaml --device cuda to the end:
                        wall time, mAP, median s/step and images/s of the fast net; it
                        runs last, and the steps before it leave it RESERVE_S seconds

OUT/summary.json holds {"mode", "started", "budget_s", "steps": {name: {"status",
"seconds", "log", ...figures}}, "targets"}; it is rewritten after every step, so
a run cut short keeps what it measured. OUT/<step>.log holds each step's output.
The last lines printed are a short table of the figures.

With --cpu every step runs as on the GPU but tiny, to keep the script from
rotting (tests/test_gpu_check.py): a handful of shapes images and steps,
64 x 96 blobs, the CUDA tests of tests/ops/test_kernels.py only (they skip), and the fast net
standing in for VGG16 in vgg16_step, bench_vs_torchvision (--nets fast) and
vgg16_test (VGG16's 138M parameters alone cost seconds a step on a CPU; the
VGG16 nets' layers are checked on the CPU by tests/test_device.py and
tests/test_recipes.py).
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The targets on one H200, printed beside the figures.
TARGETS = {
    "vgg16_step_s": 0.06, "vgg16_step_vs_torchvision": 0.7, "vgg16_peak_memory_gb": 3.3,
    "vgg16_test_ms_per_image": 25.0, "main_job_wall_s": 60.0, "main_job_map": 0.90,
}

# In the order they run: name -> (timeout on a GPU, timeout with --cpu), seconds.
TIMEOUTS = {
    "environment": (60, 30), "cuda_tests": (120, 90), "vgg16_step": (75, 60),
    "vgg16_test": (50, 40), "time_cli": (30, 30), "bench_vs_torchvision": (120, 60),
    "fast_batches": (75, 60), "main_job": (270, 90),
}
# Seconds that the steps before the main job leave it, on a GPU (with --cpu):
# it generates its 1250 shapes images (about a minute), trains 2600 steps and
# tests 250 images.
RESERVE_S = (200, 30)


def tiny_shapes(cache):
    """Overrides that make the shapes data a handful of images in `cache`."""
    return ["--set", f"data.cache_dir={cache}", "--set", "data.shapes.train_images=8",
            "--set", "data.shapes.test_images=4", "--set", "data.workers=1"]


class Check:
    def __init__(self, out, cpu, budget, python):
        self.out = Path(out)
        self.cpu = cpu
        self.device = "cpu" if cpu else "cuda"
        self.python = python
        self.deadline = time.monotonic() + budget
        self.summary = {"mode": self.device, "started": datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds"), "budget_s": budget,
            "steps": {}, "targets": TARGETS}
        self.out.mkdir(parents=True, exist_ok=True)

    # -- running ------------------------------------------------------------
    def run(self, name, command, env=None):
        """Run `command` with the step's timeout (cut to the budget left);
        returns (record, stdout text). The record is in the summary already."""
        left = self.deadline - time.monotonic()
        if name != "main_job":
            left -= RESERVE_S[1 if self.cpu else 0]
        limit = min(TIMEOUTS[name][1 if self.cpu else 0], left)
        record = {"command": " ".join(str(c) for c in command), "log": f"{name}.log"}
        self.summary["steps"][name] = record
        if limit < 5:
            record.update(status="skipped", reason="the overall budget is spent")
            self.save()
            return record, ""
        log_path = self.out / f"{name}.log"
        start = time.monotonic()
        environment = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(f"$ {record['command']}\n")
            log.flush()
            try:
                result = subprocess.run([str(c) for c in command], cwd=REPO, env=environment,
                                        stdout=subprocess.PIPE, stderr=log, text=True,
                                        timeout=limit)
                stdout, returncode = result.stdout, result.returncode
                record["status"] = "ok" if returncode == 0 else "failed"
            except subprocess.TimeoutExpired as e:
                stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                returncode = None
                record["status"] = "timeout"
            log.write(stdout)
        record["seconds"] = round(time.monotonic() - start, 2)
        record["returncode"] = returncode
        record["timeout_s"] = round(limit, 1)
        self.save()
        return record, stdout

    def save(self):
        path = self.out / "summary.json"
        path.write_text(json.dumps(self.summary, indent=2, default=str) + "\n", encoding="utf-8")

    # -- steps --------------------------------------------------------------
    def environment(self):
        record, stdout = self.run("environment", [self.python, __file__, "--worker", "environment"])
        record.update(_last_json(stdout) or {})
        self.save()

    def cuda_tests(self):
        xml = self.out / "cuda_tests.xml"
        where = "tests/ops/test_kernels.py" if self.cpu else "tests"
        record, _ = self.run("cuda_tests", [self.python, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                            "-m", "requires_cuda", where, f"--junitxml={xml}"])
        counts = _junit_counts(xml)
        record.update(counts)
        if record["status"] == "ok" and not self.cpu and counts.get("passed", 0) == 0:
            record["status"] = "failed"
            record["reason"] = "no CUDA test ran (all skipped: is cupy importable?)"
        self.save()

    def main_job(self):
        run_dir = self.out / "main_job"
        command = [self.python, "-m", "pyfrcnn", "solve", "solvers/shapes_solver.yaml",
                   "--device", self.device, "--out", run_dir]
        if self.cpu:
            command += ["--set", "max_iter=4", "--set", "display=2", "--set", "average_loss=2",
                        "--set", "test_interval=4", "--set", "snapshot=0",
                        *tiny_shapes(self.out / "data_cache")]
        record, _ = self.run("main_job", command)
        record["wall_s"] = record["seconds"]
        record.update(_main_job_figures(run_dir / "metrics.jsonl"))
        self.save()

    def vgg16_step(self):
        sizes = (["--steps", "2", "--warmup", "1", "--scale", "64", "--max-size", "96",
                  "--solver", "solvers/shapes_solver.yaml"] if self.cpu
                 else ["--steps", "20", "--warmup", "5", "--scale", "600", "--max-size", "1000"])
        record, stdout = self.run("vgg16_step", [self.python, __file__, "--worker", "vgg16_step",
                                                 "--device", self.device, "--work-dir",
                                                 self.out / "vgg16_step", *sizes])
        record.update(_last_json(stdout) or {})
        self.save()

    def time_cli(self):
        command = [self.python, "-m", "pyfrcnn", "time", "prototxt/fast/test.prototxt", "--input-shape",
                   "data=1,3,96,128" if self.cpu else "data=1,3,320,480", "im_info=1,3",
                   "--device", self.device, "-n", "1" if self.cpu else "5", "--warmup",
                   "0" if self.cpu else "1"]
        record, stdout = self.run("time_cli", command)
        for line in stdout.splitlines():
            if line.startswith("Average Forward-Backward:"):
                record["forward_backward_ms"] = float(line.split()[2])
        self.save()

    def bench_vs_torchvision(self):
        script = REPO / "benchmarks" / "bench_vs_torchvision.py"
        path = self.out / "bench_vs_torchvision.json"
        if not script.exists():
            self.summary["steps"]["bench_vs_torchvision"] = {
                "status": "missing", "reason": f"{script.relative_to(REPO)} is not in this tree"}
            self.save()
            return
        # Its own few shapes images: the main job generates its data itself.
        sizes = (["--nets", "fast", "--steps", "2"] if self.cpu
                 else ["--nets", "vgg16", "--vgg16-steps", "20"])
        sizes += ["--set", f"data.cache_dir={self.out / 'bench_cache'}", "--set",
                  "data.shapes.train_images=16", "--set", "data.shapes.test_images=4"]
        record, _ = self.run("bench_vs_torchvision", [self.python, script, "--device", self.device,
                                                      *sizes, "--out", self.out / "bench_vs_torchvision",
                                                      "--json", path])
        if path.exists():
            try:
                record["result"] = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as e:
                record["result_error"] = f"{path.name}: {e}"
        self.save()

    def fast_batches(self):
        steps = ["--steps", "2", "--warmup", "1"] if self.cpu else ["--steps", "20", "--warmup", "3"]
        data = ["--set", f"data.cache_dir={self.out / 'bench_cache'}", "--set",
                "data.shapes.train_images=16", "--set", "data.shapes.test_images=4",
                "--set", f"device={self.device}"]
        if self.cpu:
            data += ["--set", "detection.TRAIN.SCALES=[64]", "--set", "detection.TRAIN.MAX_SIZE=96"]
        # N = 1, 2, 4 as the main job runs (channels last), and N = 1 in the N x C x H x W
        # layout: whether channels last pays on the GPU too.
        variants = [("1", 1, []), ("2", 2, []), ("4", 4, []), ("1-nchw", 1, ["channels_last=false"])]
        script = " ; ".join(
            f"echo N={label} && {shlex.quote(str(self.python))} benchmarks/bench_step.py "
            f"solvers/shapes_solver.yaml {' '.join(steps)} --block 5 "
            f"--out {shlex.quote(str(self.out / 'fast_batches'))} "
            f"--set detection.TRAIN.IMS_PER_BATCH={n} "
            + " ".join(shlex.quote(str(a)) for a in data + [v for key in extra for v in ("--set", key)])
            for label, n, extra in variants)
        record, stdout = self.run("fast_batches", ["bash", "-c", f"set -e; {script}"])
        batches, label, images = {}, None, {v[0]: v[1] for v in variants}
        for line in stdout.splitlines():
            if line.startswith("N="):
                label = line[2:].strip()
            cells = [c.strip() for c in line.strip("|").split("|")]
            if label in images and len(cells) == 3 and cells[0] in ("solve: step", "prepared: step"):
                key = "solve" if cells[0].startswith("solve") else "prepared"
                batches.setdefault(label, {})[f"{key}_images_per_s"] = round(
                    1000.0 * images[label] / float(cells[1]), 2)
        record["images_per_s"] = batches
        self.save()

    def vgg16_test(self):
        net = "prototxt/fast/test.prototxt" if self.cpu else "prototxt/vgg16/test.prototxt"
        sizes = (["--scale", "64", "--max-size", "96", "--image-size", "48x64", "--iters", "2",
                  "--warmup", "1"] if self.cpu
                 else ["--scale", "600", "--max-size", "1000", "--iters", "20", "--warmup", "3"])
        record, stdout = self.run("vgg16_test", [self.python, "benchmarks/bench_inference.py", net,
                                                 "--device", self.device, *sizes, "--json"])
        record.update(_last_json(stdout) or {})
        self.save()

    def report(self):
        steps = self.summary["steps"]
        lines = [f"GPU check ({self.summary['mode']}) -> {self.out}"]
        for name, record in steps.items():
            lines.append(f"  {name:<22}{record.get('status', '?'):<9}{record.get('seconds', 0):>8.1f} s"
                         f"  {_figures(name, record)}")
        return "\n".join(lines)


def _figures(name, record):
    """The step's headline figures, one line."""
    r = record
    if name == "environment":
        return (f"torch {r.get('torch')}, cuda {r.get('cuda')}, {r.get('gpu') or 'no GPU'}, "
                f"cupy {r.get('cupy')}, protobuf {r.get('protobuf')}")
    if name == "cuda_tests":
        return (f"{r.get('passed', 0)} passed, {r.get('failed', 0)} failed, "
                f"{r.get('skipped', 0)} skipped")
    if name == "main_job":
        return (f"mAP {_fmt(r.get('map'))} (target >= {TARGETS['main_job_map']}), wall "
                f"{_fmt(r.get('wall_s'))} s (target <= {TARGETS['main_job_wall_s']:.0f}; loop "
                f"{_fmt(r.get('train_s'))} s), {_fmt(r.get('images_per_s'))} images/s")
    if name == "vgg16_step":
        return (f"median {_fmt(r.get('median_s'))} s/step (target <= {TARGETS['vgg16_step_s']}), "
                f"peak {_fmt(r.get('peak_memory_gb'))} GB (target <= {TARGETS['vgg16_peak_memory_gb']}), "
                f"{r.get('device_waits_per_step', '?')} waits/step")
    if name == "bench_vs_torchvision":
        result = r.get("result")
        return r.get("reason", "") if result is None else json.dumps(result)[:160]
    if name == "fast_batches":
        return ", ".join(f"N={n}: {_fmt(v.get('prepared_images_per_s'))} images/s"
                         for n, v in (r.get("images_per_s") or {}).items())
    if name == "time_cli":
        return f"{_fmt(r.get('forward_backward_ms'))} ms forward-backward"
    if name == "vgg16_test":
        return (f"{_fmt(r.get('median_ms'))} ms/image median (target <= "
                f"{TARGETS['vgg16_test_ms_per_image']:.0f})")
    return ""


def _fmt(value):
    return "?" if value is None else f"{value:.3g}"


def _last_json(text):
    """The last line of `text` that parses as a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def _junit_counts(path):
    import xml.etree.ElementTree as ElementTree

    if not path.exists():
        return {}
    try:
        root = ElementTree.parse(path).getroot()
    except ElementTree.ParseError:
        return {}
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    tests, failures, errors, skipped = (int(suite.get(k, 0)) for k in ("tests", "failures", "errors",
                                                                         "skipped"))
    failed = [f"{case.get('classname')}::{case.get('name')}" for case in suite.iter("testcase")
              if case.find("failure") is not None or case.find("error") is not None]
    return {"tests": tests, "passed": tests - failures - errors - skipped, "failed": failures + errors,
            "skipped": skipped, "failed_tests": failed[:20]}


def _main_job_figures(path):
    if not path.exists():
        return {}
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    train = [r for r in records if r.get("kind") == "train" and r.get("seconds_per_step")]
    tests = [r for r in records if r.get("kind") == "test"]
    figures = {"train_records": len(train)}
    if train:
        median = statistics.median(r["seconds_per_step"] for r in train)
        # The loop's own time (without opening or generating the data, and the
        # final test): each record's s/step times the steps since the last one.
        steps = [r["step"] for r in train]
        figures["train_s"] = sum(r["seconds_per_step"] * (step - before)
                                 for r, step, before in zip(train, steps, [-1] + steps[:-1]))
        figures.update(median_s_per_step=median, images_per_s=1.0 / median if median else None,
                       last_step=train[-1]["step"], last_loss=train[-1].get("loss"))
    if tests:
        metrics = tests[-1].get("metrics", {})
        figures.update(map=metrics.get("mAP"), test_metrics=metrics, test_seconds=tests[-1].get("seconds"))
    return figures


# -- workers (run as subprocesses of the check) -----------------------------------
def environment_worker():
    import platform

    info = {"python": platform.python_version(), "executable": sys.executable}
    for module in ("torch", "torchvision", "cupy", "google.protobuf", "numpy", "cv2", "yaml", "PIL"):
        try:
            imported = __import__(module, fromlist=["__version__"])
            info[module.split(".")[-1] if module != "google.protobuf" else "protobuf"] = getattr(
                imported, "__version__", "?")
        except Exception as e:  # noqa: BLE001 - a missing package is a figure too
            info[module if module != "google.protobuf" else "protobuf"] = f"missing ({type(e).__name__})"
    import torch

    info["cuda"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        import pyfrcnn.proto.pyfrcnn_pb2  # noqa: F401 - refuses a protobuf runtime that is too old
        info["pyfrcnn_pb2"] = "ok"
    except Exception as e:  # noqa: BLE001
        info["pyfrcnn_pb2"] = f"{type(e).__name__}: {e}"
    print(json.dumps(info))
    return 0 if info["pyfrcnn_pb2"] == "ok" else 1


def vgg16_step_worker(device, steps, warmup, scale, max_size, work_dir, solver_file):
    """pyfrcnn's VGG16 end2end training step (forward + backward + update, one
    image) on a prepared scale x max_size blob; prints one JSON line.
    `solver_file` gives the net (its data section is replaced by shapes)."""
    import torch
    import torch.nn.functional as F

    from pyfrcnn.solver import Solver
    from pyfrcnn.solver_config import load_solver

    work_dir = Path(work_dir)
    overrides = ["data.train=shapes:train", f"data.cache_dir={work_dir / 'cache'}",
                 "data.shapes.train_images=4", "data.workers=0", "iter_size=1",
                 f"detection.TRAIN.SCALES=[{scale}]", f"detection.TRAIN.MAX_SIZE={max_size}"]
    config = load_solver(str(REPO / solver_file), overrides)
    config = config.replace(snapshot_prefix=str(work_dir / "vgg16"), test_interval=0, snapshot=0)
    solver = Solver(config, run_dir=str(work_dir), device=device, dist_info=False, hook_list=[])
    device = solver.device
    data_layer = solver.net.layers[0]
    data, im_info, gt_boxes, *rest = data_layer.forward()
    height, width = data.shape[2:]
    # The blob py-faster-rcnn trains VGG16 on: scale x max_size (600 x 1000).
    data = F.interpolate(data, size=(scale, max_size), mode="bilinear", align_corners=False)
    factor = torch.tensor([max_size / width, scale / height] * 2 + [1.0], device=gt_boxes.device)
    gt_boxes = gt_boxes * factor
    im_info = torch.tensor([[scale, max_size, float(im_info[0, 2]) * scale / height]],
                           device=im_info.device)
    tops = (data.contiguous(), im_info, gt_boxes, *rest)
    data_layer.forward = lambda: tops[:len(data_layer.param.top)]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    times = []
    for k in range(warmup + steps):
        if k == warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sync()
        start = time.perf_counter()
        solver.run_step()
        sync()
        if k >= warmup:
            times.append(time.perf_counter() - start)
    result = {"solver": solver_file, "device": str(device), "blob": list(data.shape),
              "steps": steps, "warmup": warmup,
              "iter_size": config.iter_size, "rois": int(solver.net.blobs["rois"].shape[0]),
              "median_s": statistics.median(times), "mean_s": statistics.fmean(times),
              "min_s": min(times), "loss": solver.last.loss}
    if device.type == "cuda":
        result["peak_memory_gb"] = torch.cuda.max_memory_allocated(device) / 1e9
        result["peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 1e9
        result.update(device_waits(solver.run_step))
    print(json.dumps(result))
    return 0


def device_waits(step):
    """{"device_waits_per_step", "device_waits"}: the operations of one call of
    `step` that waited for the GPU, counted by source line (the frame of our
    code nearest to the operation), as torch.cuda.set_sync_debug_mode reports
    them."""
    import traceback
    import warnings

    import torch

    sites = {}

    def note(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1]
                  if f.filename.startswith(str(REPO)) and f.filename != __file__]
        where = (f"{Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno}"
                 if frames else f"{filename}:{lineno}")
        sites[where] = sites.get(where, 0) + 1

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = note  # restored by catch_warnings
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return {"device_waits_per_step": sum(sites.values()), "device_waits": sites}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check_out", help="the folder of every figure")
    parser.add_argument("--cpu", action="store_true", help="the same steps on the CPU, tiny")
    parser.add_argument("--budget", type=float, help="seconds for all steps (480, or 180 with --cpu)")
    parser.add_argument("--python", default=sys.executable, help="the Python the steps run with")
    parser.add_argument("--only", action="append", help="run only these steps (repeatable)")
    worker = parser.add_argument_group("workers (internal)")
    worker.add_argument("--worker", choices=("environment", "vgg16_step"))
    worker.add_argument("--device", default="cuda")
    worker.add_argument("--steps", type=int, default=20)
    worker.add_argument("--warmup", type=int, default=5)
    worker.add_argument("--scale", type=int, default=600)
    worker.add_argument("--max-size", type=int, default=1000)
    worker.add_argument("--work-dir", default="gpu_check_out/vgg16_step")
    worker.add_argument("--solver", default="solvers/vgg16_solver.yaml")
    args = parser.parse_args(argv)
    if args.worker == "environment":
        return environment_worker()
    if args.worker == "vgg16_step":
        return vgg16_step_worker(args.device, args.steps, args.warmup, args.scale, args.max_size,
                                 args.work_dir, args.solver)
    check = Check(args.out, args.cpu, args.budget or (180 if args.cpu else 480), args.python)
    for name in TIMEOUTS:
        if not args.only or name in args.only:
            getattr(check, name)()
    check.summary["finished"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds")
    check.save()
    print(check.report())
    bad = [n for n, r in check.summary["steps"].items() if r.get("status") not in ("ok", "missing")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
