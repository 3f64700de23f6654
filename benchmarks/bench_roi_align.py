"""Speed of the CPU path of pyfrcnn.ops.roi_align beside torchvision's (results:
BENCHMARKS.md, "RoIAlign").

    python benchmarks/bench_roi_align.py [--threads 1] [--repeat 5] [--compare-torchvision]

The R50-C4 box head's input: a 1×1024×38×63 res4f blob (a 600×1000 image at
stride 16), 128 (training) or 300 (test) RPN-like RoIs into 14×14, spatial
scale 1/16, adaptive sampling, aligned (detectron2's ROIAlignV2). "forward"
on a blob that needs no gradient (test, detect), "forward+backward" on a leaf
that does, then backward of the sum. Medians (and minima) of --repeat runs,
torchvision's interleaved with ours; the outputs must agree to 1e-4.
"""

import argparse

import torch

from bench_ops import STRIDE, proposal_boxes, timed
from machine import optional_torchvision
from pyfrcnn.ops.roi_align import roi_align

POOLED = (14, 14)


def bench_roi_align(torchvision, repeat):
    generator = torch.Generator().manual_seed(0)
    features = torch.relu(torch.randn(1, 1024, 38, 63, generator=generator))
    rows = []
    for count in (128, 300):
        boxes, _ = proposal_boxes(count, generator)
        rois = torch.cat([torch.zeros(count, 1), boxes], 1)
        ops = {"pyfrcnn": lambda f: roi_align(f, rois, POOLED, 1 / STRIDE, 0, True)}
        if torchvision:
            ops["torchvision"] = lambda f: torchvision.ops.roi_align(f, rois, POOLED, 1 / STRIDE, 0, True)
            torch.testing.assert_close(ops["pyfrcnn"](features), ops["torchvision"](features),
                                       rtol=1e-4, atol=1e-4)
        leaf = features.clone().requires_grad_()

        def forward_backward(op):
            leaf.grad = None
            op(leaf).sum().backward()

        def forward(op):
            with torch.no_grad():
                op(features)
        for task, run in (("forward", forward), ("forward+backward", forward_backward)):
            functions = {name: (lambda op=op, run=run: run(op)) for name, op in ops.items()}
            for name, (median, best) in timed(functions, repeat).items():
                rows.append((f"roi_align 1×1024×38×63, {count} RoIs, 14×14, {task}", name, median, best))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--compare-torchvision", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torchvision = optional_torchvision(args.compare_torchvision)
    rows = bench_roi_align(torchvision, args.repeat)
    width = max(len(row[0]) for row in rows)
    print(f"| {'case':{width}} | {'code':11} | median ms | min ms |")
    print(f"|-{'-' * width}-|-------------|-----------|--------|")
    for case, name, median, best in rows:
        print(f"| {case:{width}} | {name:11} | {median * 1e3:9.1f} | {best * 1e3:6.1f} |")


if __name__ == "__main__":
    main()
