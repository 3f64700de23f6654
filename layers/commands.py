"""The `pyfrcnn test`, `eval` and `detect` commands.

  test    run a test net over a dataset, write detections.json and the VOC
          results files, and score them (py-faster-rcnn's test_net.py)
  eval    score a detections file from any detector against a dataset
  detect  run a test net on image files: a JSON file and an annotated copy each

The detection config is the training run's (the weights' meta), else the
defaults, with `--set detection.TEST.NMS=0.4`-style overrides on top. Each
command's `run_*` returns the exit status.
"""

import glob
import json
import logging
import os
import re
import sys
import time

from pyfrcnn.arguments import device_from_args
from pyfrcnn.errors import ConfigError, DataError, PyfrcnnError

log = logging.getLogger(__name__)

BACKGROUND = "__background__"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# -- shared ---------------------------------------------------------------------

def _add_net_arguments(parser):
    from pyfrcnn.arguments import add_device_argument, add_set_argument

    parser.add_argument("--net", required=True, help="the test net's prototxt")
    parser.add_argument("--weights", required=True, help="a weights file (pyfrcnn format)")
    add_set_argument(parser, "detection.TEST.NMS=0.4", "a detection setting")
    add_device_argument(parser)


def _add_data_arguments(parser):
    from pyfrcnn.arguments import add_data_root_argument

    parser.add_argument("--data", required=True, metavar="SPEC",
                        help="the dataset: voc_2007_test, voc:<folder>:<set>, "
                        "coco:<json>:<images>, shapes:test, ...")
    add_data_root_argument(parser)
    parser.add_argument("--cache-dir", help="parsed annotations (default: <data-root>/cache)")


def detection_config(meta, overrides=()):
    """The DetectionConfig of a run: the weights' meta, then `--set` overrides."""
    from pyfrcnn_layers.config import DetectionConfig
    from pyfrcnn.solver_config import parse_override

    values = json.loads(json.dumps((meta or {}).get("detection") or {}))  # a deep copy
    for text in overrides:
        keys, value = parse_override(text)
        if keys[0] == "detection":
            keys = keys[1:]
        if not keys or keys[0] not in ("TRAIN", "TEST") and len(keys) > 1:
            raise ConfigError(f"--set {text}: expected detection.TEST.<KEY>=value (or another "
                              "detection setting)")
        node = values
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {text}: '{key}' is not a mapping")
        node[keys[-1]] = value
    return DetectionConfig.from_dict(values)


def load_test_net(net_path, weights_path, overrides=(), device="auto"):
    """(net, detection config, weights meta, bbox_pred stats or None): the test
    net built for any image size, with every weight of the file, on `device`
    (auto: cuda when available)."""
    from pyfrcnn_layers.inference import bbox_pred_stats
    from pyfrcnn.arguments import resolve_device
    from pyfrcnn.net import Net, load_weights_file

    layers, meta = load_weights_file(weights_path, with_meta=True)
    cfg = detection_config(meta, overrides)
    net = Net(net_path, "TEST", config={"detection": cfg},
              input_shapes={"data": (1, 3, None, None)})
    net.load(layers, strict=True, where=weights_path)
    net.eval()
    net.to(resolve_device(device))
    return net, cfg, meta, bbox_pred_stats(meta)


def net_num_classes(net):
    shape = net.blob_shapes.get("cls_prob")
    if not shape or len(shape) < 2 or shape[1] is None:
        raise PyfrcnnError(f"net '{net.name}': no cls_prob blob of shape R x K; a Faster R-CNN "
                           "test net gives rois, cls_prob and bbox_pred")
    return shape[1]


def _strip_background(names):
    names = list(names)
    return names[1:] if names and names[0] == BACKGROUND else names


