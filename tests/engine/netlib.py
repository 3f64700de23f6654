"""Tiny deterministic layers and nets for the solver tests.

SeqData (Python data layer): tops data (B x C x 1 x 1) and target (B x K x 1 x 1).
Sample i is drawn from a generator seeded with (seed, i), so every process sees
the same sample i; a distributed rank r of w reads samples r, r + w, r + 2w, ...
With 'random': true the samples come from the layer's own generator instead
(its state is part of snapshot_state). 'nan_at': i makes sample i NaN.
Dropout (Python): TRAIN-phase dropout drawing from torch's global generator.
SquareLoss (Python): tops loss = 0.5 * sum((a - b)^2) / B and, unweighted, mae.
"""

import yaml
import torch

from pyfrcnn.layer import Layer


def params(layer, **defaults):
    values = yaml.safe_load(layer.param_str or "{}") or {}
    unknown = set(values) - set(defaults)
    if unknown:
        raise layer.error(f"unknown param_str keys {sorted(unknown)}")
    defaults.update(values)
    return defaults


class SeqData(Layer):
    num_bottoms = 0
    num_tops = 2

    def layer_setup(self, bottom_shapes):
        p = params(self, batch=2, channels=3, targets=2, seed=0, random=False, nan_at=-1)
        self.batch, self.channels, self.targets = p["batch"], p["channels"], p["targets"]
        self.seed, self.random, self.nan_at = p["seed"], p["random"], p["nan_at"]
        dist = self.config.get("distributed", {"rank": 0, "world_size": 1})
        self.rank, self.world_size = dist["rank"], dist["world_size"]
        self.cursor = 0
        self.generator = torch.Generator().manual_seed(1000 + self.seed + self.rank)

    def reshape(self, bottom_shapes):
        return [(self.batch, self.channels, 1, 1), (self.batch, self.targets, 1, 1)]

    def sample(self, index):
        g = self.generator if self.random else torch.Generator().manual_seed(self.seed * 100003 + index)
        x = torch.randn(self.channels, generator=g)
        y = torch.randn(self.targets, generator=g)
        if index == self.nan_at:
            x = x * float("nan")
        return x, y

    def forward(self):
        xs, ys = [], []
        for _ in range(self.batch):
            index = self.cursor * self.world_size + self.rank
            self.cursor += 1
            x, y = self.sample(index)
            xs.append(x)
            ys.append(y)
        return (torch.stack(xs).view(self.batch, self.channels, 1, 1),
                torch.stack(ys).view(self.batch, self.targets, 1, 1))

    def snapshot_state(self):
        return {"cursor": self.cursor, "generator": self.generator.get_state()}

    def restore_state(self, state):
        self.cursor = state["cursor"]
        self.generator.set_state(state["generator"])


class Dropout(Layer):
    num_bottoms = 1
    num_tops = 1

    def reshape(self, bottom_shapes):
        return [bottom_shapes[0]]

    def forward(self, x):
        if self.phase != "TRAIN":
            return x
        keep = (torch.rand(x.shape) >= 0.5).to(x.dtype)
        return x * keep * 2.0


class SquareLoss(Layer):
    num_bottoms = 2
    min_tops, max_tops = 1, 2
    is_loss = True

    def reshape(self, bottom_shapes):
        return [()] * len(self.param.top)

    def forward(self, a, b):
        diff = a - b
        loss = 0.5 * (diff ** 2).sum() / a.shape[0]
        if len(self.param.top) == 1:
            return loss
        return loss, diff.abs().mean().detach()


def net_text(batch=2, seed=0, random=False, dropout=False, nan_at=-1, two_tops=True,
             lr_mult=(1, 2), decay_mult=(1, 0), name="tiny"):
    """A data -> 1x1 convolution (3 -> 2) -> [dropout] -> square loss net."""
    drop = """
layer { name: "drop" type: "Python" bottom: "pred" top: "pred"
  python_param { module: "tests.engine.netlib" layer: "Dropout" } }""" if dropout else ""
    tops = 'top: "loss" top: "mae"' if two_tops else 'top: "loss"'
    return f"""name: "{name}"
layer {{ name: "data" type: "Python" top: "data" top: "target"
  python_param {{ module: "tests.engine.netlib" layer: "SeqData"
    param_str: "{{batch: {batch}, seed: {seed}, random: {str(random).lower()}, nan_at: {nan_at}}}" }} }}
layer {{ name: "fc" type: "Convolution" bottom: "data" top: "pred"
  param {{ lr_mult: {lr_mult[0]} decay_mult: {decay_mult[0]} }}
  param {{ lr_mult: {lr_mult[1]} decay_mult: {decay_mult[1]} }}
  convolution_param {{ num_output: 2 kernel_size: 1
    weight_filler {{ type: "gaussian" std: 0.5 }} bias_filler {{ type: "constant" value: 0.1 }} }} }}{drop}
layer {{ name: "loss" type: "Python" bottom: "pred" bottom: "target" {tops}
  python_param {{ module: "tests.engine.netlib" layer: "SquareLoss" }} }}
"""


def write_run(folder, solver_lines, **net_kwargs):
    """Write train.prototxt and solver.yaml into `folder`; returns the solver path."""
    import os
    import textwrap

    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "train.prototxt"), "w") as f:
        f.write(net_text(**net_kwargs))
    path = os.path.join(folder, "solver.yaml")
    with open(path, "w") as f:
        f.write("train_net: train.prototxt\n" + textwrap.dedent(solver_lines))
    return path
