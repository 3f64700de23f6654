"""Engine overhead: a net built from prototxt vs the same torch calls by hand.

1. VGG16's conv trunk (benchmarks/vgg16_trunk.prototxt), forward + backward,
   Net vs a hand-written function over the same parameters.
2. A chain of N small layers (1x1 convolution + ReLU on a tiny blob), where the
   engine's per-layer cost is all there is to see.

Runs are interleaved and the median taken.  Usage:
    python benchmarks/bench_engine.py [--size 224] [--repeats 7] [--threads 2]
"""

import argparse
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from pyfrcnn.net import Net

HERE = os.path.dirname(os.path.abspath(__file__))


def hand_vgg(x, params):
    """The VGG16 trunk by hand: conv / relu, ceil-mode 2x2 max pooling after each block."""
    i = 0
    for block, convs in enumerate((2, 2, 3, 3, 3)):
        for _ in range(convs):
            w, b = params[i]
            x = F.relu(F.conv2d(x, w, b, 1, 1))
            i += 1
        if block < 4:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    return x


def timed(fn, repeats):
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return samples


def compare(net_step, hand_step, repeats):
    net_step(), hand_step()  # warm up
    net_t, hand_t = [], []
    for _ in range(repeats):
        net_t += timed(net_step, 1)
        hand_t += timed(hand_step, 1)
    return statistics.median(net_t), statistics.median(hand_t)


def vgg_overhead(size, repeats):
    net = Net(os.path.join(HERE, "vgg16_trunk.prototxt"), input_shapes={"data": (1, 3, size, size)})
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.01)
    params = [tuple(blobs) for blobs in net.params.values()]
    x = torch.randn(1, 3, size, size)

    def net_step():
        net.zero_grad(set_to_none=True)
        net.forward(data=x)["conv5_3"].sum().backward()

    def hand_step():
        net.zero_grad(set_to_none=True)
        hand_vgg(x, params).sum().backward()

    return compare(net_step, hand_step, repeats)


def chain_overhead(n_layers, repeats):
    text = 'input: "data" input_shape { dim: 1 dim: 8 dim: 4 dim: 4 }\n'
    bottom = "data"
    for i in range(n_layers):
        text += (f'layer {{ name: "c{i}" type: "Convolution" bottom: "{bottom}" top: "c{i}" '
                 'convolution_param { num_output: 8 kernel_size: 1 weight_filler { type: "msra" } } }\n'
                 f'layer {{ name: "r{i}" type: "ReLU" bottom: "c{i}" top: "c{i}" }}\n')
        bottom = f"c{i}"
    net = Net(text)
    params = [tuple(blobs) for blobs in net.params.values()]
    x = torch.randn(1, 8, 4, 4)

    def net_step():
        net.zero_grad(set_to_none=True)
        net.forward(data=x)[bottom].sum().backward()

    def hand_step():
        net.zero_grad(set_to_none=True)
        y = x
        for w, b in params:
            y = F.relu(F.conv2d(y, w, b))
        y.sum().backward()

    return compare(net_step, hand_step, repeats)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224, help="VGG16 input side (600x1000 is slow on CPU)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chain", type=int, default=100, help="layers in the small-layer chain")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    net_s, hand_s = vgg_overhead(args.size, args.repeats)
    print(f"VGG16 trunk 1x3x{args.size}x{args.size} forward+backward: net {net_s * 1e3:.1f} ms, "
          f"by hand {hand_s * 1e3:.1f} ms, overhead {100 * (net_s - hand_s) / hand_s:+.2f}%")
    net_s, hand_s = chain_overhead(args.chain, args.repeats * 3)
    per_layer = (net_s - hand_s) / (2 * args.chain) * 1e6
    print(f"{2 * args.chain} small layers forward+backward: net {net_s * 1e3:.2f} ms, by hand "
          f"{hand_s * 1e3:.2f} ms, {per_layer:.1f} us engine cost per layer")


if __name__ == "__main__":
    main()