class Progress:
    """py-faster-rcnn's 'im_detect: 12/4952 0.231s 0.004s' (the average detect
    and post-processing times): under a tqdm bar in a terminal (pyfrcnn.progress),
    every 5% as a line in a log or a pipe."""

    def __init__(self, total, stream=None, quiet=False, desc="im_detect"):
        from pyfrcnn import progress

        self.total, self.quiet, self.desc = total, quiet, desc
        self.stream = stream or sys.stderr
        self.bar = progress.progress(total, desc, "im", stream=self.stream,
                                     enabled=not quiet)
        self.lines = isinstance(self.bar, progress.NullBar)
        self.every = max(1, total // 20)
        self.start = time.monotonic()

    def update(self, done, detect_time, misc_time):
        if self.quiet:
            return
        if not self.lines:
            self.bar.update(done - self.bar.n)
            if done == self.total:
                self.bar.close()
            return
        if done % self.every == 0 or done == self.total:
            elapsed = time.monotonic() - self.start
            eta = elapsed / done * (self.total - done)
            self.stream.write(f"{self.desc}: {done}/{self.total} {detect_time:.3f}s "
                              f"{misc_time:.3f}s (eta {int(eta // 60)}:{int(eta % 60):02d})\n")
            self.stream.flush()

    def close(self):
        self.bar.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "image"


def _print_result(result):
    from pyfrcnn_layers.evaluation import format_table

    if result.get("summary"):
        print(result["summary"].rstrip())
    print(format_table(result))


def _write_json(path, payload):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


# -- test -----------------------------------------------------------------------

def add_test_arguments(parser):
    _add_net_arguments(parser)
    _add_data_arguments(parser)
    parser.add_argument("--out", help="where detections and scores go "
                        "(default: output/<weights name>/<dataset name>)")
    parser.add_argument("--metric", choices=("voc07", "voc", "coco"),
                        help="default: coco for COCO, voc for VOC 2010-2012, voc07 otherwise")
    parser.add_argument("--vis", type=int, default=0, metavar="N",
                        help="also draw the detections of the first N images into <out>/vis")
    parser.add_argument("--vis-thresh", type=float, default=0.5,
                        help="the lowest score drawn by --vis (default 0.5)")
    parser.add_argument("--num-images", type=int, metavar="N",
                        help="test only the first N images (and score on them)")
    return parser


def trained_shapes_settings(meta):
    """The shapes generator settings of the training run (its weights' meta), so
    `--data shapes:test` means the test split of the data the net was trained on."""
    from pyfrcnn_layers.datasets import ShapesConfig

    values = ((meta or {}).get("data") or {}).get("shapes")
    if not isinstance(values, dict):
        return None
    known = {f for f in ShapesConfig.__dataclass_fields__}
    return ShapesConfig(**{k: v for k, v in values.items() if k in known})


def run_test(args):
    from pyfrcnn_layers.datasets import open_dataset
    from pyfrcnn_layers.evaluation import default_metric, evaluate, result_to_json
    from pyfrcnn_layers.evaluation.detections import write_detections, write_voc_results

    net, cfg, meta, bbox_stats = load_test_net(args.net, args.weights, args.overrides,
                                               device_from_args(args))
    dataset = open_dataset(args.data, root=args.data_root, cache_dir=args.cache_dir,
                           shapes=trained_shapes_settings(meta))
    classes = list(dataset.classes)
    _check_classes(net, meta, classes, dataset.name)
    count = len(dataset) if args.num_images is None else max(0, min(args.num_images, len(dataset)))
    if count == 0:
        raise DataError(f"dataset '{dataset.name}' has no image to test")
    out = args.out or os.path.join("output", _safe_name(os.path.splitext(
        os.path.basename(args.weights))[0]), _safe_name(dataset.name))
    os.makedirs(out, exist_ok=True)
    metric = args.metric or default_metric(dataset.name)
    if metric == "coco":
        from pyfrcnn_layers.evaluation.coco import require_pycocotools

        require_pycocotools()  # now, not after hours of detection
    print(f"testing {count} images of {dataset.name} with {args.net} and {args.weights} "
          f"(scales {list(cfg.TEST.SCALES)}, NMS {cfg.TEST.NMS}, score > {cfg.TEST.SCORE_THRESH}, "
          f"at most {cfg.TEST.MAX_PER_IMAGE} per image)", file=sys.stderr)

    with Progress(count, quiet=getattr(args, "quiet", False)) as progress:
        records = _detect_all(args, net, cfg, bbox_stats, dataset, classes, count, out,
                              progress)
    write_detections(os.path.join(out, "detections.json"), records)
    write_voc_results(out, records, classes, image_set=getattr(dataset, "image_set", "test"))
    annotations = [dataset.annotation(i) for i in range(count)]
    result = evaluate(records, annotations, classes, metric, as_voc_results=True,
                      coco_annotation_file=getattr(dataset, "annotation_file", None))
    _print_result(result)
    _write_json(os.path.join(out, "metrics.json"), result_to_json(result))
    print(f"wrote {len(records)} detections, the VOC results files and metrics.json to {out}",
          file=sys.stderr)
    return 0


def _detect_all(args, net, cfg, bbox_stats, dataset, classes, count, out, progress):
    """The detection records of the first `count` images (and the --vis drawings)."""
    from pyfrcnn_layers.evaluation.draw import draw_detections
    from pyfrcnn_layers.image import load_image
    from pyfrcnn_layers.inference import im_detect, postprocess_detections, to_records

    records, detect_time, misc_time = [], 0.0, 0.0
    for i in range(count):
        im = load_image(dataset.image_path(i))
        tic = time.perf_counter()
        scores, boxes = im_detect(net, im, cfg, bbox_stats)
        toc = time.perf_counter()
        class_dets = postprocess_detections(scores, boxes, cfg.TEST.SCORE_THRESH, cfg.TEST.NMS,
                                            cfg.TEST.MAX_PER_IMAGE)
        class_dets = [d.cpu() for d in class_dets]
        image_records = to_records(class_dets, classes, dataset.image_ids[i])
        records.extend(image_records)
        detect_time += toc - tic
        misc_time += time.perf_counter() - toc
        if i < args.vis:
            shown = [(r["class"], r["bbox"], r["score"]) for r in image_records
                     if r["score"] >= args.vis_thresh]
            index = {name: k for k, name in enumerate(classes)}
            path = os.path.join(out, "vis", _safe_name(dataset.image_ids[i]) + ".jpg")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            draw_detections(im, shown, index).save(path, quality=90)
        progress.update(i + 1, detect_time / (i + 1), misc_time / (i + 1))
    return records


def _check_classes(net, meta, classes, dataset_name):
    num_classes = net_num_classes(net)
    if num_classes != len(classes):
        raise PyfrcnnError(f"net '{net.name}' scores {num_classes} classes (background "
                           f"included) but dataset '{dataset_name}' has {len(classes)}")
    trained = meta.get("classes") if meta else None
    trained = _strip_background(trained or [])
    if trained and trained != classes[1:]:
        raise PyfrcnnError(f"the weights were trained on classes {', '.join(trained)}; "
                           f"dataset '{dataset_name}' has {', '.join(classes[1:])}")


# -- eval -----------------------------------------------------------------------

def add_eval_arguments(parser):
    parser.add_argument("--dets", required=True, metavar="DETECTIONS.json",
                        help='a JSON list of {"image_id", "class", "bbox": [x1, y1, x2, y2], '
                        '"score"}, boxes in 0-based pixels (VOC: the XML values minus 1)')
    _add_data_arguments(parser)
    parser.add_argument("--metric", choices=("voc07", "voc", "coco"),
                        help="default: coco for COCO, voc for VOC 2010-2012, voc07 otherwise")
    parser.add_argument("--json", metavar="OUT", help='also write {"metric", "mAP", "ap"} here')
    return parser


def run_eval(args):
    from pyfrcnn_layers.datasets import open_dataset
    from pyfrcnn_layers.evaluation import default_metric, evaluate, result_to_json
    from pyfrcnn_layers.evaluation.detections import check_detections, read_detections

    detections = read_detections(args.dets)
    dataset = open_dataset(args.data, root=args.data_root, cache_dir=args.cache_dir)
    detections = check_detections(detections, dataset.classes, dataset.image_ids, args.dets)
    annotations = [dataset.annotation(i) for i in range(len(dataset))]
    metric = args.metric or default_metric(dataset.name)
    result = evaluate(detections, annotations, list(dataset.classes), metric,
                      coco_annotation_file=getattr(dataset, "annotation_file", None))
    _print_result(result)
    if args.json:
        _write_json(args.json, result_to_json(result))
    return 0


# -- detect ---------------------------------------------------------------------

def add_detect_arguments(parser):
    parser.add_argument("images", nargs="*", metavar="IMAGE",
                        help="image files, folders (their images) or globs ('photos/*.jpg')")
    _add_net_arguments(parser)
    parser.add_argument("--classes", nargs="+", metavar="NAME",
                        help="class names, background excluded (default: the weights' meta, "
                        "else class_1 ...); as many as the net scores, so images may follow")
    parser.add_argument("--thresh", type=float, default=0.8,
                        help="the lowest score kept (default 0.8)")
    parser.add_argument("--out", default="detections",
                        help="where the JSON files and annotated images go (default: detections)")
    return parser


def split_classes_and_images(given, num_classes):
    """(class names, images) of `--classes a b c IMAGE...`: the net scores
    num_classes - 1 names; what follows them are images."""
    names = [n for item in given or () for n in item.split(",") if n]
    if names and names[0] == BACKGROUND:
        names = names[1:]
    return names[:num_classes - 1], names[num_classes - 1:]


def expand_images(items):
    """Image paths from files, folders (their images, sorted) and globs; an item
    that names nothing is kept, so that loading it reports the error."""
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item)
                           if n.lower().endswith(IMAGE_SUFFIXES))
            if not found:
                log.warning("%s: a folder without images (%s)", item, ", ".join(IMAGE_SUFFIXES))
            paths.extend(found)
        elif glob.has_magic(item) and not os.path.exists(item):
            found = sorted(p for p in glob.glob(item) if os.path.isfile(p))
            paths.extend(found or [item])
        else:
            paths.append(item)
    return paths


