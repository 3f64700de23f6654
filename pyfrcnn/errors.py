"""The exceptions pyfrcnn raises for bad input.

Every error says what is at fault: a file with line and column for syntax, a
layer with its type and position for wiring and shapes, a key path for
configuration. Commands print the message alone (no traceback) unless asked.
"""

import difflib
import os


class PyfrcnnError(Exception):
    """Base class: bad input that the user can fix."""


class ParseError(PyfrcnnError):
    """A prototxt or solver file that does not parse."""


class NetError(PyfrcnnError):
    """A net that cannot be built: wiring, arity, shapes or parameters."""


class RegistryError(NetError):
    """An unknown layer type, or a type registered twice."""


class ConfigError(PyfrcnnError):
    """A bad solver or run configuration."""


class DataError(PyfrcnnError):
    """A dataset, image or annotation that cannot be used."""


class WeightsError(PyfrcnnError):
    """A weights file that does not fit the net."""


class DeviceError(PyfrcnnError):
    """Work that cannot run on the device its tensors are on (a CUDA tensor
    without cupy, say); raised instead of a silent copy to another device."""


class OutputError(PyfrcnnError):
    """A file or folder that cannot be written (disk full, read-only, not a folder)."""


def output_error(path, e, what="write"):
    """An OutputError naming `path` for the OSError `e`."""
    reason = e.strerror or str(e) or type(e).__name__
    if isinstance(e, FileExistsError) or isinstance(e, NotADirectoryError):
        reason = "a file stands where a folder is needed"
    culprit = e.filename if e.filename and os.fspath(e.filename) != os.fspath(path) else None
    action = f"cannot {what}: " if what else ""
    return OutputError(f"{path}: {action}{reason}" + (f" ({culprit})" if culprit else ""))


def closest(name, choices):
    """The choice most like `name`, or None."""
    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return match[0] if match else None


def did_you_mean(name, choices):
    """' (did you mean 'x'?)' or an empty string."""
    match = closest(name, choices)
    return f" (did you mean '{match}'?)" if match else ""


def format_shape(shape):
    """A shape as messages and tables print it: 1x3x?x? (None: unknown), 'scalar'."""
    if shape is None:
        return "?"
    return "x".join("?" if d is None else str(d) for d in shape) or "scalar"
