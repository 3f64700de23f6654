"""RoIDataLayer: N = TRAIN.IMS_PER_BATCH images and their ground truth per forward
(py-faster-rcnn's roi_data_layer.layer.RoIDataLayer, `type: "Python"`, param_str
"'num_classes': 21"; N is 1 in TEST, and 1 by default).

bottoms: none
tops (by position; name them as you like, give the first 2 to 5):
  data            N x 3 x H x W   BGR minus PIXEL_MEANS, scaled (image.py)
  im_info         N x 3           (h, w, im_scale) of each image
  gt_boxes        G x 5           (x1, y1, x2, y2, class) in blob pixels: boxes x im_scale
  gt_ishard       G               1 for objects marked difficult, else 0
  dontcare_areas  D x 4           don't-care regions (COCO crowds) x im_scale
With N > 1 the images are padded with zeros (after the mean is subtracted, as
py-faster-rcnn's im_list_to_blob) at the bottom and right to the largest height
and width, image n keeping its own (h, w) in im_info row n; gt_boxes is G x 6,
(x1, y1, x2, y2, class, n), and dontcare_areas D x 5, (x1, y1, x2, y2, n): the
image index goes last, so columns 0..4 mean what they mean for one image. The
rows come image by image. N = 1 keeps the G x 5 and D x 4 of py-faster-rcnn.
Boxes are inclusive 0-based pixels (layers/datasets/base.py); all tops are
float32, on the device of the net (net.to(device) moves the layer's `like`
buffer). On a GPU the loader threads put each sample in pinned memory and
forward copies it with non_blocking=True, so the copy overlaps the device's
work instead of waiting for it; the gt boxes are checked on the host before
they travel (the target layers skip that check on a GPU: see
Layer.host_checks).

The dataset is the run config's `dataset` (a Dataset object), or else is
opened from the `data` section's spec for the layer's phase (a DataConfig or a
dict; datasets/config.py) on the first forward, so building a net reads no
data. TRAIN walks the roidb (datasets/roidb.py: difficult objects dropped
unless data.use_difficult, empty images skipped if data.skip_empty, flipped
copies appended if TRAIN.USE_FLIPPED) in the order of datasets/sampler.py,
seeded from RNG_SEED, one scale of TRAIN.SCALES drawn per image, capped by
TRAIN.MAX_SIZE. TEST walks every image in order at TEST.SCALES[0], TEST.MAX_SIZE,
difficult objects kept and flagged.

Images are loaded and prepared ahead of the net by data.workers threads, at
most data.prefetch ahead (prefetch.py); the order is the same for any number
of workers. A sample that fails to load (missing, corrupt, wrong size) is
skipped with a warning naming its file and counted in `failed_samples`;
data.max_failures failures in a row stop the run with a DataError; with N > 1
a failed sample skips its batch (the next N are drawn).
snapshot_state() describes the position after the last sample handed to the
net (not the read-ahead); restore_state() continues the exact sequence.
"""

import collections
import copy
import dataclasses
import functools
import logging
import os
import threading

import numpy as np
import torch

from pyfrcnn.errors import DataError
from pyfrcnn.layer import Layer

from .bbox import check_boxes
from .config import detection_config, parse_param_str
from .datasets import open_dataset, validate_data_config
from .datasets.roidb import build_roidb
from .datasets.sampler import Sampler
from .image import image_to_blob, load_image
from .prefetch import Prefetcher

log = logging.getLogger(__name__)


def top_shapes(n):
    """The shapes of the five tops for n images a forward."""
    if n == 1:
        return ((1, 3, None, None), (1, 3), (None, 5), (None,), (None, 4))
    return ((n, 3, None, None), (n, 3), (None, 6), (None,), (None, 5))


TOP_SHAPES = top_shapes(1)


@dataclasses.dataclass
class RoIDataParams:
    num_classes: int = 0   # 0: whatever the dataset has


@dataclasses.dataclass
class _Source:
    phase: str
    dataset: object
    roidb: list
    sampler: Sampler
    scales: tuple
    max_size: int


def loader_thread_init():
    """Keep a loader thread out of the net's way on a small machine.

    torch's intra-op threads are an OpenMP team per calling thread: a loader
    thread with the default team starts as many threads again as the net's
    own, and the net's parallel regions then wait for descheduled threads (the
    main job on 2 cores: 0.119 s a step with 2 loader threads, 0.070 with
    none). So a loader runs torch on one thread, and at the lowest CPU priority
    (Linux: a thread is a task with a nice value of its own), so that it takes
    the cores when the net leaves them idle; if it falls behind, the net waits
    for data, its cores go idle and the loader catches up."""
    torch.set_num_threads(1)
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux, or not allowed: equal priority
        pass


