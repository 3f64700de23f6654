"""The README runs as written: every `pyfrcnn` command it shows parses, every
file it names is one that exists in the checkout or that the main job
(`pyfrcnn solve solvers/shapes_solver.yaml`) writes, and its Python-layer
example builds under the `pyfrcnn` command."""

import fnmatch
import os
import re
import shlex

import pytest

from pyfrcnn.cli import make_parser
from pyfrcnn.solver_config import load_solver
from tests.conftest import REPO_DIR
from tests.entry_point import pyfrcnn

README = (REPO_DIR / "README.md").read_text(encoding="utf-8")


def command_blocks(text):
    """The README's code: indented blocks and ``` fences, as (kind, text)."""
    blocks, fence, current = [], None, []
    for line in text.splitlines() + [""]:
        if fence is not None:
            if line.startswith("```"):
                blocks.append((fence, "\n".join(current)))
                fence, current = None, []
            else:
                current.append(line)
        elif line.startswith("```"):
            fence = line[3:].strip() or "text"
        elif line.startswith("    "):
            current.append(line[4:])
        elif current:
            blocks.append(("indented", "\n".join(current)))
            current = []
    return blocks


def pyfrcnn_commands():
    """Every `pyfrcnn ...` command line of the README (after `&&` too), as word lists."""
    commands = []
    for kind, text in command_blocks(README):
        if kind not in ("indented", "sh", "bash", "text"):
            continue
        for line in text.replace("\\\n", " ").splitlines():  # continued lines joined
            for part in line.split("&&"):
                if part.strip().startswith("pyfrcnn "):
                    commands.append(shlex.split(part.strip()))
    for words in re.findall(r"`(pyfrcnn [^`|\\[]+)`", README):  # inline, not usage patterns
        if len(words.split()) >= 3:  # a command, not a name (`pyfrcnn solve`)
            commands.append(shlex.split(words))
    return commands


def snapshot_files(solver_path):
    """The weights files a solver file's run leaves: every `snapshot` steps and at
    max_iter, the last keep_snapshots of them; as paths relative to the checkout."""
    c = load_solver(str(REPO_DIR / solver_path))
    steps = set(range(c.snapshot, c.max_iter + 1, c.snapshot)) if c.snapshot else set()
    if c.snapshot_after_train:
        steps.add(c.max_iter)
    steps = sorted(steps)[-c.keep_snapshots:] if c.keep_snapshots else sorted(steps)
    prefix = os.path.relpath(c.snapshot_prefix, REPO_DIR)
    return {f"{prefix}_iter_{s}.weights" for s in steps}, os.path.dirname(prefix)


def shapes_images():
    from pyfrcnn_layers.datasets import ShapesConfig

    settings = ShapesConfig()
    return [f"{split}_{i:06d}.{settings.image_format}" for split in ("train", "test")
            for i in range(settings.images(split))]


def test_the_readme_shows_the_commands_it_should():
    commands = pyfrcnn_commands()
    names = {w[1] for w in commands if len(w) > 1}
    assert {"solve", "test", "detect", "plot", "check", "draw", "data"} <= names
    assert ["pyfrcnn", "solve", "solvers/shapes_solver.yaml"] in commands


def test_every_readme_command_parses():
    parser = make_parser()
    for words in pyfrcnn_commands():
        if any(w.endswith("...") or w.startswith("[") or w.isupper() for w in words[2:]) \
                or "|" in " ".join(words):
            continue  # a usage pattern of the commands table, not a command to run
        args, extra = parser.parse_known_args(words[1:])
        assert not extra, f"{' '.join(words)}: unknown arguments {extra}"
        assert getattr(args, "_run", None), words


def test_every_file_a_readme_command_names_exists_or_is_written_by_the_main_job():
    written, run_folder = snapshot_files("solvers/shapes_solver.yaml")
    vgg16_written, vgg16_folder = snapshot_files("solvers/vgg16_solver.yaml")
    images = shapes_images()
    checked = 0
    for words in pyfrcnn_commands():
        for i, word in enumerate(words):
            if word.startswith("output/"):
                assert word in written | vgg16_written | {run_folder, vgg16_folder}, \
                    f"{' '.join(words)}: no run of the shipped solvers writes {word}"
                checked += 1
            elif word.startswith("data/cache/shapes_"):
                folder, pattern = os.path.split(word)
                assert fnmatch.fnmatch(folder, "data/cache/shapes_*/JPEGImages"), word
                assert any(fnmatch.fnmatch(n, pattern) for n in images), word
                checked += 1
            elif word.startswith(("prototxt/", "solvers/")) and words[1] != "draw":
                assert (REPO_DIR / word).exists(), f"{' '.join(words)}: {word} is not in the checkout"
                checked += 1
    assert checked >= 8
    assert f"{run_folder}/fast_shapes_iter_2600.weights" in written or \
        not any("fast_shapes_iter_2600" in " ".join(w) for w in pyfrcnn_commands())


def test_weights_named_in_the_python_examples_are_written_by_the_main_job():
    written, _ = snapshot_files("solvers/shapes_solver.yaml")
    named = [path for kind, text in command_blocks(README) if kind == "python"
             for path in re.findall(r'"(output/[^"]+\.weights)"', text)]
    assert named and set(named) <= written


def python_layer_example():
    """(module path, module source, the prototxt layer) of the README's example."""
    section = README.split("## Writing a Python layer", 1)[1]
    source = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    module_path = re.match(r"# (\S+\.py)\n", source).group(1)
    layer = re.search(r"\n(    layer \{\n.*?\n    \}\n)", section, re.S).group(1)
    return module_path, source, "\n".join(l[4:] for l in layer.splitlines())


def test_the_python_layer_example_builds_under_the_pyfrcnn_command(tmp_path):
    module_path, source, layer = python_layer_example()
    (tmp_path / module_path).parent.mkdir(parents=True)
    (tmp_path / module_path).write_text(source)
    (tmp_path / "net.prototxt").write_text(
        'name: "example"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        'layer { name: "conv5" type: "Convolution" bottom: "data" top: "conv5"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n' + layer + "\n")
    result = pyfrcnn("time", "net.prototxt", "--iterations", "1", "--warmup", "0",
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert re.search(r"^scaled +Python ", result.stdout, re.M), result.stdout


def test_the_python_api_example_runs(tmp_path, monkeypatch):
    """The README's "From Python" block, with a stand-in for the trained weights
    and the photo; the training part runs only as far as building the solver."""
    import numpy as np
    import torch
    from PIL import Image

    from pyfrcnn.net import Net

    section = README.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    weights = "output/shapes/fast_shapes_iter_2600.weights"
    assert weights in code and "solver.solve()" in code
    torch.manual_seed(0)
    (tmp_path / "output" / "shapes").mkdir(parents=True)
    Net(str(REPO_DIR / "prototxt" / "fast" / "test.prototxt"), "TEST").save(tmp_path / weights)
    pixels = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "some_photo.jpg")
    for name in ("prototxt", "solvers"):
        (tmp_path / name).symlink_to(REPO_DIR / name)
    monkeypatch.chdir(tmp_path)
    code = code.replace("solver.solve()", "assert solver.config.max_iter == 100")
    code = code.replace('["max_iter=100"]', '["max_iter=100", "data.cache_dir=cache"]')
    namespace = {}
    exec(compile(code, "README.md (From Python)", "exec"), namespace)
    assert namespace["outputs"]["cls_prob"].shape[1] == 6
    assert len(namespace["boxes"]) == len(namespace["labels"])