def detect_class_names(given, meta, num_classes):
    """Names of classes 1..K-1: --classes, else the weights' meta, else class_<k>."""
    if given:
        names = _strip_background([n for item in given for n in item.split(",") if n])
        if len(names) != num_classes - 1:
            raise ConfigError(f"--classes: {len(names)} names given, the net scores "
                              f"{num_classes - 1} classes (besides the background)")
        return names
    trained = (meta or {}).get("classes")
    if trained:
        names = _strip_background(trained)
        if len(names) == num_classes - 1:
            return names
        log.warning("the weights' meta lists %d classes, the net scores %d: using class_<k>",
                    len(names), num_classes - 1)
    return [f"class_{k}" for k in range(1, num_classes)]


def _output_paths(out, image_path, used):
    stem = _safe_name(os.path.splitext(os.path.basename(image_path))[0])
    name, n = stem, 1
    while name in used:
        n += 1
        name = f"{stem}_{n}"
    used.add(name)
    suffix = os.path.splitext(image_path)[1].lower()
    suffix = suffix if suffix in IMAGE_SUFFIXES else ".png"
    return os.path.join(out, name + ".json"), os.path.join(out, name + "_det" + suffix)


def _write_image_detections(path, image_path, im_shape, found):
    """{"image", "width", "height", "detections": [{"class", "bbox", "score"}]},
    one detection a line."""
    head = json.dumps({"image": image_path, "width": im_shape[1], "height": im_shape[0]})[:-1]
    rows = ",\n".join("  " + json.dumps(d) for d in found)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}, \"detections\": [\n{rows}\n]}}\n" if found
                else f"{head}, \"detections\": []}}\n")


