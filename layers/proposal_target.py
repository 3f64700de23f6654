"""ProposalTargetLayer: sample the Fast R-CNN training RoIs and their targets.

bottoms:
  rpn_rois              R x 5    (n, x1, y1, x2, y2) from the ProposalLayer
  gt_boxes              G x 5    (x1, y1, x2, y2, class), class in 1..K-1; G may be 0
                        (G x 6 for several images: the image index n last)
  gt_ishard             G        optional (3rd bottom): nonzero marks a hard gt box
tops:
  rois                  S x 5    (n, x1, y1, x2, y2): foreground first, then background
  labels                S        class of each roi (0 for background), float32
  bbox_targets          S x 4K   normalised (dx, dy, dw, dh) in the 4 columns of its class
  bbox_inside_weights   S x 4K   BBOX_INSIDE_WEIGHTS in those columns, 0 elsewhere
  bbox_outside_weights  S x 4K   1 where the inside weights are > 0, else 0

Boxes are (x1, y1, x2, y2) with inclusive corners (layers/bbox.py); K is
`num_classes` of param_str (background included). S is known only per forward:
at most BATCH_SIZE, fewer when the image lacks candidates (as py-faster-rcnn).

py-faster-rcnn's semantics, with the TRAIN section (this layer only trains): the
gt boxes join the candidates; a candidate is foreground when its best IoU with a
gt (float64, as py-faster-rcnn's bbox_overlaps) reaches FG_THRESH, background
when it lies in [BG_THRESH_LO, BG_THRESH_HI);
round(FG_FRACTION * BATCH_SIZE) foregrounds at most are drawn without
replacement by the layer's generator (seeded with RNG_SEED), then
BATCH_SIZE minus those of backgrounds; targets go to each roi's best gt,
normalised by BBOX_NORMALIZE_MEANS / STDS when
BBOX_NORMALIZE_TARGETS_PRECOMPUTED.

With G x 6 gt boxes each image n (those of the rpn rois and the gt boxes) is
sampled alone, in image order from the layer's one generator, against its own
gt boxes: BATCH_SIZE and FG_FRACTION are per image (as py-faster-rcnn and
detectron2 define them), and the tops come image by image.

Beyond py-faster-rcnn:
  - TRAIN.ADD_JITTERED_GT also adds a copy of each (easy) gt box shifted by up
    to +-GT_JITTER / 2 of its width and height (uniform, from the generator);
  - gt_ishard: only easy gt boxes join the candidates, and a candidate whose
    IoU with a hard gt reaches FG_THRESH is neither foreground nor background;
  - no gt boxes (G = 0; py-faster-rcnn crashes): every candidate is background,
    whatever BG_THRESH_LO, so the batch is BATCH_SIZE background rois (or all
    the proposals, if fewer);
  - a gt box with x2 < x1 or y2 < y1, a class outside 1..K-1, or an rpn roi
    with a batch index other than 0 is an error.
"""

import dataclasses

import torch

from pyfrcnn.layer import Layer

from .bbox import bbox_overlaps, bbox_transform, check_boxes
from .config import detection_config, parse_param_str
from .constants import constant
from .sampling import generator_state, make_generator, set_generator_state, subsample, uniform

GT_JITTER = 0.05


@dataclasses.dataclass
class ProposalTargetParams:
    num_classes: int = 0


def jitter_boxes(boxes, generator, jitter=GT_JITTER):
    """N x 4 boxes shifted by (u - 0.5) * jitter * width (and height), u uniform in [0, 1)."""
    w = boxes[:, 2] - boxes[:, 0] + 1.0
    h = boxes[:, 3] - boxes[:, 1] + 1.0
    u = uniform((boxes.shape[0], 2), generator, device=boxes.device, dtype=boxes.dtype)
    dx = (u[:, 0] - 0.5) * jitter * w
    dy = (u[:, 1] - 0.5) * jitter * h
    return boxes + torch.stack([dx, dy, dx, dy], dim=1)


