"""Random mutations of every shipped prototxt and solver file (byte flips, line
deletions and duplications, bytes that are not UTF-8), each built in-process:
only PyfrcnnError subclasses may escape. The seed is fixed, so a failure
reproduces; its message shows the mutation.

Building skips the weight fillers' arithmetic on the full blob (it fills a
stand-in of at most 3 per dimension, so every filler check still runs): VGG16's
138M gaussian draws would cost a second per mutation and test nothing more.
"""

import os
import pathlib
import random
import shutil
import tempfile
import time

import pytest

from pyfrcnn import layer as layer_module
from pyfrcnn.errors import PyfrcnnError
from pyfrcnn.net import Net
from pyfrcnn.solver_config import load_solver
from tests.conftest import REPO_DIR

MUTATIONS = 500
NETS = sorted((REPO_DIR / "prototxt").glob("*/*.prototxt"))
SOLVERS = sorted((REPO_DIR / "solvers").glob("*.yaml"))
BAD_UTF8 = (b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80\x80")


def mutate(data, rng):
    """One random mutation of `data` (bytes); returns (bytes, description)."""
    lines = data.split(b"\n")
    kind = rng.randrange(6)
    if kind == 0:  # flip a byte to a printable character: it gets past the UTF-8 check
        i = rng.randrange(len(data))
        c = bytes([rng.randrange(32, 127)])
        return data[:i] + c + data[i + 1:], f"byte {i} -> {c!r}"
    if kind == 1:  # flip a byte to any byte
        i = rng.randrange(len(data))
        c = bytes([rng.randrange(256)])
        return data[:i] + c + data[i + 1:], f"byte {i} -> {c!r}"
    if kind == 2:  # delete 1 to 3 lines
        i, n = rng.randrange(len(lines)), rng.randint(1, 3)
        return b"\n".join(lines[:i] + lines[i + n:]), f"delete lines {i + 1}..{i + n}"
    if kind == 3:  # duplicate a line
        i = rng.randrange(len(lines))
        return b"\n".join(lines[:i + 1] + lines[i:]), f"duplicate line {i + 1}"
    if kind == 4:  # insert a sequence that is not UTF-8
        i = rng.randrange(len(data) + 1)
        bad = rng.choice(BAD_UTF8)
        return data[:i] + bad + data[i:], f"insert {bad!r} at byte {i}"
    # swap two lines
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[i], lines[j] = lines[j], lines[i]
    return b"\n".join(lines), f"swap lines {i + 1} and {j + 1}"


@pytest.fixture
def cheap_fillers(monkeypatch):
    real_fill = layer_module.fill

    def fill(tensor, filler):
        import torch

        shape = tuple(min(d, 3) for d in tensor.shape)
        return real_fill(torch.empty(shape), filler)

    monkeypatch.setattr(layer_module, "fill", fill)


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory when the machine has one (a write to disk costs more than
    a parse here)."""
    shm = pathlib.Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        folder = pathlib.Path(tempfile.mkdtemp(prefix="pyfrcnn-fuzz-", dir=shm))
        yield folder
        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


def run_mutations(path, folder, build, seed):
    data = path.read_bytes()
    rng = random.Random(seed)
    target = folder / path.name
    outcomes = {"built": 0, "refused": 0}
    for k in range(MUTATIONS):
        mutated, how = mutate(data, rng)
        target.write_bytes(mutated)
        try:
            build(str(target))
            outcomes["built"] += 1
        except PyfrcnnError as e:
            assert "\n" not in str(e), f"{path.name}, mutation {k} ({how}): a multi-line error"
            outcomes["refused"] += 1
        except Exception as e:  # noqa: BLE001 - what the test is about
            raise AssertionError(f"{path.name}, mutation {k} ({how}): "
                                 f"{type(e).__name__}: {e}") from e
    return outcomes


def test_shipped_files_exist():
    assert len(NETS) >= 4 and len(SOLVERS) >= 2


def test_fuzz_every_shipped_file(scratch, cheap_fillers):
    start = time.perf_counter()
    results = {}
    for k, path in enumerate(NETS):
        phase = "TRAIN" if "train" in path.name else "TEST"
        name = str(path.relative_to(REPO_DIR))
        results[name] = run_mutations(path, scratch, lambda p: Net(p, phase), seed=k)
    for k, path in enumerate(SOLVERS):
        name = str(path.relative_to(REPO_DIR))
        results[name] = run_mutations(path, scratch, load_solver, seed=100 + k)
    elapsed = time.perf_counter() - start
    for name, outcome in results.items():
        assert outcome["built"] + outcome["refused"] == MUTATIONS
        assert outcome["refused"] > 0 and outcome["built"] > 0, (name, outcome)
    print(f"fuzz: {len(results)} files x {MUTATIONS} mutations in {elapsed:.1f} s: {results}")
    assert len(results) == len(NETS) + len(SOLVERS)
