"""The order in which a data layer visits its roidb, and the scale of each visit.

TRAIN (shuffle): each epoch is a fresh permutation drawn from the sampler's own
numpy Generator, seeded once (from RNG_SEED); with aspect grouping, as
py-faster-rcnn's _shuffle_roidb_inds, landscape (width >= height) and portrait
entries are permuted apart, cut into consecutive pairs (a pair of like aspect,
but for at most one mixed pair where the two groups meet) and the pairs
permuted. Each visit then draws its scale index uniformly from the same
Generator (only when there is more than one scale). A new epoch starts when
every entry has been visited (py-faster-rcnn starts one an image early).
TEST (no shuffle): entries in order, scale index 0, wrapping around.

`state()` is a dict of plain Python values (cursor, epoch, permutation,
Generator state); `set_state` resumes the exact sequence from it.
"""

import numpy as np

from pyfrcnn.errors import DataError


class Sampler:
    def __init__(self, widths, heights, num_scales=1, seed=0, shuffle=True, aspect_grouping=False):
        self.widths = np.asarray(widths)
        self.heights = np.asarray(heights)
        if len(self.widths) == 0:
            raise DataError("the dataset has no images to sample from")
        self.num_scales = int(num_scales)
        self.shuffle = shuffle
        self.aspect_grouping = aspect_grouping
        self.rng = np.random.default_rng(seed)
        self.perm = None   # a tuple, replaced (never changed) each epoch
        self.cursor = 0
        self.epoch = 0

    def __len__(self):
        return len(self.widths)

    def next(self):
        """(roidb index, scale index) of the next visit."""
        if self.perm is None or self.cursor >= len(self.perm):
            self._new_epoch()
        index = self.perm[self.cursor]
        self.cursor += 1
        scale = int(self.rng.integers(self.num_scales)) if self.shuffle and self.num_scales > 1 else 0
        return index, scale

    def _new_epoch(self):
        if self.perm is not None:
            self.epoch += 1
        self.cursor = 0
        n = len(self.widths)
        if not self.shuffle:
            self.perm = tuple(range(n))
        elif not self.aspect_grouping:
            self.perm = tuple(int(i) for i in self.rng.permutation(n))
        else:
            landscape = self.widths >= self.heights
            order = np.concatenate([self.rng.permutation(np.flatnonzero(landscape)),
                                    self.rng.permutation(np.flatnonzero(~landscape))])
            pairs = [order[k:k + 2] for k in range(0, n, 2)]
            self.perm = tuple(int(i) for p in self.rng.permutation(len(pairs)) for i in pairs[p])

    def state(self):
        return {"cursor": self.cursor, "epoch": self.epoch, "perm": self.perm,
                "rng": self.rng.bit_generator.state}

    def set_state(self, state, where="data order"):
        perm = state.get("perm")
        if perm is not None:
            if len(perm) != len(self.widths) or sorted(perm) != list(range(len(self.widths))):
                raise DataError(f"{where}: the saved order covers {len(perm)} images but the "
                                f"dataset now has {len(self.widths)}: it changed since the snapshot")
            perm = tuple(int(i) for i in perm)
        self.perm = perm
        self.cursor = int(state["cursor"])
        self.epoch = int(state["epoch"])
        self.rng.bit_generator.state = state["rng"]