def expand_targets(targets, labels, num_classes, inside_weights, num_fg=None):
    """S x 4 targets -> S x 4K with each foreground row's targets in the columns of its
    class; returns (bbox_targets, bbox_inside_weights). `num_fg`: the foreground
    rows are the first num_fg (the layer's order), which spares a nonzero()."""
    s = targets.shape[0]
    bbox_targets = targets.new_zeros((s, 4 * num_classes))
    bbox_inside = targets.new_zeros((s, 4 * num_classes))
    if num_fg is None:
        fg = (labels > 0).nonzero().squeeze(1)
    else:
        fg = torch.arange(num_fg, device=targets.device)
    columns = 4 * labels[fg].long()[:, None] + torch.arange(4, device=targets.device)
    bbox_targets[fg[:, None], columns] = targets[fg]
    bbox_inside[fg[:, None], columns] = constant(inside_weights, targets.device)
    return bbox_targets, bbox_inside


class ProposalTargetLayer(Layer):
    min_bottoms = 2
    max_bottoms = 3
    num_tops = 5

    def layer_setup(self, bottom_shapes):
        self.params = parse_param_str(self, getattr(self, "param_str", ""), ProposalTargetParams)
        if self.params.num_classes < 2:
            raise self.error(f"param_str needs 'num_classes' (background included), at least 2; "
                             f"got {self.params.num_classes}")
        self.generator = make_generator(detection_config(self.config).RNG_SEED)

    def _check_bottoms(self, shapes):
        def fail(index, name, expected):
            raise self.error(f"bottom {index} ({name}) must be {expected}, got "
                             f"{'x'.join('?' if d is None else str(d) for d in shapes[index])}")

        if len(shapes[0]) != 2 or shapes[0][1] not in (None, 5):
            fail(0, "rpn_rois", "R x 5")
        if len(shapes[1]) != 2 or shapes[1][1] not in (None, 5, 6):
            fail(1, "gt_boxes", "G x 5, or G x 6 (the image index last)")
        if len(shapes) > 2:
            ishard, num_gt = shapes[2], shapes[1][0]
            if len(ishard) != 1 or (None not in (ishard[0], num_gt) and ishard[0] != num_gt):
                fail(2, "gt_ishard", f"a vector of G = {num_gt} flags")

    def reshape(self, bottom_shapes):
        self._check_bottoms(bottom_shapes)
        k4 = 4 * self.params.num_classes
        return [(None, 5), (None,), (None, k4), (None, k4), (None, k4)]

    def forward(self, *bottoms):
        self._check_bottoms([tuple(b.shape) for b in bottoms])
        if bottoms[1].shape[1] == 6:
            return self._forward_images(*bottoms)
        train = detection_config(self.config).TRAIN
        rpn_rois = bottoms[0].detach().float()
        device = rpn_rois.device
        gt_boxes = bottoms[1].detach().to(device=device, dtype=torch.float32)
        hard = (bottoms[2].detach().to(device) != 0 if len(bottoms) > 2
                else torch.zeros(gt_boxes.shape[0], dtype=torch.bool, device=device))
        if self.host_checks(gt_boxes):
            self._check_inputs(rpn_rois, gt_boxes)

        # Without a gt_ishard bottom every gt is easy: a slice, not a boolean index
        # (which on a GPU would wait for the device).
        easy_boxes = gt_boxes[~hard, :4] if len(bottoms) > 2 else gt_boxes[:, :4]
        candidates = [rpn_rois[:, 1:], easy_boxes]
        if train.ADD_JITTERED_GT:
            candidates.append(jitter_boxes(easy_boxes, self.generator))
        boxes = torch.cat(candidates)

        fg_inds, bg_inds, gt_assignment = self._fg_bg(boxes, gt_boxes, hard, train)
        fg_inds = subsample(fg_inds, round(train.FG_FRACTION * train.BATCH_SIZE), self.generator)
        bg_inds = subsample(bg_inds, train.BATCH_SIZE - fg_inds.shape[0], self.generator)
        keep = torch.cat([fg_inds, bg_inds])

        boxes = boxes[keep]
        labels = boxes.new_zeros(keep.shape[0])
        targets = boxes.new_zeros(boxes.shape)
        if gt_boxes.shape[0]:
            assigned = gt_boxes[gt_assignment[keep]]
            labels[:fg_inds.shape[0]] = assigned[:fg_inds.shape[0], 4]
            targets = bbox_transform(boxes, assigned[:, :4])
        if train.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
            means = constant(train.BBOX_NORMALIZE_MEANS, device)
            stds = constant(train.BBOX_NORMALIZE_STDS, device)
            targets = (targets - means) / stds
        # Foregrounds come first, and each has a class >= 1 (checked on the CPU).
        bbox_targets, bbox_inside = expand_targets(targets, labels, self.params.num_classes,
                                                   train.BBOX_INSIDE_WEIGHTS, fg_inds.shape[0])
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        return rois, labels, bbox_targets, bbox_inside, (bbox_inside > 0).float()

    def _forward_images(self, rpn_rois, gt_boxes, gt_ishard=None):
        """G x 6 gt boxes: each image n (that the rpn rois or gt boxes name) through
        the one-image forward, in image order, its rois given batch index n. The
        image count is read on the host (only on this path)."""
        rpn_rois, gt_boxes = rpn_rois.detach(), gt_boxes.detach()
        num_images = int(max(rpn_rois[:, 0].max().item() if rpn_rois.shape[0] else -1,
                             gt_boxes[:, 5].max().item() if gt_boxes.shape[0] else -1)) + 1
        per_image = []
        for n in range(max(num_images, 1)):
            mine = gt_boxes[:, 5] == n
            rois = rpn_rois[rpn_rois[:, 0] == n].clone()
            rois[:, 0] = 0
            bottoms = [rois, gt_boxes[mine, :5]]
            if gt_ishard is not None:
                bottoms.append(gt_ishard[mine])
            tops = self.forward(*bottoms)
            tops[0][:, 0] = n
            per_image.append(tops)
        return tuple(torch.cat(tops) for tops in zip(*per_image))

    def snapshot_state(self):
        return {"generator": generator_state(self.generator)}

    def restore_state(self, state):
        set_generator_state(self.generator, state["generator"])

    def _check_inputs(self, rpn_rois, gt_boxes):
        check_boxes(self, "gt_boxes", gt_boxes[:, :4])
        classes = gt_boxes[:, 4]
        bad = (classes < 1) | (classes >= self.params.num_classes) | (classes != classes.round())
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise self.error(f"gt_boxes row {row} has class {classes[row].item():g}; classes must be "
                             f"integers in 1..{self.params.num_classes - 1} (num_classes "
                             f"{self.params.num_classes} counts the background)")
        if bool((rpn_rois[:, 0] != 0).any()):
            raise self.error("rpn_rois must all have batch index 0 (one image per batch, "
                             "as py-faster-rcnn)")

    @staticmethod
    def _fg_bg(boxes, gt_boxes, hard, train):
        """Foreground and background candidate indices, and each candidate's best gt."""
        n = boxes.shape[0]
        if gt_boxes.shape[0] == 0:
            everything = torch.arange(n, device=boxes.device)
            return everything[:0], everything, torch.zeros(n, dtype=torch.long, device=boxes.device)
        # float64 as py-faster-rcnn's bbox_overlaps, so FG_THRESH / BG_THRESH_* split alike
        overlaps = bbox_overlaps(boxes.double(), gt_boxes[:, :4].double())
        max_overlaps, gt_assignment = overlaps.max(dim=1)
        fg = max_overlaps >= train.FG_THRESH
        bg = (max_overlaps < train.BG_THRESH_HI) & (max_overlaps >= train.BG_THRESH_LO)
        # With no hard gt every IoU is masked to -1 and nothing changes; the
        # mask, not a test of hard.any(), keeps the host out of the step.
        near_hard = overlaps.masked_fill(~hard[None, :], -1.0).max(dim=1).values >= train.FG_THRESH
        fg &= ~near_hard
        bg &= ~near_hard
        return fg.nonzero().squeeze(1), bg.nonzero().squeeze(1), gt_assignment


__all__ = ["ProposalTargetLayer", "ProposalTargetParams", "jitter_boxes", "expand_targets", "GT_JITTER"]
