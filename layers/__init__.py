"""The Faster R-CNN layers of pyfrcnn, loaded by the engine as a plugin
(entry point `pyfrcnn.plugins`). The folder is layers/; the package installs as
`pyfrcnn_layers`, so that a user's own `layers` module cannot shadow it.

Importing this package registers py-faster-rcnn's Python module names as
aliases of ours (so its prototxts build unmodified), the `detection` and
`data` sections of solver files, the `test`, `eval`, `detect` and `data`
commands, `pyfrcnn.Detector`, and the RPN's and RoI head's fg / bg accuracy in the
training display.
"""

from pyfrcnn import hooks, registry

from .config import DetectionConfig
from .datasets.config import validate_data_config

# The Python layers' modules under the names prototxts give them: py-faster-rcnn's,
# and `layers.<module>` (this folder's name; the package installs as pyfrcnn_layers).
PY_FASTER_RCNN_MODULES = {
    "rpn.anchor_target_layer": "pyfrcnn_layers.anchor_target",
    "rpn.proposal_layer": "pyfrcnn_layers.proposal",
    "rpn.proposal_target_layer": "pyfrcnn_layers.proposal_target",
    "roi_data_layer.layer": "pyfrcnn_layers.roi_data",
}
PROTOTXT_MODULES = {f"layers.{name}": f"pyfrcnn_layers.{name}"
                    for name in ("anchor_target", "proposal", "proposal_target", "roi_data")}

for _alias, _module in {**PY_FASTER_RCNN_MODULES, **PROTOTXT_MODULES}.items():
    registry.register_module_alias(_alias, _module)

registry.register_config_section("detection", DetectionConfig.from_dict)
registry.register_config_section("data", validate_data_config)


def _add_data_arguments(parser):
    from . import data_check

    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)
    check = sub.add_parser("check", help="lint a dataset without training",
                           description="lint a dataset: images, objects per class, boxes clipped "
                                       "or dropped, files that failed and why")
    data_check.add_arguments(check)
    check.set_defaults(_parser=check)  # usage errors name `pyfrcnn data check`


def _run_data(args):
    from . import data_check

    return data_check.run(args)


def _lazy(name):
    def call(*args):
        from . import commands

        return getattr(commands, name)(*args)
    return call


registry.register_command("test", _lazy("add_test_arguments"), _lazy("run_test"),
                          "detect on a dataset with a test net and score mAP")
registry.register_command("eval", _lazy("add_eval_arguments"), _lazy("run_eval"),
                          "score a detections file (VOC or COCO metrics)")
registry.register_command("detect", _lazy("add_detect_arguments"), _lazy("run_detect"),
                          "detect objects in images: JSON and drawn copies")
registry.register_command("data", _add_data_arguments, _run_data, "dataset tools: data check")


def _export(name):
    def call(*args):
        from . import export_command

        return getattr(export_command, name)(*args)
    return call


registry.register_command("export", _export("add_export_arguments"), _export("run_export"),
                          "write a test net as a Caffe .caffemodel (+ OpenCV deploy) and/or ONNX")


def _evaluator_factory(solver):
    from .evaluator import evaluator_factory

    return evaluator_factory(solver)


hooks.register_evaluator(_evaluator_factory)


def _step_stats_factory(solver):
    from .training_stats import detection_accuracy_factory

    return detection_accuracy_factory(solver)


hooks.register_step_stats(_step_stats_factory)


def _detector():
    from .detector import Detector

    return Detector


registry.register_export("Detector", _detector)
