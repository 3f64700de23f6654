"""pyfrcnn against torchvision's FasterRCNN doing the same work, interleaved in one process.

For each net, both detectors are built in this process and their training
steps (forward + backward + update, the input blob prepared beforehand) are
interleaved on the same images; the medians and their ratio are printed.

- fast: prototxt/fast/train.prototxt with solvers/shapes_solver.yaml (Adam,
  shapes data at scale 320) beside a torchvision FasterRCNN with the same
  trunk (five conv + BatchNorm + ReLU, 2x2 max pooling after the first three,
  the 0.017 input scale frozen), a 128-wide RPN head, anchors 32/64/128 x 3
  ratios at stride 16, RPN 256 / 0.5 sampling with 1000 / 300 proposals
  (NMS 0.7), RoI sampling 128 / 0.25, torchvision.ops.roi_pool 4x4 at 1/16,
  fc 256 / 256, torch.optim.Adam (lr 0.001, weight decay 0.0001).
- vgg16: prototxt/vgg16/train.prototxt (py-faster-rcnn's end2end net; conv1
  and conv2 frozen) with SGD (lr 0.001, momentum 0.9, weight decay 0.0005) on a
  600 x 1000 blob beside torchvision's vgg16 features (conv1_1 .. conv5_3,
  conv1/conv2 frozen), RPNHead 512, anchors 128/256/512 x 3 ratios, RPN
  12000 / 2000, roi_pool 7x7, TwoMLPHead 4096, torch.optim.SGD.
Differences that remain: torchvision's RPN scores anchors with one sigmoid
logit (9 channels where py-faster-rcnn has 18 softmax logits), its transform
normalises and resizes the (already sized) blob inside the model, its
TwoMLPHead has no dropout, its RoI sampler takes background below IoU 0.5
(py-faster-rcnn: [0.1, 0.5)). Weights start random on both sides.

torchvision does not install beside the project's torch 2.13.0 CPU build; run
this from a venv with `pip install torch==2.14.1 torchvision==0.29.1` (plus
numpy, pyyaml, pillow and protobuf) with the repository on PYTHONPATH:

    PYTHONPATH=. /path/to/venv/bin/python benchmarks/bench_vs_torchvision.py \\
        --nets fast,vgg16 [--steps 50] [--warmup 5] [--vgg16-steps 5] [--device cpu|cuda] [--json OUT]

Without torchvision it writes {"skipped": reason} to --json and exits 0.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from benchmarks.machine import cpu_model  # noqa: E402


# -- pyfrcnn ----------------------------------------------------------------------
def pyfrcnn_solver(solver_file, overrides, device, out):
    from pyfrcnn.solver import Solver
    from pyfrcnn.solver_config import load_solver

    config = load_solver(os.path.join(REPO, solver_file), overrides)
    config = config.replace(snapshot_prefix=os.path.join(out, "bench"), test_interval=0,
                            snapshot=0, iter_size=1)
    return Solver(config, run_dir=out, device=device, dist_info=False, hook_list=[])


def take_samples(solver, count, size=None):
    """`count` (data, im_info, gt_boxes) from the solver's data layer, resized to
    `size` (H, W) when given (boxes and im_info follow)."""
    data_layer = solver.net.layers[0]
    samples = []
    for _ in range(count):
        data, im_info, gt_boxes = [t.clone() for t in data_layer.forward()[:3]]
        if size is not None:
            h, w = data.shape[2:]
            data = F.interpolate(data, size=size, mode="bilinear", align_corners=False)
            sy, sx = size[0] / h, size[1] / w
            gt_boxes[:, [0, 2]] *= sx
            gt_boxes[:, [1, 3]] *= sy
            im_info = torch.tensor([[size[0], size[1], float(im_info[0, 2]) * sy]])
        samples.append((data, im_info, gt_boxes))
    data_layer.close()
    return samples


def pyfrcnn_step_fn(solver, samples, device):
    """A closure running one prepared training step of the solver's net."""
    net, updater = solver.net, solver.updater
    data_layer = net.layers[0]
    on_device = [tuple(t.to(device) for t in s) for s in samples]
    feed = {"i": 0}

    def prepared():
        feed["i"] += 1
        return on_device[feed["i"] % len(on_device)]

    data_layer.forward = prepared

    def step():
        for p, _, _, _ in updater.params:
            p.grad = None
        net.forward()
        loss = net.backward()
        updater.apply(solver.rate(), solver.step)
        solver.step += 1
        return loss

    return step