def load_sample(source, pixel_means, task, pin=False):
    """The tops of one planned sample (runs in a loader thread), in pinned
    memory when `pin` (the net is on a GPU)."""
    index, scale_index, _ = task
    entry = source.roidb[index]
    im = load_image(entry.path)
    if im.shape[:2] != (entry.height, entry.width):
        raise DataError(f"{entry.path}: image is {im.shape[1]}x{im.shape[0]} but its annotation "
                        f"says {entry.width}x{entry.height}")
    if entry.flipped:
        im = im[:, ::-1].copy()  # a 1-px-wide flipped view would keep its negative stride
    blob, im_scale = image_to_blob(im, source.scales[scale_index], source.max_size, pixel_means)
    gt_boxes = np.empty((len(entry.labels), 5), dtype=np.float32)
    # in float64, then rounded once to float32, as py-faster-rcnn's uint16 boxes * im_scale:
    # a float32 product rounds twice and moves 1 in 6 corners by an ulp (near-ties in IoU)
    gt_boxes[:, :4] = entry.boxes.astype(np.float64) * im_scale
    gt_boxes[:, 4] = entry.labels
    im_info = torch.tensor([[blob.shape[2], blob.shape[3], im_scale]], dtype=torch.float32)
    tops = (blob, im_info, torch.from_numpy(gt_boxes),
            torch.from_numpy(entry.hard.astype(np.float32)),
            torch.from_numpy(entry.dontcare * np.float32(im_scale)))
    return tuple(t.pin_memory() for t in tops) if pin else tops


def batch_samples(samples):
    """The tops of N > 1 loaded samples as one batch: the images zero-padded to
    the largest, the gt boxes and dontcare areas with their image index last."""
    height = max(s[0].shape[2] for s in samples)
    width = max(s[0].shape[3] for s in samples)
    data = torch.zeros((len(samples), 3, height, width), dtype=torch.float32)
    for n, s in enumerate(samples):
        data[n, :, :s[0].shape[2], :s[0].shape[3]] = torch.as_tensor(s[0])
    im_info = torch.cat([s[1] for s in samples])

    def indexed(rows, n):
        return torch.cat([rows, rows.new_full((rows.shape[0], 1), float(n))], dim=1)

    gt_boxes = torch.cat([indexed(s[2], n) for n, s in enumerate(samples)])
    gt_ishard = torch.cat([s[3] for s in samples])
    dontcare = torch.cat([indexed(s[4].reshape(-1, 4), n) for n, s in enumerate(samples)])
    return data, im_info, gt_boxes, gt_ishard, dontcare


def load_batch(source, pixel_means, task, pin=False):
    """The tops of a planned batch of N > 1 samples; a sample that fails fails the
    batch, its DataError carrying the roidb index (`roidb_index`)."""
    indices, scales, _ = task
    samples = []
    for index, scale in zip(indices, scales):
        try:
            samples.append(load_sample(source, pixel_means, (index, scale, None)))
        except DataError as e:
            e.roidb_index = index
            raise
    tops = batch_samples(samples)
    return tuple(t.pin_memory() for t in tops) if pin else tops