def run_detect(args):
    from pyfrcnn_layers.evaluation.draw import draw_detections
    from pyfrcnn_layers.image import load_image
    from pyfrcnn_layers.inference import detect

    net, cfg, meta, bbox_stats = load_test_net(args.net, args.weights, args.overrides,
                                               device_from_args(args))
    num_classes = net_num_classes(net)
    given, more_images = split_classes_and_images(args.classes, num_classes)
    names = detect_class_names(given, meta, num_classes)
    images = expand_images(more_images + list(args.images))
    if not images:
        raise ConfigError("no image given (files, folders or globs after the options, or "
                          "after the names of --classes)")
    classes = [BACKGROUND] + names
    os.makedirs(args.out, exist_ok=True)
    used, failed = set(), 0
    for image_path in images:
        try:
            im = load_image(image_path)
        except DataError as e:
            print(f"pyfrcnn detect: error: {e}", file=sys.stderr)
            failed += 1
            continue
        class_dets = detect(net, im, cfg, bbox_stats, score_thresh=args.thresh)
        found = [{"class": classes[j], "bbox": [round(v, 2) for v in row[:4]],
                  "score": round(row[4], 5)}
                 for j, dets in enumerate(class_dets) if j > 0 for row in dets.tolist()]
        found.sort(key=lambda d: -d["score"])
        json_path, image_out = _output_paths(args.out, image_path, used)
        _write_image_detections(json_path, image_path, im.shape, found)
        index = {name: k for k, name in enumerate(classes)}
        draw_detections(im, [(d["class"], d["bbox"], d["score"]) for d in found], index) \
            .save(image_out)
        summary = ", ".join(f"{d['class']} {d['score']:.2f}" for d in found[:8])
        more = f", ... ({len(found)} in all)" if len(found) > 8 else ""
        print(f"{image_path}: {len(found)} detection(s){': ' + summary + more if found else ''}"
              f" -> {json_path}, {image_out}")
    if failed:
        print(f"pyfrcnn detect: {failed} of {len(images)} image(s) failed", file=sys.stderr)
    return 1 if failed else 0


__all__ = ["add_test_arguments", "run_test", "add_eval_arguments", "run_eval",
           "add_detect_arguments", "run_detect", "detection_config", "load_test_net",
           "detect_class_names", "Progress"]
