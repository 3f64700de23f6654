"""Speed of the CPU paths of pyfrcnn.ops.nms and roi_pool (results: BENCHMARKS.md).

    python benchmarks/bench_ops.py [--threads 1] [--repeat 7] [--compare-torchvision]
        [--boxes 12000] [--thresholds 0.3 0.5 0.7] [--nms-only]

NMS: 12000 scored boxes on a 600×1000 image at IoU 0.7, as the RPN's
pre-NMS top-N at test time (--boxes and --thresholds for others, e.g. 6000
at 0.3 for the per-class test-time NMS), in two layouts: "proposals" (9 anchors at every
16-pixel cell, jittered as a trained RPN's regression would, scores random)
and "uniform" (centres and sizes at random; few boxes overlap, so nearly all
are kept, the worst case for a greedy loop). roi_pool: a 1×512×38×63 VGG16
conv5_3 blob (ReLU'd: half zeros, so many ties) and 128 or 300 RoIs into 7×7
at spatial scale 1/16, forward and forward+backward. "forward" pools a blob that
needs no gradient, as test and detect do: ours then finds no argmax, while
torchvision's op always does; "forward+backward" pools a leaf that needs one.

Each line is the median (and the minimum) of --repeat runs, the torchvision
ones interleaved with ours. torchvision's nms has no +1 in widths, so it keeps
slightly different boxes; its roi_pool has Caffe's semantics and must agree.
"""

import argparse
import statistics
import time

import torch

from pyfrcnn.ops import nms, roi_pool
from machine import cpu_model, optional_torchvision

IMAGE_HEIGHT, IMAGE_WIDTH, STRIDE = 600, 1000, 16


def proposal_boxes(count, generator):
    """RPN-like boxes: anchors of 3 scales × 3 ratios per cell, jittered, clipped."""
    rows, cols = -(-IMAGE_HEIGHT // STRIDE), -(-IMAGE_WIDTH // STRIDE)
    sizes = torch.tensor([128.0, 256.0, 512.0])[:, None]
    ratios = torch.tensor([0.5, 1.0, 2.0])[None, :]
    widths = (sizes / ratios.sqrt()).reshape(-1).repeat(rows * cols)
    heights = (sizes * ratios.sqrt()).reshape(-1).repeat(rows * cols)
    ys, xs = torch.meshgrid(torch.arange(rows) * STRIDE + STRIDE / 2,
                            torch.arange(cols) * STRIDE + STRIDE / 2, indexing="ij")
    cx, cy = xs.reshape(-1).repeat_interleave(9), ys.reshape(-1).repeat_interleave(9)
    deltas = torch.randn(cx.numel(), 4, generator=generator) * 0.1
    cx, cy = cx + deltas[:, 0] * widths, cy + deltas[:, 1] * heights
    widths, heights = widths * deltas[:, 2].exp(), heights * deltas[:, 3].exp()
    boxes = _clipped(cx, cy, widths, heights)
    scores = torch.rand(cx.numel(), generator=generator)
    top = scores.topk(count).indices
    return boxes[top].contiguous(), scores[top].contiguous()


def uniform_boxes(count, generator):
    cx = torch.rand(count, generator=generator) * IMAGE_WIDTH
    cy = torch.rand(count, generator=generator) * IMAGE_HEIGHT
    widths = torch.empty(count).uniform_(3, 6, generator=generator).exp()
    heights = widths * torch.empty(count).uniform_(-0.7, 0.7, generator=generator).exp()
    return _clipped(cx, cy, widths, heights), torch.rand(count, generator=generator)


def _clipped(cx, cy, widths, heights):
    boxes = torch.stack([cx - widths / 2, cy - heights / 2,
                         cx + widths / 2 - 1, cy + heights / 2 - 1], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMAGE_WIDTH - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMAGE_HEIGHT - 1)
    return boxes


def timed(functions, repeat):
    """Median and minimum seconds of each function, runs interleaved."""
    times = {name: [] for name in functions}
    for name, function in functions.items():
        function()  # warm up
    for _ in range(repeat):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def bench_nms(torchvision, repeat, count, thresholds=(0.7,)):
    rows = []
    for layout, make in (("proposals", proposal_boxes), ("uniform", uniform_boxes)):
        boxes, scores = make(count, torch.Generator().manual_seed(0))
        for threshold in thresholds:
            functions = {"pyfrcnn": lambda: nms(boxes, scores, threshold)}
            if torchvision:
                functions["torchvision"] = lambda: torchvision.ops.nms(boxes, scores, threshold)
            kept = len(nms(boxes, scores, threshold))
            for name, (median, best) in timed(functions, repeat).items():
                rows.append((f"nms {count} {layout} IoU {threshold:g} (keeps {kept})", name, median, best))
    return rows


def bench_roi_pool(torchvision, repeat):
    generator = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(1, 512, 38, 63, generator=generator))
    rows = []
    for count in (128, 300):
        boxes, _ = proposal_boxes(count, generator)
        rois = torch.cat([torch.zeros(count, 1), boxes], 1)
        ops = {"pyfrcnn": lambda f: roi_pool(f, rois, (7, 7), 1 / STRIDE)}
        if torchvision:
            ops["torchvision"] = lambda f: torchvision.ops.roi_pool(f, rois, (7, 7), 1 / STRIDE)
            assert torch.equal(ops["pyfrcnn"](features), ops["torchvision"](features))
        leaf = features.clone().requires_grad_()

        def forward_backward(op):
            leaf.grad = None
            op(leaf).sum().backward()
        tasks = {"forward": lambda op: op(features), "forward+backward": forward_backward}
        for task, run in tasks.items():
            functions = {name: (lambda op=op, run=run: run(op)) for name, op in ops.items()}
            for name, (median, best) in timed(functions, repeat).items():
                rows.append((f"roi_pool 1×512×38×63, {count} RoIs, {task}", name, median, best))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--boxes", type=int, default=12000)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.7], metavar="IOU",
                        help="NMS IoU thresholds, e.g. 0.3 0.5 0.7 (0.3: the per-class test-time "
                             "NMS, 0.7: the RPN's)")
    parser.add_argument("--nms-only", action="store_true", help="skip the roi_pool cases")
    parser.add_argument("--compare-torchvision", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torchvision = optional_torchvision(args.compare_torchvision)
    rows = bench_nms(torchvision, args.repeat, args.boxes, args.thresholds)
    if not args.nms_only:
        rows += bench_roi_pool(torchvision, args.repeat)
    width = max(len(row[0]) for row in rows)
    print(f"| {'case':{width}} | {'code':11} | median ms | min ms |")
    print(f"|-{'-' * width}-|-------------|-----------|--------|")
    for case, name, median, best in rows:
        print(f"| {case:{width}} | {name:11} | {median * 1e3:9.1f} | {best * 1e3:6.1f} |")


if __name__ == "__main__":
    main()