# -- torchvision ---------------------------------------------------------------------
def roi_pool_module(size, scale):
    """torchvision.ops.roi_pool on the one feature map, called as RoIHeads calls its
    pooler (FasterRCNN takes only a MultiScaleRoIAlign there, hence the subclass)."""
    from torchvision.ops import MultiScaleRoIAlign, roi_pool

    class RoIPool(MultiScaleRoIAlign):
        def forward(self, features, proposals, image_shapes):
            return roi_pool(features["0"], proposals, size, scale)

    return RoIPool(["0"], size, 0)


def fast_backbone():
    layers = []
    channels = [3, 24, 48, 96, 128, 160]
    for i in range(5):
        stride = 2 if i == 0 else 1
        layers += [torch.nn.Conv2d(channels[i], channels[i + 1], 3, stride, 1, bias=False),
                   torch.nn.BatchNorm2d(channels[i + 1], eps=1e-5), torch.nn.ReLU(inplace=True)]
        if i < 3:
            layers.append(torch.nn.MaxPool2d(2, 2, ceil_mode=True))

    class Trunk(torch.nn.Sequential):
        def forward(self, x):
            return super().forward(x * 0.017)

    trunk = Trunk(*layers)
    trunk.out_channels = 160
    return trunk


class RPNHead(torch.nn.Module):
    """torchvision's RPN head with a conv of its own width (py-faster-rcnn's rpn_conv/3x3)."""

    def __init__(self, in_channels, width, anchors):
        super().__init__()
        self.conv = torch.nn.Conv2d(in_channels, width, 3, 1, 1)
        self.cls_logits = torch.nn.Conv2d(width, anchors, 1)
        self.bbox_pred = torch.nn.Conv2d(width, 4 * anchors, 1)

    def forward(self, features):
        logits, deltas = [], []
        for x in features:
            t = F.relu(self.conv(x))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


