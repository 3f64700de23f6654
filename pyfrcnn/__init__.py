"""pyfrcnn: a Caffe-style, layer-by-layer graph engine on PyTorch for Faster R-CNN.

The Python API (stable names; see each one's docstring):

  pyfrcnn.Net(prototxt, "TEST", weights=...)     a net: forward(**inputs), blobs, params
  pyfrcnn.Solver.from_file(solver_file, overrides).solve()   training
  pyfrcnn.Detector(test_prototxt, weights, device=...).detect(image)
                                                 boxes, scores, labels (the Faster R-CNN plugin)
  pyfrcnn.Layer, pyfrcnn.register                write and register a layer type
  pyfrcnn.PyfrcnnError                           what every bad input raises
  pyfrcnn.read_net, pyfrcnn.load_solver          prototxt and solver files

Names are imported on first use, so `import pyfrcnn` stays light.
"""

__version__ = "0.1.0"

_NAMES = {
    "Net": ("pyfrcnn.api", "Net"),
    "Solver": ("pyfrcnn.api", "Solver"),
    "Layer": ("pyfrcnn.layer", "Layer"),
    "register": ("pyfrcnn.registry", "register"),
    "PyfrcnnError": ("pyfrcnn.errors", "PyfrcnnError"),
    "read_net": ("pyfrcnn.io", "read_net"),
    "load_solver": ("pyfrcnn.solver_config", "load_solver"),
}

__all__ = ["__version__", *_NAMES, "Detector"]


def __getattr__(name):
    import importlib

    if name in _NAMES:
        module, attribute = _NAMES[name]
        value = getattr(importlib.import_module(module), attribute)
    elif not name[:1].isupper():  # submodules (`from . import net`) import as usual
        raise AttributeError(f"module 'pyfrcnn' has no attribute '{name}'")
    else:
        from . import registry

        value = registry.export(name)  # a plugin's name (Detector), or AttributeError
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
