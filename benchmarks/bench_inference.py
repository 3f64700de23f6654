"""Milliseconds per image of test-time detection on the CPU (or a GPU).

For a test prototxt with random weights (He-normal, zero biases, near-zero box
regressors: see randomize_weights): a random H x W image (default 375 x 500,
a typical VOC size) goes through image_to_blob at the test scale (default 600,
max size 1000), the net, box decoding and the post-processing of
`pyfrcnn test` (score threshold, per-class NMS, max per image). Reports the
mean and median over `iters` timed images after `warmup` untimed ones, split
into im_detect (blob + forward + decoding) and post-processing, as
py-faster-rcnn's test_net prints them.

    python benchmarks/bench_inference.py prototxt/fast/test.prototxt --iters 5
"""

import argparse
import json
import math
import statistics
import sys
import time

import numpy as np
import torch


def randomize_weights(net, seed=0):
    """He-normal weights (std sqrt(2 / fan_in)), zero biases, from a fixed seed.

    Box regressors (layers named *bbox_pred*) get weights 1000 times smaller:
    random deltas would blow every proposal up to the whole image, NMS would
    leave a handful, and the RoI head would be timed on next to nothing. Near-
    zero deltas keep the proposals at the anchors, so the RPN's NMS leaves its
    usual few hundred, as with trained weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, blobs in net.params.items():
            gain = 1e-3 if "bbox_pred" in name else 1.0
            for i, blob in enumerate(blobs):
                if i == 0 and blob.dim() >= 2:
                    fan_in = blob[0].numel()
                    values = torch.randn(blob.shape, generator=g) * gain * math.sqrt(2.0 / fan_in)
                    blob.copy_(values.to(blob.dtype))
                else:
                    blob.zero_()


def bench_inference(net_path, scale=600, max_size=1000, image_size=(375, 500), iters=5,
                    warmup=1, device="cpu", seed=0):
    """{'ms_per_image', 'median_ms', 'im_detect_ms', 'postprocess_ms', ...} for `net_path`."""
    from pyfrcnn_layers.config import DetectionConfig
    from pyfrcnn_layers.image import blob_scale
    from pyfrcnn_layers.inference import im_detect, postprocess_detections
    from pyfrcnn.net import Net

    cfg = DetectionConfig.from_dict({"TEST": {"SCALES": [scale], "MAX_SIZE": max_size}})
    net = Net(net_path, "TEST", config={"detection": cfg},
              input_shapes={"data": (1, 3, None, None)})
    randomize_weights(net, seed)
    net.eval()
    net.to(torch.device(device))
    height, width = image_size
    im = np.random.RandomState(seed).randint(0, 256, (height, width, 3), dtype=np.uint8)
    detect_ms, post_ms = [], []
    for k in range(warmup + iters):
        tic = time.perf_counter()
        scores, boxes = im_detect(net, im, cfg)
        if scores.is_cuda:
            torch.cuda.synchronize()
        toc = time.perf_counter()
        postprocess_detections(scores, boxes, cfg.TEST.SCORE_THRESH, cfg.TEST.NMS,
                               cfg.TEST.MAX_PER_IMAGE)
        if scores.is_cuda:
            torch.cuda.synchronize()
        done = time.perf_counter()
        if k >= warmup:
            detect_ms.append(1000 * (toc - tic))
            post_ms.append(1000 * (done - toc))
    totals = [a + b for a, b in zip(detect_ms, post_ms)]
    im_scale = blob_scale(height, width, scale, max_size)
    return {
        "net": net_path, "device": str(device), "threads": torch.get_num_threads(),
        "image": [height, width], "blob": [round(height * im_scale), round(width * im_scale)],
        "rois": int(scores.shape[0]), "iters": iters,
        "ms_per_image": statistics.fmean(totals), "median_ms": statistics.median(totals),
        "im_detect_ms": statistics.fmean(detect_ms), "postprocess_ms": statistics.fmean(post_ms),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("net", help="a test prototxt")
    parser.add_argument("--scale", type=int, default=600)
    parser.add_argument("--max-size", type=int, default=1000)
    parser.add_argument("--image-size", default="375x500", help="H x W of the random image")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    height, width = (int(v) for v in args.image_size.lower().split("x"))
    result = bench_inference(args.net, args.scale, args.max_size, (height, width), args.iters,
                             args.warmup, args.device)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['net']}: {result['ms_per_image']:.1f} ms/image (median "
              f"{result['median_ms']:.1f}; im_detect {result['im_detect_ms']:.1f}, "
              f"post-processing {result['postprocess_ms']:.1f}) on {result['device']}, "
              f"{result['threads']} threads, image {height}x{width} -> blob "
              f"{result['blob'][0]}x{result['blob'][1]}, {result['rois']} RoIs, "
              f"{result['iters']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
