"""Data loading speed: images per second of load + preprocess, as the data layer does it.

A synthetic set of 500 x 375 JPEGs (VOC's typical size) is made from shapes
images upscaled with bilinear resampling (quality 90), in a temporary folder.
Each image is decoded (layers.image.load_image) and turned into a blob at
scale 600, MAX_SIZE 1000 (layers.image.image_to_blob, here 600 x 800), with
torch limited to one thread:
  decode      load_image alone
  blob        image_to_blob alone (mean subtraction + bilinear resize)
  serial      both, one after the other, in one thread (one core)
  N workers   both, through the Prefetcher with N loader threads
Each figure is the median of --repeats passes over the set.  Usage:
    python benchmarks/bench_data.py [--images 40] [--repeats 5] [--workers 2]
"""

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import PIL
import torch
from PIL import Image

from pyfrcnn_layers.datasets.shapes import ShapesConfig, render_image
from pyfrcnn_layers.image import image_to_blob, load_image
from pyfrcnn_layers.prefetch import Prefetcher
from machine import cpu_model

MEANS = (102.9801, 115.9465, 122.7717)


def make_images(folder, count):
    paths = []
    for k in range(count):
        image, _ = render_image(ShapesConfig(), "train", k)
        path = os.path.join(folder, f"{k:04d}.jpg")
        image.resize((500, 375), Image.Resampling.BILINEAR).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def rate(run, count, repeats):
    run()  # warm up
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - t0)
    return count / statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as folder:
        paths = make_images(folder, args.images)
        decoded = [load_image(p) for p in paths]

        def decode():
            for p in paths:
                load_image(p)

        def blob():
            for im in decoded:
                image_to_blob(im, 600, 1000, MEANS)

        def serial():
            for p in paths:
                image_to_blob(load_image(p), 600, 1000, MEANS)

        def threaded(workers):
            def run():
                counter = itertools.count()
                with Prefetcher(lambda: paths[next(counter) % len(paths)],
                                lambda p: image_to_blob(load_image(p), 600, 1000, MEANS),
                                workers=workers, depth=2 * workers) as loader:
                    for _ in paths:
                        loader.next().result()
            return run

        shape = tuple(image_to_blob(decoded[0], 600, 1000, MEANS)[0].shape)
        results = [("decode (load_image)", rate(decode, len(paths), args.repeats)),
                   ("blob (image_to_blob)", rate(blob, len(paths), args.repeats)),
                   ("serial: decode + blob, 1 thread", rate(serial, len(paths), args.repeats))]
        for workers in sorted({1, args.workers}):
            results.append((f"Prefetcher, {workers} worker thread{'s' if workers > 1 else ''}",
                            rate(threaded(workers), len(paths), args.repeats)))

    print(f"machine: {os.cpu_count()} cores (nproc), {cpu_model()}; Python "
          f"{platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} "
          f"intra-op thread), Pillow {PIL.__version__}, numpy {np.__version__}; load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())} (other work on the machine)")
    print(f"{args.images} synthetic 500x375 JPEGs -> blob {shape} (scale 600, MAX_SIZE 1000), "
          f"median of {args.repeats} passes\n")
    print("| step | images / s | ms / image |")
    print("| --- | ---: | ---: |")
    for name, per_second in results:
        print(f"| {name} | {per_second:.1f} | {1000 / per_second:.1f} |")


if __name__ == "__main__":
    main()
