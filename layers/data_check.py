"""`pyfrcnn data check SPEC`: is a dataset fit to train on?

check_dataset(spec) opens the dataset as training would (annotation problems
are skipped and counted, not raised), then loads every image (unless
load_images=False) to find the missing, corrupt, truncated or wrongly sized
ones. The report counts images, objects per class, difficult objects, empty
images, boxes clipped to their image or dropped, and lists the files that
failed and why. The command prints it and exits with status 1 when any file
failed (clipped and dropped boxes are warnings, not failures).
"""

import collections
import dataclasses
import logging
import sys


from pyfrcnn.errors import PyfrcnnError
from pyfrcnn.progress import progress, quiet

from .datasets import open_dataset
from .image import load_image
from .prefetch import Prefetcher

log = logging.getLogger(__name__)


@dataclasses.dataclass
class DataReport:
    name: str
    spec: str
    images: int = 0
    objects_per_class: dict = dataclasses.field(default_factory=dict)
    difficult: int = 0
    empty_images: int = 0
    dontcare_regions: int = 0
    boxes_clipped: int = 0
    boxes_dropped: int = 0
    objects_unknown_class: int = 0
    images_checked: int = 0
    failures: list = dataclasses.field(default_factory=list)   # (file, reason)
    notes: list = dataclasses.field(default_factory=list)      # (file, message)
    skipped: list = dataclasses.field(default_factory=list)    # (image, why training skips it)

    @property
    def ok(self):
        return not self.failures

    def format(self, max_lines=20):
        lines = [f"dataset {self.name} ({self.spec})",
                 f"  images: {self.images} ({self.empty_images} with no object; "
                 f"{self.images_checked} loaded and checked)",
                 f"  objects: {sum(self.objects_per_class.values())} "
                 f"({self.difficult} difficult; {self.dontcare_regions} don't-care regions)"]
        width = max((len(c) for c in self.objects_per_class), default=0)
        lines += [f"    {name:<{width}}  {count}" for name, count in self.objects_per_class.items()]
        lines.append(f"  boxes clipped to their image: {self.boxes_clipped}; dropped: "
                     f"{self.boxes_dropped}; objects of unknown classes: {self.objects_unknown_class}")
        for title, items in (("warnings", self.notes), ("skipped by training", self.skipped),
                             ("failed files", self.failures)):
            if not items:
                continue
            lines.append(f"  {title}: {len(items)}")
            lines += [f"    {path}: {message}" for path, message in items[:max_lines]]
            if len(items) > max_lines:
                lines.append(f"    ... and {len(items) - max_lines} more")
        lines.append("OK" if self.ok else f"FAILED: {len(self.failures)} file(s) unusable")
        return "\n".join(lines)


def training_skip_reason(ann, skip_empty=True, use_difficult=False):
    """Why build_roidb leaves this annotation out of training, or None."""
    if not skip_empty:
        return None
    if len(ann["labels"]) == 0:
        return "no object (data.skip_empty)"
    if not use_difficult and ann["difficult"].all():
        return (f"all {len(ann['labels'])} object(s) are difficult (data.use_difficult: false, "
                "data.skip_empty)")
    return None


def check_dataset(spec, root=None, cache_dir=None, load_images=True, workers=2, shapes=None,
                  skip_empty=True, use_difficult=False):
    """A DataReport for the dataset `spec` names (DataError / ConfigError if it cannot
    be opened at all). Images that training leaves out (data.skip_empty,
    data.use_difficult as given) are listed with the reason; files that fail to
    parse or load are failures (training skips them too)."""
    dataset = open_dataset(spec, root=root, cache_dir=cache_dir, shapes=shapes)
    counts = collections.Counter()
    report = DataReport(name=dataset.name, spec=str(spec), images=len(dataset))
    for i in range(len(dataset)):
        ann = dataset.annotation(i)
        counts.update(int(k) for k in ann["labels"])
        report.difficult += int(ann["difficult"].sum())
        report.empty_images += int(len(ann["labels"]) == 0)
        report.dontcare_regions += len(ann["dontcare"])
        reason = training_skip_reason(ann, skip_empty, use_difficult)
        if reason:
            report.skipped.append((dataset.image_path(i), reason))
    report.objects_per_class = {dataset.classes[k]: counts[k] for k in range(1, dataset.num_classes)}
    stats = dataset.stats
    report.boxes_clipped = stats["boxes_clipped"]
    report.boxes_dropped = stats["boxes_dropped"]
    report.objects_unknown_class = stats["objects_unknown_class"]
    report.failures = list(dataset.failures)
    report.notes = list(dataset.notes)
    if load_images and len(dataset):
        report.failures += _check_images(dataset, workers)
        report.images_checked = len(dataset)
    return report


def _check_image(dataset, i):
    path = dataset.image_path(i)
    ann = dataset.annotation(i)
    try:
        im = load_image(path)
    except PyfrcnnError as e:
        return (path, str(e).removeprefix(f"{path}: "))
    if im.shape[:2] != (ann["height"], ann["width"]):
        return (path, f"image is {im.shape[1]}x{im.shape[0]} but its annotation says "
                      f"{ann['width']}x{ann['height']}")
    return None


def _check_images(dataset, workers):
    indices = iter(range(len(dataset)))
    failures = []
    with Prefetcher(lambda: next(indices, None),
                    lambda i: None if i is None else _check_image(dataset, i),
                    workers=workers, depth=max(2 * workers, 1), name="data-check") as loader:
        bar = progress(len(dataset), f"check {dataset.name}", "im", enabled=not quiet())
        for _ in range(len(dataset)):
            failure = loader.next().result()
            bar.update(1)
            if failure is not None:
                failures.append(failure)
        bar.close()
    return failures


def add_arguments(parser):
    parser.add_argument("spec", help="dataset spec: voc:<folder>:<set>, coco:<json>:<images>, "
                        "shapes:<split>, voc_2007_trainval, ...")
    from pyfrcnn.arguments import add_data_root_argument

    add_data_root_argument(parser, default=None)
    parser.add_argument("--cache-dir", default=None,
                        help="annotation cache (default: <data-root>/cache)")
    parser.add_argument("--no-images", action="store_true", help="check the annotations only")
    parser.add_argument("--workers", type=int, default=2, help="image loading threads")
    parser.add_argument("--max-lines", type=int, default=20, help="files listed per kind of problem")
    parser.add_argument("--keep-empty", action="store_true",
                        help="as data.skip_empty: false (training keeps images with no object)")
    parser.add_argument("--use-difficult", action="store_true",
                        help="as data.use_difficult: true (training uses difficult objects)")


def run(args):
    """Print the report; the exit status is 1 when a file failed."""
    try:
        report = check_dataset(args.spec, root=args.data_root, cache_dir=args.cache_dir,
                               load_images=not args.no_images, workers=max(args.workers, 0),
                               skip_empty=not args.keep_empty, use_difficult=args.use_difficult)
    except PyfrcnnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(report.format(max_lines=args.max_lines))
    return 0 if report.ok else 1


__all__ = ["DataReport", "check_dataset", "add_arguments", "run"]
