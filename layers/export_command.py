"""`pyfrcnn export`: a trained test net as a Caffe .caffemodel (with a deploy
prototxt for OpenCV's DNN) and / or as one ONNX detector.

  pyfrcnn export --net prototxt/fast/test.prototxt --weights W.pth \\
      --caffemodel out/fast.caffemodel [--deploy out/fast_deploy.prototxt] \\
      [--onnx out/fast.onnx] [--set detection.TEST.RPN_POST_NMS_TOP_N=100]

The detection config is the training run's (the weights' meta) with the
`--set` overrides, as for `test` and `detect`; it fixes the proposal and
post-processing settings written into both formats. A net trained with
BBOX_NORMALIZE_TARGETS_PRECOMPUTED predicts normalised deltas: the
.caffemodel gets the un-normalisation folded into bbox_pred (weights x
stds, bias x stds + means), as py-faster-rcnn's snapshots do and as
`convert` expects of a .caffemodel; the ONNX graph applies it after the net.
"""

import os

import torch

from pyfrcnn.errors import PyfrcnnError


def add_export_arguments(parser):
    parser.add_argument("--net", required=True, help="the test net's prototxt")
    parser.add_argument("--weights", required=True,
                        help="its weights (pyfrcnn, .caffemodel or torchvision VGG16)")
    parser.add_argument("--caffemodel", metavar="OUT.caffemodel",
                        help="write the weights as a binary Caffe NetParameter")
    parser.add_argument("--deploy", metavar="OUT.prototxt",
                        help="the net for OpenCV's DNN, with its built-in Proposal layer "
                             "(default: beside --caffemodel, <name>_deploy.prototxt)")
    parser.add_argument("--onnx", metavar="OUT.onnx",
                        help="write the whole detector (blob in; boxes, scores, labels out)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="detection.KEY=VALUE",
                        help="override a detection setting, e.g. detection.TEST.NMS=0.4")
    return parser


def deploy_path(caffemodel, deploy=None):
    if deploy:
        return deploy
    stem, _ = os.path.splitext(caffemodel)
    return f"{stem}_deploy.prototxt"


def fold_bbox_stats(net, bbox_stats):
    """Make bbox_pred give un-normalised deltas: W x stds, b x stds + means,
    the four values repeated for each class (unnormalize_bbox_pred's rule)."""
    layer = net.layer_dict.get("bbox_pred")
    if layer is None or layer.type != "InnerProduct" or len(layer.blobs) != 2:
        raise PyfrcnnError(f"net '{net.name}': the weights predict normalised deltas, but the "
                           "net has no InnerProduct layer 'bbox_pred' with a bias to fold them "
                           "into")
    weight, bias = layer.blobs
    num_classes = bias.shape[0] // 4
    means, stds = (torch.as_tensor(v, dtype=bias.dtype).repeat(num_classes) for v in bbox_stats)
    with torch.no_grad():
        weight.mul_(stds[None, :] if layer.transpose else stds[:, None])
        bias.mul_(stds).add_(means)


def run_export(args):
    from pyfrcnn.caffe_export import deploy_prototxt, write_caffemodel
    from pyfrcnn.onnx_export import weights_kept

    from .caffe_deploy import opencv_replacements
    from .commands import load_test_net

    if not args.caffemodel and not args.onnx:
        raise PyfrcnnError("give --caffemodel OUT.caffemodel, --onnx OUT.onnx or both")
    if args.deploy and not args.caffemodel:
        raise PyfrcnnError("--deploy goes with --caffemodel")
    net, cfg, _, bbox_stats = load_test_net(args.net, args.weights, args.overrides)
    if args.onnx:
        from .onnx_export import export_detector

        export_detector(net, cfg, bbox_stats, args.onnx)
        print(f"{args.onnx}: the detector, inputs data (1x3xHxW), im_info (1x3), "
              "image_size (2); outputs boxes, scores, labels")
    if args.caffemodel:
        deploy = deploy_path(args.caffemodel, args.deploy)
        if os.path.abspath(deploy) == os.path.abspath(args.net):
            raise PyfrcnnError(f"--deploy {deploy} is the net itself: give another path")
        replacements = opencv_replacements(net)
        with weights_kept(net):
            if bbox_stats is not None:
                fold_bbox_stats(net, bbox_stats)
            size = write_caffemodel(net, args.caffemodel)
        header = (f"{net.name} for OpenCV's DNN, written by `pyfrcnn export` from {args.net}:\n"
                  f"weights {os.path.basename(args.caffemodel)}; the proposal layer is "
                  "OpenCV's Proposal.")
        os.makedirs(os.path.dirname(os.path.abspath(deploy)), exist_ok=True)
        with open(deploy, "w", encoding="utf-8") as f:
            f.write(deploy_prototxt(net, replacements, header))
        blobs = sum(len(b) for b in net.params.values())
        print(f"{args.caffemodel}: {len(net.params)} layers, {blobs} blobs, {size} bytes")
        print(f"{deploy}: the net for cv2.dnn.readNetFromCaffe"
              + (f" ({', '.join(replacements)} as OpenCV's Proposal)" if replacements else ""))
        if replacements and cfg.TEST.RPN_MIN_SIZE > 0:
            print(f"note: OpenCV's Proposal layer ignores min_size; pyfrcnn drops proposals "
                  f"under TEST.RPN_MIN_SIZE = {cfg.TEST.RPN_MIN_SIZE} px before NMS")
    return 0


__all__ = ["add_export_arguments", "run_export", "deploy_path", "fold_bbox_stats"]
