"""Testing during training: detect on the `data.test` dataset with the test net
and the train net's current weights, and score VOC mAP.

The solver (pyfrcnn/hooks.py) asks every registered evaluator factory for an
`evaluate(step, train_net)` callable; this one answers when the solver file
gives a `test_net` and a `data.test` spec. `test_iter`, when positive, caps the
number of test images (0: all). The train net's bbox_pred still predicts
normalised deltas, so they are un-normalised with the run's own means / stds.
"""

import logging
import time

import torch

from pyfrcnn.progress import progress, quiet

from .config import detection_config
from .inference import im_detect, postprocess_detections, to_records

log = logging.getLogger(__name__)


class DetectionEvaluator:
    def __init__(self, solver, spec):
        self.solver = solver
        self.spec = spec
        self.net = None
        self.dataset = None

    def _setup(self):
        from pyfrcnn.net import Net

        from .datasets import open_dataset

        s = self.solver
        data = s.run_config.get("data")
        self.dataset = open_dataset(self.spec, root=data.root, cache_dir=data.cache_folder,
                                    shapes=data.shapes)
        self.net = Net(s.config.test_net, "TEST", config=s.run_config,
                       input_shapes={"data": (1, 3, None, None)}).to(s.device)
        self.net.eval()

    def bbox_stats(self, cfg):
        train = cfg.TRAIN
        if train.BBOX_NORMALIZE_TARGETS_PRECOMPUTED:
            return train.BBOX_NORMALIZE_MEANS, train.BBOX_NORMALIZE_STDS
        return None

    def __call__(self, step, train_net):
        from .evaluation import evaluate
        from .image import load_image

        if self.net is None:
            self._setup()
        self.net.load(dict(train_net.params))
        cfg = detection_config(self.solver.run_config)
        stats = self.bbox_stats(cfg)
        dataset, classes = self.dataset, list(self.dataset.classes)
        limit = self.solver.config.test_iter
        count = min(limit, len(dataset)) if limit and limit > 0 else len(dataset)
        records, start = [], time.perf_counter()
        with torch.no_grad(), progress(count, f"test {dataset.name}", "im",
                                       enabled=not quiet()) as bar:
            for i in range(count):
                im = load_image(dataset.image_path(i))
                scores, boxes = im_detect(self.net, im, cfg, stats)
                class_dets = postprocess_detections(scores, boxes, cfg.TEST.SCORE_THRESH,
                                                    cfg.TEST.NMS, cfg.TEST.MAX_PER_IMAGE)
                records.extend(to_records([d.cpu() for d in class_dets], classes,
                                          dataset.image_ids[i]))
                bar.update(1)
        annotations = [dataset.annotation(i) for i in range(count)]
        result = evaluate(records, annotations, classes, "voc07", as_voc_results=True)
        log.info("tested %d images of %s in %.1f s", count, dataset.name,
                 time.perf_counter() - start)
        metrics = {"mAP": result["mAP"]}
        metrics.update({f"AP/{name}": ap for name, ap in result["ap"].items()})
        return metrics


def evaluator_factory(solver):
    """An evaluate callable when the run has a test net and a test dataset, else None."""
    data = solver.run_config.get("data")
    spec = data.spec("TEST") if data is not None else None
    if not solver.config.test_net or not spec:
        return None
    return DetectionEvaluator(solver, spec)
