"""The layer registry: prototxt type string -> Layer class.

`register("Convolution")` beside a class registers it; a second registration of
the same type is an error. The `Python` type is the factory for user layers: it
imports `python_param.module`, takes `python_param.layer`, checks it is a Layer
and hands it `param_str`. Packages extend pyfrcnn through the entry-point group
`pyfrcnn.plugins` (loaded once, on first use): a plugin registers layer types
and module aliases (so that, say, py-faster-rcnn's `rpn.proposal_layer`
resolves to the plugin's own module).
"""

import importlib
import importlib.metadata
import logging
import threading

from .errors import RegistryError, did_you_mean
from .layer import Layer

log = logging.getLogger(__name__)

_LAYERS = {}
_MODULE_ALIASES = {}
_COMMANDS = {}
_CONFIG_SECTIONS = {}
_EXPORTS = {}
_plugins_loaded = False
_plugins_lock = threading.Lock()


def register(type_name):
    """Class decorator: register a Layer subclass under `type_name`."""
    def decorate(cls):
        if type_name in _LAYERS and _LAYERS[type_name] is not cls:
            raise RegistryError(f"layer type '{type_name}' is registered twice "
                                f"({_LAYERS[type_name].__module__} and {cls.__module__})")
        if not (isinstance(cls, type) and issubclass(cls, Layer)):
            raise RegistryError(f"'{type_name}': {cls!r} is not a pyfrcnn Layer")
        _LAYERS[type_name] = cls
        cls.registered_type = type_name
        return cls
    return decorate


def register_module_alias(alias, module):
    """Let `python_param { module: alias }` import `module` instead."""
    _MODULE_ALIASES[alias] = module


def load_plugins():
    """Import the builtin layers and every installed `pyfrcnn.plugins` entry point."""
    global _plugins_loaded
    with _plugins_lock:
        if _plugins_loaded:
            return
        _plugins_loaded = True
        importlib.import_module("pyfrcnn.builtin")
        for entry in importlib.metadata.entry_points(group="pyfrcnn.plugins"):
            try:
                entry.load()
            except Exception as e:  # a broken plugin must not break the engine
                log.warning("plugin '%s' (%s) failed to load: %s", entry.name, entry.value, e)


def known_types():
    """Every type a prototxt may name, `Python` included."""
    load_plugins()
    return sorted([*_LAYERS, "Python"])


def layer_class(type_name, where=""):
    load_plugins()
    try:
        return _LAYERS[type_name]
    except KeyError:
        types = known_types()
        raise RegistryError(
            f"{where}unknown layer type '{type_name}'{did_you_mean(type_name, types)}; "
            f"known types: {', '.join(types)}") from None


def python_layer_class(param, where=""):
    """Resolve python_param.module / .layer to a Layer subclass."""
    pp = param.python_param
    prefix = f"{where}layer '{param.name}' (Python)"
    if not pp.module or not pp.layer:
        raise RegistryError(f"{prefix}: python_param needs both 'module' and 'layer'")
    load_plugins()
    module_name = _MODULE_ALIASES.get(pp.module, pp.module)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise RegistryError(f"{prefix}: cannot import module '{pp.module}': {e} (python_param "
                            "modules import from the current folder, then PYTHONPATH)") from None
    except (Exception, SystemExit) as e:  # a module may even call sys.exit at import
        raise RegistryError(f"{prefix}: importing module '{pp.module}' failed: "
                            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}") from None
    cls = getattr(module, pp.layer, None)
    if cls is None:
        names = [n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Layer)]
        raise RegistryError(f"{prefix}: module '{pp.module}' has no layer '{pp.layer}'"
                            f"{did_you_mean(pp.layer, names)}")
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise RegistryError(f"{prefix}: '{pp.module}.{pp.layer}' is not a pyfrcnn Layer")
    if cls is Layer or cls.reshape is Layer.reshape or cls.forward is Layer.forward:
        raise RegistryError(f"{prefix}: '{pp.module}.{pp.layer}' is "
                            f"{'the base class' if cls is Layer else 'an abstract layer'}: a "
                            "layer must define reshape and forward")
    return cls


def create_layer(param, phase="TRAIN", config=None, where=""):
    """Instantiate the layer a LayerParameter describes (not yet set up)."""
    at = f"{where}: " if where else ""
    if not param.type:
        raise RegistryError(f"{at}layer '{param.name}' has no type")
    if param.type == "Python":
        cls = python_layer_class(param, at)
        layer = cls(param, phase=phase, config=config, where=where)
        layer.param_str = param.python_param.param_str
        return layer
    return layer_class(param.type, at)(param, phase=phase, config=config, where=where)


def register_command(name, add_arguments, run, help=""):
    """Add a `pyfrcnn NAME` subcommand (plugins use this for their own tools).

    add_arguments(parser) declares its arguments; run(args) does the work and
    returns the exit status.
    """
    if name in _COMMANDS:
        raise RegistryError(f"command '{name}' is registered twice")
    _COMMANDS[name] = (add_arguments, run, help)


def commands():
    load_plugins()
    return dict(_COMMANDS)


def register_config_section(name, validate):
    """Let solver files carry a section `name`; validate(value, where) checks it
    (raising ConfigError) and returns what the layers receive as config[name]."""
    if name in _CONFIG_SECTIONS:
        raise RegistryError(f"config section '{name}' is registered twice")
    _CONFIG_SECTIONS[name] = validate


def config_sections():
    load_plugins()
    return dict(_CONFIG_SECTIONS)


def register_export(name, load):
    """Let `pyfrcnn.<name>` be what load() returns (a plugin's public class,
    e.g. the Faster R-CNN plugin's Detector), imported on first use."""
    if name in _EXPORTS:
        raise RegistryError(f"pyfrcnn.{name} is registered twice")
    _EXPORTS[name] = load


def export(name):
    """The object a plugin registered as pyfrcnn.<name>; AttributeError if none."""
    load_plugins()
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pyfrcnn' has no attribute '{name}'")
    return _EXPORTS[name]()
