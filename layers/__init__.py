"""The Faster R-CNN layers of pyfrcnn, loaded by the engine as a plugin
(entry point `pyfrcnn.plugins`).

Importing this package registers py-faster-rcnn's Python module names as
aliases of ours, so its prototxts build unmodified, and the `detection`
section of solver files.
"""

from pyfrcnn import registry

from .config import DetectionConfig

PY_FASTER_RCNN_MODULES = {
    "rpn.anchor_target_layer": "layers.anchor_target",
    "rpn.proposal_layer": "layers.proposal",
    "rpn.proposal_target_layer": "layers.proposal_target",
    "roi_data_layer.layer": "layers.roi_data",
}

for _alias, _module in PY_FASTER_RCNN_MODULES.items():
    registry.register_module_alias(_alias, _module)

registry.register_config_section("detection", DetectionConfig.from_dict)
