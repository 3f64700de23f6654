"""The one YAML loader pyfrcnn uses: solver files, `--set` values and param_str.

It is PyYAML's SafeLoader (no tag builds a Python object) with three changes:
  - floats as Caffe users write them: `1e-4` and `1e6` are floats (YAML 1.1,
    PyYAML's dialect, reads a float without a dot as a string);
  - `!!python/tuple [4, 8, 16, 32]` is read as a list: py-faster-rcnn's COCO nets
    write it in param_str, which it read with yaml.load. No other python tag is
    accepted;
  - aliases are bounded: a document whose aliases expand to more than
    MAX_NODES nodes (a "billion laughs" bomb: a kilobyte that grows past 4 GB in
    whatever walks it), or that refers to itself, or that nests deeper than
    MAX_DEPTH, is refused.
Every refusal is one line: `where:line:col: ...`.
"""

import re

import yaml

from .errors import ConfigError

MAX_NODES = 100_000   # after alias expansion; a solver file has a few hundred
MAX_DEPTH = 200       # nesting of collections

_FLOAT = re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_FLOAT_TAG = "tag:yaml.org,2002:float"


class Loader(yaml.SafeLoader):
    """SafeLoader with floats as in YAML 1.2 and !!python/tuple as a list."""


Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _FLOAT_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT, list("-+0123456789."))
Loader.add_constructor("tag:yaml.org,2002:python/tuple",
                       lambda loader, node: loader.construct_sequence(node))


def _mark(mark):
    return f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""


def _check_size(root, where, error):
    """Refuse a node graph that expands beyond MAX_NODES, loops or nests too deep."""
    sizes, active = {}, set()

    def size(node, depth):
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise error(f"{where}{_mark(node.start_mark)}: an alias refers to the collection "
                        "that holds it (a recursive YAML document)")
        if depth > MAX_DEPTH:
            raise error(f"{where}{_mark(node.start_mark)}: nested more than {MAX_DEPTH} deep")
        active.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_NODES:
                raise error(f"{where}{_mark(node.start_mark)}: its aliases expand to more than "
                            f"{MAX_NODES} values (an alias bomb?); write the values out")
        active.discard(key)
        sizes[key] = total
        return total

    size(root, 0)


def _yaml_error(e, where, error, text):
    mark = getattr(e, "problem_mark", None)
    if isinstance(e, yaml.reader.ReaderError):
        line = text.count("\n", 0, e.position) + 1
        column = e.position - (text.rfind("\n", 0, e.position) + 1) + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        return error(f"{where}:{line}:{column}: not valid YAML: the control character "
                     f"0x{code:02x} is not allowed")
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    context = getattr(e, "context", None)
    if context and "constructor" in problem:
        problem = f"{context}: {problem}"
    return error(f"{where}{_mark(mark)}: not valid YAML: {' '.join(str(problem).split())}")


def compose(text, where, error=ConfigError):
    """(node, value) of one YAML document `text` (None, None when empty);
    `where` names it in errors, which are `error`s."""
    loader = None
    try:
        loader = Loader(text)
        node = loader.get_single_node()
        if node is None:
            return None, None
        _check_size(node, where, error)
        return node, loader.construct_document(node)
    except yaml.YAMLError as e:
        raise _yaml_error(e, where, error, text) from None
    except RecursionError:
        raise error(f"{where}: nested too deeply to read") from None
    except (ValueError, OverflowError) as e:  # e.g. an integer of more than 4300 digits
        raise error(f"{where}: not valid YAML: {str(e).splitlines()[0][:200]}") from None
    finally:
        if loader is not None:
            loader.dispose()


def load(text, where, error=ConfigError):
    """The value of one YAML document `text` (None when empty)."""
    return compose(text, where, error)[1]
