"""Greedy non-maximum suppression, as py-faster-rcnn's nms.

    boxes     n×4   (x1, y1, x2, y2), inclusive pixels: width = x2 - x1 + 1
    scores    n
    returns   k     int64 indices of the kept boxes, highest score first

Boxes are visited by descending score (ties: lower index first); a box is
kept unless a kept box overlaps it with IoU > iou_threshold (strictly).
IoU is inter / (area_i + area_j - inter), computed in the boxes' dtype exactly
as kernels/nms.cu does, so both paths keep the same boxes.

The CUDA path builds the suppression mask of the sorted boxes: row i, word
w, bit b is set when i < j = 64*w + b and IoU(i, j) > threshold (the layout of
py-faster-rcnn's nms_kernel). greedy_sweep then walks it once.

The CPU path, for 0 < threshold < MASK_THRESHOLD (0.6), first computes rows lazily, as
py_cpu_nms does: blocks of boxes still alive, in score order, settle among
themselves, then only the kept ones are compared with the later boxes that
they may overlap (the windows below), and those they overlap die. At a low
threshold most boxes die early, so few rows are ever computed (6000 proposals
at IoU 0.3 keep 157: 7 ms of CPU time where the full mask took 130 ms).
The first DENSE_KEPT kept rows, and all rows while at most DENSE_ALIVE boxes
are alive, are compared with every box still alive (the alive set, compacted as
boxes die, shrinks fast at a low threshold); otherwise a window index finds the
candidates. Blocks hold 8 boxes while each kept row
removes many (the next rows then meet fewer doomed boxes), doubling up to 64
while they remove few. Once
LAZY_KEPT boxes are kept, the rest is cheaper as one mask: suppression_mask
of the boxes still alive, then greedy_sweep. From MASK_THRESHOLD to 1, where
few boxes die, the mask of all boxes comes first. Both stages compute every IoU
by the formula above, so the keeps are the greedy ones.

suppression_mask never visits all n²/2 pairs when 0 < threshold < 1. IoU > t
needs the overlap along x to exceed t times each width, hence
  - widths within a factor t: with widths binned by log(width) into classes
    log(1/t) wide, only a class and the next one can overlap, and
  - x1 within (1 - t) * the larger width of each other.
The lazy rows search their own class and both neighbours, x1 on either side.
For the mask, boxes are ordered by (class, x1); each block of 64 boxes of one class is
compared with the x1-windows of its class (later boxes only) and of the next
class. The windows are taken with a margin, so rounding can only add
candidates, never lose one; every candidate's IoU is computed exactly.
Boxes with non-positive width or height, or non-finite coordinates or sizes,
have zero intersection with everything (or a NaN IoU) and take no part. NaN
coordinates, or non-finite ones with a threshold <= 0, give unspecified
results (the kernel's min and max treat NaN unlike torch's).
"""

import math

import numpy as np
import torch

from pyfrcnn.ops import _cuda
from pyfrcnn.ops.sweep import greedy_sweep

WORD_BITS = 64
# Elements of one batch of IoU tiles (each of the four work buffers).
TILE_ELEMENTS = 1 << 18
# At this IoU threshold and above the CPU path builds the pruned mask at once:
# few boxes die, so lazy rows would be computed for most of them (the RPN's NMS
# at 0.7: 1000 proposals 4.4 ms as a mask, 6.6 ms lazily; 12000: 27 against 31).
MASK_THRESHOLD = 0.6
# Kept boxes up to which rows are compared with every alive box (no window index),
# and after that as long as at most DENSE_ALIVE boxes are alive; DENSE_BLOCK alive
# boxes settle among themselves at a time.
DENSE_KEPT = 128
DENSE_ALIVE = 1024
DENSE_BLOCK = 8
# Kept boxes after which the CPU path stops computing rows lazily.
LAZY_KEPT = 512
# Relative margin on the threshold when pruning candidates.
MARGIN = 1e-3
# 1 << b as int64; 1 << 63 wraps to the sign bit, which is the same 64 bits.
_BIT = torch.bitwise_left_shift(torch.ones(WORD_BITS, dtype=torch.int64), torch.arange(WORD_BITS))


