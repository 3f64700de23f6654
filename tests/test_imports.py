"""No two files import each other (STYLE rule 16): every import between the
engine's and the plugin's modules runs one way, function-level imports included."""

import ast
import pathlib

from tests.conftest import REPO_DIR

PACKAGES = ("pyfrcnn", "layers")


def module_name(path):
    parts = list(path.relative_to(REPO_DIR).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path, name):
    """The project modules `path` imports anywhere in it (lazily too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            module = node.module or ""
            target = (f"{base}.{module}" if module else base) if node.level else module
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)  # `from . import net`
    return found


def graph():
    files = {module_name(p): p for pkg in PACKAGES for p in (REPO_DIR / pkg).rglob("*.py")
             if "proto" not in p.parts}
    return {name: {m for m in imports(path, name) if m in files and m != name}
            for name, path in files.items()}


def test_no_two_files_import_each_other():
    edges = graph()
    pairs = sorted({tuple(sorted((a, b))) for a, targets in edges.items() for b in targets
                    if a in edges.get(b, ()) and not a.startswith(b + ".") and
                    not b.startswith(a + ".")})
    assert pairs == [], "files that import each other: " + ", ".join(" <-> ".join(p) for p in pairs)


def test_the_three_known_pairs_are_gone():
    edges = graph()
    for a, b in (("pyfrcnn.cli", "pyfrcnn.tools"), ("pyfrcnn.net", "pyfrcnn.weights"),
                 ("pyfrcnn.ops._cuda", "pyfrcnn.ops.nms")):
        assert not (b in edges[a] and a in edges[b]), (a, b)
