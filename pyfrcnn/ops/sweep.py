"""The greedy sweep over an NMS suppression mask, shared by the CPU path
(ops/nms.py) and the CUDA path (ops/_cuda.py), which both build the mask in
py-faster-rcnn's nms_kernel layout: row i, 64-bit word w, bit b set when box
i suppresses box 64*w + b (i before it in score order)."""

import numpy as np

WORD_BITS = 64


def greedy_sweep(mask):
    """Positions (in sorted order) that survive, given a suppression mask."""
    num, words = mask.shape
    removed = np.zeros(words, dtype=np.uint64)
    keep = []
    for word in range(words):
        start = word * WORD_BITS
        gone = int(removed[word])
        kept_here = []
        # Inside the word the order matters: a box kept here may remove the next.
        for bit, row in enumerate(mask[start:start + WORD_BITS, word].tolist()):
            if not gone >> bit & 1:
                kept_here.append(start + bit)
                gone |= row
        keep.extend(kept_here)
        if kept_here and word + 1 < words:
            removed[word + 1:] |= np.bitwise_or.reduce(mask[kept_here, word + 1:], axis=0)
    return np.asarray(keep, dtype=np.int64)