def nms(boxes, scores, iou_threshold):
    """Indices of the boxes kept by greedy NMS, by descending score."""
    _check(boxes, scores)
    if boxes.is_cuda:  # without cupy a DeviceError, not a copy to the CPU
        return _cuda.nms(boxes, scores, float(iou_threshold))
    return nms_cpu(boxes, scores, iou_threshold)


def nms_cpu(boxes, scores, iou_threshold):
    device = boxes.device
    boxes, scores = boxes.cpu(), scores.cpu()
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.int64, device=device)
    order = torch.sort(scores, descending=True, stable=True)[1]
    sorted_boxes, threshold = boxes[order].contiguous(), float(iou_threshold)
    if threshold <= 0:
        keep = greedy_sweep(_dense_mask(sorted_boxes, threshold))
    elif threshold >= 1:  # an IoU computed by the formula above never exceeds 1
        keep = np.arange(sorted_boxes.shape[0])
    elif threshold >= MASK_THRESHOLD:
        keep = greedy_sweep(suppression_mask(sorted_boxes, threshold))
    else:
        keep = _greedy_keep(sorted_boxes, threshold)
    return order[torch.from_numpy(keep)].to(device)


def suppression_mask(sorted_boxes, iou_threshold):
    """n×ceil(n/64) uint64 numpy array: bit j of row i set when box i (i < j)
    suppresses box j, for boxes already sorted by descending score."""
    sorted_boxes = sorted_boxes.contiguous()
    threshold = float(iou_threshold)
    if threshold <= 0:
        return _dense_mask(sorted_boxes, threshold)
    num = sorted_boxes.shape[0]
    words = -(-num // WORD_BITS)
    mask = torch.from_numpy(np.zeros(num * words, dtype=np.int64))  # calloc: zero pages are free
    if threshold < 1:  # an IoU computed by the formula above never exceeds 1
        first, second = _overlapping_pairs(sorted_boxes, threshold)
        # Pairs are distinct, so adding their bits ORs them; bit 63 wraps to the sign.
        bits = _BIT[second % WORD_BITS]
        mask.index_add_(0, first * words + second // WORD_BITS, bits)
    return mask.numpy().view(np.uint64).reshape(num, words)


def _greedy_keep(sorted_boxes, threshold):
    """Positions kept by greedy NMS of boxes sorted by descending score, 0 < threshold < 1:
    IoUs are computed for the rows of kept boxes only, then, past LAZY_KEPT kept
    boxes, by the pruned mask of the boxes still alive (see the module docstring)."""
    data = sorted_boxes.numpy()
    num = data.shape[0]
    x1, y1, x2, y2 = (np.ascontiguousarray(data[:, k]) for k in range(4))
    real = data.dtype.type
    one, zero, limit = real(1), real(0), real(threshold)
    with np.errstate(over="ignore", invalid="ignore"):
        width, height = x2 - x1 + one, y2 - y1 + one
        area = width * height
        live = (np.isfinite(data).all(1) & (width > 0) & (height > 0)
                & np.isfinite(width) & np.isfinite(height))

    def iou_over(i, j):
        """IoU(i, j) > threshold, elementwise over index arrays, as kernels/nms.cu."""
        iw = np.maximum(np.minimum(x2[i], x2[j]) - np.maximum(x1[i], x1[j]) + one, zero)
        ih = np.maximum(np.minimum(y2[i], y2[j]) - np.maximum(y1[i], y1[j]) + one, zero)
        inter = iw * ih
        return inter / (area[i] + area[j] - inter) > limit

    alive = np.ones(num, dtype=bool)
    keep, kept_count, start, index, size = [], 0, 0, None, 8  # size: of the next block
    with np.errstate(over="ignore", invalid="ignore"):
        # First, while few are kept, each block's kept rows against every box still
        # alive, compacted as they die: at low thresholds the alive set shrinks fast
        # and no window index is worth building (6000 proposals at IoU 0.3: 2 ms,
        # against 6-8 ms through the windows and 3.5 ms for torchvision's C++ loop).
        positions = np.arange(num)
        while positions.size and (kept_count < DENSE_KEPT or positions.size <= DENSE_ALIVE):
            block = positions[:DENSE_BLOCK]
            kept = block[_resolve_block(iou_over(block[:, None], block[None, :]))]
            keep.append(kept)
            kept_count += kept.size
            positions = positions[DENSE_BLOCK:]
            rows = kept[live[kept]]
            if rows.size and positions.size:
                hit = iou_over(rows[:, None], positions[None, :]).any(0) & live[positions]
                positions = positions[~hit]
        if not positions.size:
            return np.concatenate(keep) if keep else np.empty(0, dtype=np.int64)
        alive[:] = False
        alive[positions] = True
        start = int(positions[0])
        while start < num:
            rest = np.count_nonzero(alive[start:])
            if rest == 0:
                break
            if kept_count >= LAZY_KEPT or index is False:
                # Many rows kept (few suppressed): every pair among the rest, pruned, is
                # cheaper now. Earlier kept boxes have removed all they overlap, so
                # greedy NMS of the alive rest, in order, finishes the job.
                positions = np.flatnonzero(alive[start:]) + start
                mask = suppression_mask(sorted_boxes[torch.from_numpy(positions)], threshold)
                keep.append(positions[greedy_sweep(mask)])
                break
            if index is None or rest < index.size // 4:  # compact: windows shrink with it
                try:
                    index = _WindowIndex(x1, width, live & alive & (np.arange(num) >= start), threshold)
                except OverflowError:
                    index = False
                    continue
            block = _next_alive(alive, start, size)
            kept = block[_resolve_block(iou_over(block[:, None], block[None, :]))]
            keep.append(kept)
            kept_count += kept.size
            start = int(block[-1]) + 1
            rows = kept[live[kept]]
            if rows.size and start < num:
                first, second = index.candidates(rows)
                later = (second >= start) & alive[second]
                first, second = first[later], second[later]
                hit = second[iou_over(first, second)]
                alive[hit] = False
                # many removed per kept row: small blocks, so the rows of later blocks
                # meet fewer boxes already doomed; few: larger ones, fewer passes
                size = 8 if hit.size > 32 * rows.size else min(2 * size, WORD_BITS)
    return np.concatenate(keep) if keep else np.empty(0, dtype=np.int64)


def _next_alive(alive, start, count):
    """Up to `count` positions >= start where alive is set, in order."""
    span = count
    while True:
        found = np.flatnonzero(alive[start:start + span])
        if found.size >= count or start + span >= alive.size:
            return found[:count] + start
        span *= 4


def _resolve_block(over):
    """Which boxes of a block survive each other: over[a, b] is IoU > threshold; the
    block's boxes are in score order, so box a can remove only later boxes b > a."""
    size = over.shape[0]
    later = np.triu(over, 1)
    rows = [int.from_bytes(r, "little") for r in np.packbits(later, axis=1, bitorder="little")]
    gone, kept = 0, []
    for a in range(size):
        if not gone >> a & 1:
            kept.append(a)
            gone |= rows[a]
    return np.asarray(kept, dtype=np.int64)


class _WindowIndex:
    """Live boxes ordered by (width class, x1), to find every box that a given box may
    overlap with IoU > threshold: its own and the two neighbouring width classes, x1
    within reach (the bounds of the module docstring, taken with a margin). One sorted
    key, class * stride + x1, answers the three classes with one search each; stride
    exceeds the x1 span plus any reach, so a window never leaves its class, and the
    slack covers the key's rounding."""

    def __init__(self, x1, width, live, threshold):
        self.loose = threshold * (1 - MARGIN)
        ids = np.flatnonzero(live)
        self.classes = np.full(x1.shape[0], -1, dtype=np.int64)
        self.x1, self.width = x1.astype(np.float64), width.astype(np.float64)
        self.positions = ids
        self.size = ids.size
        self.widest = np.zeros(0)
        if ids.size == 0:
            return
        classes = _width_classes(torch.from_numpy(width[ids]), self.loose).numpy()
        order = np.lexsort((x1[ids], classes))
        self.positions, classes = ids[order], classes[order]
        self.classes[self.positions] = classes
        self.widest = np.zeros(int(classes[-1]) + 1)
        np.maximum.at(self.widest, classes, self.width[self.positions])
        x1_live = self.x1[self.positions]
        self.origin = float(x1_live.min())
        span = float(x1_live.max()) - self.origin
        self.slack = 1e-4 * (1 + max(abs(self.origin), span) + float(self.widest.max()))
        self.stride = span + 2 * (float(self.widest.max()) + self.slack) + 1
        with np.errstate(over="ignore", invalid="ignore"):
            self.keys = classes * self.stride + (x1_live - self.origin)
        if not np.isfinite(self.keys).all() or not np.isfinite(self.stride * self.widest.size):
            raise OverflowError  # coordinates too large for one key: the caller falls back

    def candidates(self, rows):
        """(row, position) pairs: every indexed box that one of `rows` (live positions)
        may suppress, and some it may not."""
        if self.size == 0:
            return rows[:0], rows[:0]
        count = self.widest.shape[0]
        c = self.classes[rows]
        offset = self.x1[rows] - self.origin
        width = self.width[rows]
        lows, highs = [], []
        for shift in (-1, 0, 1):
            other = np.clip(c + shift, 0, count - 1)
            reach = (1 - self.loose) * np.maximum(width, self.widest[other]) + self.slack
            base = other * self.stride + offset
            low = np.searchsorted(self.keys, base - reach)
            high = np.searchsorted(self.keys, base + reach, side="right")
            outside = (c + shift < 0) | (c + shift >= count)
            lows.append(low)
            highs.append(np.where(outside, low, high))
        low, high = np.concatenate(lows), np.concatenate(highs)
        lengths = high - low
        offsets = np.cumsum(lengths) - lengths
        flat = np.arange(int(lengths.sum())) - np.repeat(offsets - low, lengths)
        return np.repeat(np.tile(rows, 3), lengths), self.positions[flat]


def _overlapping_pairs(boxes, threshold):
    """(i, j) with i < j and IoU(i, j) > threshold, as two int64 tensors."""
    x1, y1, x2, y2 = boxes.unbind(1)
    width, height = x2 - x1 + 1, y2 - y1 + 1
    live = (torch.isfinite(boxes).all(1) & (width > 0) & (height > 0)
            & torch.isfinite(width) & torch.isfinite(height))
    ids = torch.nonzero(live)[:, 0]
    empty = torch.empty(0, dtype=torch.int64)
    if ids.numel() < 2:
        return empty, empty
    loose = threshold * (1 - MARGIN)
    classes = _width_classes(width[ids], loose)
    order = torch.argsort(x1[ids], stable=True)
    order = order[torch.argsort(classes[order], stable=True)]
    ids, classes = ids[order], classes[order]
    layout = _padded_layout(classes)
    table = _coordinate_table(boxes[ids], layout["slot"], layout["size"])
    slack = 1e-4 * (1 + float(boxes[ids].abs().max()))
    firsts, seconds = [], []
    scratch = [torch.empty(0, dtype=boxes.dtype) for _ in range(3)] + [torch.empty(0, dtype=torch.bool)]
    limit = boxes.new_tensor(threshold).numpy()[()]  # compared in the boxes' dtype, as the kernel does
    windows = _candidate_windows(table, layout, loose, slack)
    for rows, cols in _tile_batches(windows, layout["size"] - 1):
        a, b = _tile_pairs(table, rows, cols, limit, scratch)
        firsts.append(a)
        seconds.append(b)
    if not firsts:
        return empty, empty
    # Back from slots to sorted positions; each pair was found once.
    slot_to_box = torch.full((layout["size"],), -1, dtype=torch.int64)
    slot_to_box[layout["slot"]] = ids
    a, b = slot_to_box[torch.cat(firsts)], slot_to_box[torch.cat(seconds)]
    return torch.minimum(a, b), torch.maximum(a, b)


def _width_classes(width, loose):
    """Classes of log(width) so that widths within a factor `loose` differ by at
    most one class; at most about 16 classes."""
    logs = torch.log(width.double())
    span = float(logs.max() - logs.min())
    step = max(-math.log(loose) * (1 + MARGIN), span / 16, 1e-12)
    return torch.floor((logs - logs.min()) / step).long()


def _padded_layout(classes):
    """Slots for boxes ordered by class, each class padded to whole blocks of 64
    so that a block holds one class. Padding slots hold NaN boxes."""
    num_classes = int(classes[-1]) + 1
    counts = torch.bincount(classes, minlength=num_classes)
    padded = -(-counts // WORD_BITS) * WORD_BITS
    class_start = torch.cumsum(padded, 0) - padded
    first_of_class = torch.cumsum(counts, 0) - counts
    rank_in_class = torch.arange(classes.numel()) - first_of_class[classes]
    return {"slot": class_start[classes] + rank_in_class, "size": int(padded.sum()) + 1,
            "counts": counts, "class_start": class_start}


def _coordinate_table(boxes, slot, size):
    """5×size: x1, y1, x2, y2, area per slot; the last slot is a NaN box."""
    table = torch.full((5, size), float("nan"), dtype=boxes.dtype)
    table[:4, slot] = boxes.t()
    table[4] = (table[2] - table[0] + 1) * (table[3] - table[1] + 1)
    return table


def _candidate_windows(table, layout, loose, slack):
    """One row per block of 64 slots: (block's first slot, start and length of
    its window in its own class, start and length of its window in the next
    class), the windows holding every slot it may overlap with.

    All blocks at once: the live boxes in slot order (class, then x1) get one
    sorted key, class * stride + x1, with a stride beyond the x1 span plus any
    reach, so that each search stays in the class it asks about; float64 keys,
    whose rounding the slack covers (as _WindowIndex's)."""
    counts, class_start = layout["counts"].numpy(), layout["class_start"].numpy()
    slot = layout["slot"].numpy()
    x1 = table[0].numpy().astype(np.float64)  # per slot; NaN in the padding
    width = (table[2] - table[0] + 1).numpy().astype(np.float64)
    num_classes = counts.size
    first_of_class = np.cumsum(counts) - counts  # in the compact (unpadded) order
    box_class = np.repeat(np.arange(num_classes), counts)
    x1_live = x1[slot]
    widest = np.zeros(num_classes)
    np.maximum.at(widest, box_class, width[slot])
    origin = x1_live.min()
    stride = x1_live.max() - origin + 2 * ((1 - loose) * widest.max() + slack) + 1
    keys = box_class * stride + (x1_live - origin)
    blocks = -(-counts // WORD_BITS)
    c = np.repeat(np.arange(num_classes), blocks)  # each block's class
    rank = np.arange(c.size) - np.repeat(np.cumsum(blocks) - blocks, blocks)
    block = class_start[c] + WORD_BITS * rank
    first_x = x1[block] - origin
    last_x = x1[np.minimum(block + WORD_BITS - 1, class_start[c] + counts[c] - 1)] - origin
    # Same class: the block's own boxes and later ones within reach.
    reach = (1 - loose) * widest[c] + slack
    end = np.searchsorted(keys, c * stride + last_x + reach, side="right")
    end = np.clip(end, first_of_class[c], first_of_class[c] + counts[c])
    same_length = class_start[c] + (end - first_of_class[c]) - block
    # Next class: boxes within reach on either side.
    following = np.minimum(c + 1, num_classes - 1)
    has_next = (c + 1 < num_classes) & (counts[following] > 0)
    reach = (1 - loose) * np.maximum(widest[c], widest[following]) + slack
    low, high = first_of_class[following], first_of_class[following] + counts[following]
    begin = np.clip(np.searchsorted(keys, (c + 1) * stride + first_x - reach), low, high)
    end = np.clip(np.searchsorted(keys, (c + 1) * stride + last_x + reach, side="right"), begin, high)
    next_start = np.where(has_next, class_start[following] + (begin - low), 0)
    next_length = np.where(has_next, end - begin, 0)
    return torch.from_numpy(np.stack([block, block, same_length, next_start, next_length], 1))


def _tile_batches(windows, nan_slot):
    """Yield (rows, cols): rows B×64 slots (B blocks), cols B×K the slots each
    block meets, padded with the NaN slot; blocks of similar K go together."""
    lengths = windows[:, 2] + windows[:, 4]
    order = torch.argsort(lengths, descending=True)
    windows, lengths = windows[order], lengths[order].tolist()
    lane = torch.arange(WORD_BITS)
    first = 0
    while first < len(lengths):
        width = max(lengths[first], 1)  # the longest of this batch
        batch = windows[first:first + max(1, TILE_ELEMENTS // (WORD_BITS * width))]
        block, start, length, next_start, next_length = batch.unbind(1)
        k = torch.arange(width)
        cols = torch.where(k < length[:, None], start[:, None] + k,
                           torch.where(k < (length + next_length)[:, None],
                                       next_start[:, None] + k - length[:, None], nan_slot))
        yield block[:, None] + lane, cols
        first += batch.shape[0]


def _tile_pairs(table, rows, cols, threshold, scratch):
    """Slot pairs (row, col) with row < col and IoU > threshold."""
    r = table[:, rows][..., None]  # 5×B×64×1
    c = table[:, cols][:, :, None, :]  # 5×B×1×K
    shape = (rows.shape[0], rows.shape[1], cols.shape[1])
    size = shape[0] * shape[1] * shape[2]
    if scratch[0].numel() < size:
        scratch[:] = [torch.empty(size, dtype=buffer.dtype) for buffer in scratch]
    inter, union, other, over = (buffer[:size].view(shape) for buffer in scratch)
    torch.minimum(r[2], c[2], out=inter).sub_(torch.maximum(r[0], c[0], out=other)).add_(1).clamp_(min=0)
    torch.minimum(r[3], c[3], out=union).sub_(torch.maximum(r[1], c[1], out=other)).add_(1).clamp_(min=0)
    inter.mul_(union)
    torch.add(r[4], c[4], out=union).sub_(inter)
    inter.div_(union)
    # numpy compares and finds the few hits an order of magnitude faster than torch.
    hits = np.greater(inter.numpy(), threshold, out=over.numpy())
    flat = torch.from_numpy(np.flatnonzero(hits))
    width = shape[2]
    first = rows.reshape(-1)[flat // width]
    second = cols.reshape(-1)[flat // (shape[1] * width) * width + flat % width]
    ahead = first < second  # the diagonal tile holds each pair twice, and the box itself
    return first[ahead], second[ahead]


def _dense_mask(boxes, threshold):
    """The suppression mask from every pair: for threshold <= 0, where even
    boxes that do not overlap suppress each other."""
    num = boxes.shape[0]
    words = -(-num // WORD_BITS)
    padded = torch.full((words * WORD_BITS, 4), float("nan"), dtype=boxes.dtype)
    padded[:num] = boxes
    x1, y1, x2, y2 = padded.t()
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    mask = np.zeros((num, words), dtype=np.uint64)
    for word in range(words):
        r = slice(word * WORD_BITS, min((word + 1) * WORD_BITS, num))
        c = slice(word * WORD_BITS, None)
        inter_w = torch.minimum(x2[r, None], x2[None, c]).sub_(torch.maximum(x1[r, None], x1[None, c]))
        inter_h = torch.minimum(y2[r, None], y2[None, c]).sub_(torch.maximum(y1[r, None], y1[None, c]))
        inter = inter_w.add_(1).clamp_(min=0).mul_(inter_h.add_(1).clamp_(min=0))
        union = torch.add(area[r, None], area[None, c]).sub_(inter)
        over = inter.div_(union) > threshold
        over[:, :WORD_BITS].triu_(1)
        mask[r, word:] = np.packbits(over.numpy(), axis=1, bitorder="little").view(np.uint64)
    return mask


def _check(boxes, scores):
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must be n×4 (x1, y1, x2, y2), got shape {tuple(boxes.shape)}")
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"nms: scores must have shape ({boxes.shape[0]},), got {tuple(scores.shape)}")
    if boxes.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"nms: boxes must be float32 or float64, got {boxes.dtype}")
    if scores.device != boxes.device:
        raise ValueError(f"nms: scores are on {scores.device} but boxes are on {boxes.device}")