def torchvision_model(net, num_classes, min_size, max_size):
    from torchvision.models import vgg16
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.rpn import RPNHead as TorchvisionRPNHead

    if net == "fast":
        backbone = fast_backbone()
        anchors = AnchorGenerator(sizes=((32, 64, 128),), aspect_ratios=((0.5, 1.0, 2.0),))
        head = RPNHead(160, 128, 9)
        pool, pooled, fc = roi_pool_module(4, 1.0 / 16), 4, 256
        rpn_top_n = dict(rpn_pre_nms_top_n_train=1000, rpn_post_nms_top_n_train=300,
                         rpn_pre_nms_top_n_test=1000, rpn_post_nms_top_n_test=100)
    else:
        backbone = vgg16(weights=None).features[:30]
        for layer in list(backbone)[:10]:  # conv1_x, conv2_x frozen, as py-faster-rcnn
            for p in layer.parameters():
                p.requires_grad_(False)
        backbone.out_channels = 512
        anchors = AnchorGenerator(sizes=((128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
        head = TorchvisionRPNHead(512, 9)
        pool, pooled, fc = roi_pool_module(7, 1.0 / 16), 7, 4096
        rpn_top_n = dict(rpn_pre_nms_top_n_train=12000, rpn_post_nms_top_n_train=2000,
                         rpn_pre_nms_top_n_test=6000, rpn_post_nms_top_n_test=300)
    model = FasterRCNN(
        backbone, num_classes=None, min_size=min_size, max_size=max_size,
        image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
        rpn_anchor_generator=anchors, rpn_head=head, rpn_nms_thresh=0.7,
        rpn_fg_iou_thresh=0.7, rpn_bg_iou_thresh=0.3, rpn_batch_size_per_image=256,
        rpn_positive_fraction=0.5, box_roi_pool=pool,
        box_head=TwoMLPHead(backbone.out_channels * pooled * pooled, fc),
        box_predictor=FastRCNNPredictor(fc, num_classes), box_fg_iou_thresh=0.5,
        box_bg_iou_thresh=0.5, box_batch_size_per_image=128, box_positive_fraction=0.25,
        **rpn_top_n)
    return model


def torchvision_step_fn(model, optimizer, samples, device):
    model.to(device).train()
    prepared = []
    for data, _, gt_boxes in samples:
        image = data[0].to(device)
        target = {"boxes": gt_boxes[:, :4].to(device),
                  "labels": gt_boxes[:, 4].long().to(device)}
        prepared.append(([image], [target]))
    feed = {"i": 0}

    def step():
        feed["i"] += 1
        images, targets = prepared[feed["i"] % len(prepared)]
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


# -- the comparison ------------------------------------------------------------------
def interleave(steps, count, warmup, device):
    """{name: [seconds]} of `count` rounds after `warmup`, one step of each per round;
    with the peak memory of each side's steps on CUDA."""
    times = {name: [] for name in steps}
    peaks = {name: 0 for name in steps}
    for k in range(warmup + count):
        for name, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device))
            if k >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times, peaks


def compare(net, args, device):
    if net == "fast":
        solver_file, overrides, steps, warmup = "solvers/shapes_solver.yaml", [], args.steps, args.warmup
        size = None
    else:
        solver_file = "solvers/vgg16_solver.yaml"
        overrides = ["data.train=shapes:train", "data.root=data",
                     f"detection.TRAIN.SCALES=[{args.scale}]",
                     f"detection.TRAIN.MAX_SIZE={args.max_size}"]
        steps, warmup, size = args.vgg16_steps, 1, (args.scale, args.max_size)
    overrides += list(args.overrides)
    torch.manual_seed(0)
    solver = pyfrcnn_solver(solver_file, overrides, device, os.path.join(args.out, net))
    samples = take_samples(solver, 8, size)
    ours = pyfrcnn_step_fn(solver, samples, device)
    num_classes = solver.net.layers[0].params.num_classes or 6
    h, w = samples[0][0].shape[2:]
    model = torchvision_model(net, num_classes, min(h, w), max(h, w))
    params = [p for p in model.parameters() if p.requires_grad]
    if net == "fast":
        optimizer = torch.optim.Adam(params, lr=0.001, betas=(0.9, 0.999), eps=1e-8,
                                     weight_decay=0.0001)
    else:
        optimizer = torch.optim.SGD(params, lr=0.001, momentum=0.9, weight_decay=0.0005)
    theirs = torchvision_step_fn(model, optimizer, samples, device)
    times, peaks = interleave({"pyfrcnn": ours, "torchvision": theirs}, steps, warmup, device)
    solver.close()
    ours_ms = 1000 * statistics.median(times["pyfrcnn"])
    theirs_ms = 1000 * statistics.median(times["torchvision"])
    result = {"net": net, "steps": steps, "warmup": warmup, "blob": [int(h), int(w)],
              "pyfrcnn_ms": round(ours_ms, 2), "torchvision_ms": round(theirs_ms, 2),
              "pyfrcnn_min_ms": round(1000 * min(times["pyfrcnn"]), 2),
              "torchvision_min_ms": round(1000 * min(times["torchvision"]), 2),
              "ratio": round(ours_ms / theirs_ms, 3)}
    if device.type == "cuda":
        result["pyfrcnn_peak_mb"] = round(peaks["pyfrcnn"] / 2 ** 20, 1)
        result["torchvision_peak_mb"] = round(peaks["torchvision"] / 2 ** 20, 1)
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nets", default="fast,vgg16", help="comma-separated: fast, vgg16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=50, help="timed rounds for the fast net")
    parser.add_argument("--warmup", type=int, default=5,
                        help="untimed rounds first for the fast net (a few hundred: both RPNs "
                             "have learnt enough that their proposals cluster, as in training)")
    parser.add_argument("--vgg16-steps", type=int, default=5, help="timed rounds for VGG16")
    parser.add_argument("--scale", type=int, default=600, help="VGG16 blob height")
    parser.add_argument("--max-size", type=int, default=1000, help="VGG16 blob width")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a solver override for the pyfrcnn side (both nets)")
    parser.add_argument("--out", default=os.path.join("output", "bench_vs_torchvision"))
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    try:
        import torchvision  # noqa: F401
    except Exception as e:  # not installed, or built for another torch
        reason = f"torchvision unavailable: {type(e).__name__}: {e}"
        print(reason)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"skipped": reason}, f)
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging
    logging.basicConfig(level=logging.WARNING)
    device = torch.device(args.device)
    header = {"device": str(device), "torch": torch.__version__,
              "torchvision": torchvision.__version__, "threads": torch.get_num_threads(),
              "cpu": cpu_model(), "load_before": round(os.getloadavg()[0], 2)}
    if device.type == "cuda":
        header["gpu"] = torch.cuda.get_device_name(device)
    results = []
    for net in [n.strip() for n in args.nets.split(",") if n.strip()]:
        result = compare(net, args, device)
        results.append(result)
        extra = (f", peak {result['pyfrcnn_peak_mb']} / {result['torchvision_peak_mb']} MB"
                 if "pyfrcnn_peak_mb" in result else "")
        print(f"{net} {result['blob'][0]}x{result['blob'][1]}: pyfrcnn {result['pyfrcnn_ms']} ms, "
              f"torchvision {result['torchvision_ms']} ms (medians of {result['steps']}), "
              f"ratio {result['ratio']}{extra}", flush=True)
    header["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(header))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": header, "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
