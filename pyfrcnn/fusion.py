"""Fused in-place chains: BatchNorm -> Scale (-> ReLU) run as one op.

Caffe writes a normalised convolution as three in-place layers on one blob:
BatchNorm (statistics only), Scale (the learned affine part) and ReLU. Layer
by layer that is about ten autograd nodes (the mean, the variance, the
normalisation, the product, the sum, the rectifier) and as many passes over
the blob, forward and backward. Run as torch's own batch_norm with the
Scale's blobs as its weight and bias, followed by an in-place relu, it is two
nodes. What it buys: the fast net's training step spends about a third less
in its five normalised convolutions (BENCHMARKS.md, "Training step").

What it keeps exact:
- the BatchNorm statistics blobs: the batch mean and variance are computed
  with BatchNorm's own formulas and the Caffe update is BatchNorm._update, so
  the mean / variance / factor blobs are bit for bit those of the plain path;
- the semantics: use_global_stats (or the phase) chooses batch or stored
  statistics at every forward, as BatchNorm.forward does; lr_mult 0 on the
  Scale's blobs freezes them (autograd sees requires_grad False);
- the graph as the prototxt describes it: only chains of in-place layers on
  one blob are fused (bottom == top throughout), so no blob a user can read in
  `net.blobs` disappears, and a chain with a propagate_down or loss_weight of
  its own is left alone.
What it rounds differently: torch's batch_norm computes (x - mean) * invstd *
w + b with its own reductions, where the plain path divides by sqrt(var +
eps) and then scales; outputs and gradients differ by float32 rounding
(relative 1e-6 on the fast net's blobs; tests/test_fusion.py bounds it).

`fuse=False` on the Net (or `fuse_layers: false` in a solver file) runs every
layer on its own, as Caffe does.
"""

import torch
import torch.nn.functional as F


class FusedChain:
    """BatchNorm + Scale (+ ReLU) layers of one in-place chain, run as one op."""

    def __init__(self, batch_norm, scale, relu=None):
        self.batch_norm, self.scale, self.relu = batch_norm, scale, relu
        self.layers = [l for l in (batch_norm, scale, relu) if l is not None]

    @property
    def name(self):
        return "+".join(l.name for l in self.layers)

    def __call__(self, x):
        bn, scale = self.batch_norm, self.scale
        weight = scale.blobs[0]
        bias = scale.blobs[1] if scale.bias_term else None
        use_global = bn.global_stats if bn.global_stats is not None else bn.phase == "TEST"
        if use_global:
            factor = bn.blobs[2][0]
            inverse = torch.where(factor == 0, torch.zeros_like(factor), 1.0 / factor)
            top = F.batch_norm(x, bn.blobs[0] * inverse, bn.blobs[1] * inverse, weight, bias,
                               training=False, eps=bn.eps)
        else:
            with torch.no_grad():  # BatchNorm.forward's statistics, op for op
                axes = [0, *range(2, x.dim())]
                column = (1, -1) + (1,) * (x.dim() - 2)
                mean = x.mean(axes)
                variance = (x - mean.view(column)).square().mean(axes)
                bn._update(mean, variance, x.numel() // bn.channels)
            top = F.batch_norm(x, None, None, weight, bias, training=True, eps=bn.eps)
        if self.relu is not None:
            top = torch.relu_(top)  # batch_norm's backward needs its input, not its output
        return top


def _in_place(lp):
    return len(lp.bottom) == 1 and len(lp.top) == 1 and lp.bottom[0] == lp.top[0]


def _plain(net, index):
    """True when layer `index` has no propagate_down or loss weight of its own."""
    return all(net._propagate[index]) and not any(net.layers[index].loss_weights)


def find_chains(net):
    """{index of the first layer: (FusedChain, index of the last layer)} for the
    fusable chains of a built Net."""
    chains = {}
    layers, n = net.layers, len(net.layers)
    i = 0
    while i < n - 1:
        bn, scale = layers[i], layers[i + 1]
        blob = bn.param.bottom[0] if bn.param.bottom else None
        shape = net.bottom_shapes[i][0] if net.bottom_shapes[i] else None
        fusable = (bn.type == "BatchNorm" and scale.type == "Scale"
                   and _in_place(bn.param) and _in_place(scale.param)
                   and scale.param.bottom[0] == blob
                   and shape is not None and len(shape) >= 2
                   and scale.axis == 1 and scale.scale_ndim == 1 and len(scale.blobs) >= 1
                   and _plain(net, i) and _plain(net, i + 1))
        if not fusable:
            i += 1
            continue
        last = i + 1
        relu = None
        if last + 1 < n:
            nxt = layers[last + 1]
            if (nxt.type == "ReLU" and _in_place(nxt.param) and nxt.param.bottom[0] == blob
                    and nxt.negative_slope == 0 and _plain(net, last + 1)):
                relu, last = nxt, last + 1
        chains[i] = (FusedChain(bn, scale, relu), last)
        i = last + 1
    return chains