class RoIDataLayer(Layer):
    num_bottoms = 0
    min_tops = 2
    max_tops = 5

    def layer_setup(self, bottom_shapes):
        self.params = parse_param_str(self, getattr(self, "param_str", ""), RoIDataParams)
        self.detection = detection_config(self.config)
        self.data_config = validate_data_config(self.config.get("data"), "data")
        self._source = None
        self._prefetcher = None
        self._position = None     # sampler state after the last sample handed out
        self._restored = None     # a state restored before the data was opened
        self.failed_samples = collections.Counter()
        # Follows net.to(device), so that forward knows where the tops go.
        self.register_buffer("like", torch.zeros(()), persistent=False)

    @property
    def ims_per_batch(self):
        """N: TRAIN.IMS_PER_BATCH in TRAIN, 1 in TEST."""
        return self.detection.TRAIN.IMS_PER_BATCH if self.phase == "TRAIN" else 1

    def reshape(self, bottom_shapes):
        return top_shapes(self.ims_per_batch)[:len(self.param.top)]

    # -- data --------------------------------------------------------------
    def prepare(self):
        """Open the dataset and build the roidb for the current phase (forward does
        this on first use)."""
        self.close()
        data = self.data_config
        dataset = self.config.get("dataset")
        if dataset is None:
            spec = data.spec(self.phase)
            if spec is None:
                raise self.error(f"no {self.phase} dataset: give the solver file a data section "
                                 f"with '{self.phase.lower()}: <dataset spec>' "
                                 "(e.g. voc_2007_trainval, shapes:train)")
            dataset = open_dataset(spec, root=data.root, cache_dir=data.cache_folder,
                                   shapes=data.shapes)
        # A net with more classes than the data (py-faster-rcnn's 21-class VOC net on a
        # 6-class set) trains, with the extra outputs never labelled; fewer cannot.
        if self.params.num_classes and self.params.num_classes < dataset.num_classes:
            raise self.error(f"param_str says 'num_classes': {self.params.num_classes} but dataset "
                             f"'{dataset.name}' has {dataset.num_classes} classes (background "
                             f"included: {', '.join(dataset.classes)})")
        if self.params.num_classes and self.params.num_classes > dataset.num_classes:
            log.warning("%s: param_str says 'num_classes': %d, dataset '%s' has %d; classes "
                        "%d and up are never labelled", self.describe(), self.params.num_classes,
                        dataset.name, dataset.num_classes, dataset.num_classes)
        train = self.phase == "TRAIN"
        knobs = self.detection.phase(self.phase)
        roidb, skipped = build_roidb(dataset, self.phase,
                                     use_flipped=train and self.detection.TRAIN.USE_FLIPPED,
                                     use_difficult=data.use_difficult, skip_empty=data.skip_empty)
        if not roidb:
            hint = (f" ({skipped['empty_images']} image(s) with no object skipped; "
                    "data.skip_empty: false keeps them)") if skipped["empty_images"] else ""
            raise DataError(f"{self.describe()}: dataset '{dataset.name}' has no image to "
                            f"{'train' if train else 'test'} on{hint}")
        sampler = Sampler([e.width for e in roidb], [e.height for e in roidb],
                          num_scales=len(knobs.SCALES), seed=self.detection.RNG_SEED, shuffle=train,
                          aspect_grouping=train and self.detection.TRAIN.ASPECT_GROUPING)
        if self._restored is not None:
            sampler.set_state(self._restored["sampler"], where=self.describe())
            self._restored = None
        self._source = _Source(self.phase, dataset, roidb, sampler, tuple(knobs.SCALES),
                               knobs.MAX_SIZE)
        self._position = sampler.state()
        log.info("%s: %s, %d roidb entries for %s", self.describe(), dataset.name, len(roidb),
                 self.phase)

    def _plan(self):
        """(index, scale, sampler state after) of one image, or with N > 1 the
        tuples of N indices and scales drawn in turn, and the state after them."""
        sampler = self._source.sampler
        if self.ims_per_batch == 1:
            index, scale = sampler.next()
            return index, scale, sampler.state()
        visits = [sampler.next() for _ in range(self.ims_per_batch)]
        return tuple(v[0] for v in visits), tuple(v[1] for v in visits), sampler.state()

    def forward(self):
        if self._source is None or self._source.phase != self.phase:
            self.prepare()
        device = self.like.device
        if self._prefetcher is None:
            load = load_sample if self.ims_per_batch == 1 else load_batch
            work = functools.partial(load, self._source, self.detection.PIXEL_MEANS,
                                     pin=device.type == "cuda")
            self._prefetcher = Prefetcher(self._plan, work, workers=self.data_config.workers,
                                          depth=self.data_config.prefetch, name=f"data-{self.name}",
                                          init=loader_thread_init)
        failures = 0
        while True:
            slot = self._prefetcher.next()
            self._position = slot.task[2]
            try:
                tops = slot.result()
            except DataError as e:
                path = self._source.roidb[getattr(e, "roidb_index", slot.task[0])].path
                self.failed_samples[path] += 1
                failures += 1
                log.warning("%s: sample skipped: %s", self.describe(), e)
                if failures >= self.data_config.max_failures:
                    raise DataError(f"{self.describe()}: {failures} samples in a row failed to "
                                    f"load (data.max_failures); the last: {e}") from None
                continue
            return self._to_device(tops[:len(self.param.top)], device)

    def _to_device(self, tops, device):
        """The host tops on `device`: checked on the host first, then copied
        without waiting for the device (from pinned memory on a GPU)."""
        if device.type == "cpu":
            return tops
        if len(tops) > 2:
            check_boxes(self, "gt_boxes", tops[2][:, :4])
        if device.type == "cuda":
            # A sample read ahead before the net moved is not pinned yet.
            tops = [t if t.is_pinned() else t.pin_memory() for t in tops]
        return tuple(t.to(device, non_blocking=True) for t in tops)

    def close(self):
        """Stop the loader threads (the data stays open)."""
        if self._prefetcher is not None:
            self._prefetcher.close()
            self._prefetcher = None

    def weights_meta(self):
        """The class names the net was trained on (kept in snapshots for `pyfrcnn detect`)."""
        if self._source is None:
            return None
        return {"classes": list(self._source.dataset.classes)}

    # -- exact resume ------------------------------------------------------
    def snapshot_state(self):
        if self._position is None:
            return copy.deepcopy(self._restored)
        state = dict(self._position)
        state["perm"] = list(state["perm"]) if state["perm"] is not None else None
        state["rng"] = copy.deepcopy(state["rng"])
        return {"phase": self._source.phase, "dataset": self._source.dataset.name,
                "sampler": state}

    def restore_state(self, state):
        if state is None:
            return
        self.close()
        if self._source is None:
            self._restored = copy.deepcopy(state)
            return
        self._source.sampler.set_state(copy.deepcopy(state["sampler"]), where=self.describe())
        self._position = self._source.sampler.state()
