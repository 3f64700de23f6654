"""Every shipped net's layers take their device from their bottoms, and the
training and test steps make no host round trip, checked on the CPU.

1. A real training step of each shipped train net (forward + backward on the
   shapes data) and a test forward of each test net run under HostAudit
   (tests/device_audit.py), with Layer.host_checks answering as on a GPU:
   no layer reads a tensor on the host, makes a tensor on the CPU by
   default or copies a constant from host memory. The reads of a size that
   variable-size outputs need (nonzero) are held to a known list: six a
   training step (anchors inside the image, RPN fg and bg, proposals above
   the minimum size, RoI fg and bg); on a GPU, NMS's kept count and the
   solver's loss (for its NaN guard) are the other two waits of a step.
2. The same layers then run on the `meta` device, fed meta tensors of the
   shapes the real step saw: a layer holding a CPU tensor of its own, or
   making one, fails there (meta and CPU tensors do not mix). Layers whose
   outputs depend on values (the Python target layers, ROIPooling, the
   losses' label checks) cannot run on meta; they are the ones step 1 audits.
3. A snapshot whose tensors are tagged as written on a GPU (cuda:0) loads
   and resumes on the CPU: every reader passes map_location.
"""

import contextlib

import pytest
import torch
from torch import serialization

from pyfrcnn_layers.config import DetectionConfig
from pyfrcnn_layers.inference import im_detect
from pyfrcnn.layer import Layer
from pyfrcnn.net import Net, load_weights_file
from pyfrcnn.solver import Solver
from pyfrcnn.solver_config import load_solver
from tests.conftest import REPO_DIR, requires_cuda
from tests.device_audit import HostAudit

# Layers whose forward reads values: they cannot run on meta (audited in step 1).
VALUE_DEPENDENT = {"Python", "ROIPooling", "SoftmaxWithLoss", "Accuracy"}
# Where a training step learns a size on the host: (file, function) -> reads.
TRAIN_SIZE_READS = {
    ("layers/anchor_target.py", "forward"): 1,     # anchors inside the image
    ("layers/anchor_target.py", "_sample"): 2,     # RPN foreground, background
    ("layers/proposal.py", "forward"): 1,          # proposals above RPN_MIN_SIZE
    ("layers/proposal_target.py", "_fg_bg"): 2,    # RoI foreground, background
}


def tiny(cache, net):
    overrides = [f"data.cache_dir={cache}", "data.shapes.train_images=4",
                 "data.shapes.test_images=2", "data.workers=1", "max_iter=1", "random_seed=1"]
    if net == "vgg16":
        overrides += ["data.train=shapes:train", "detection.TRAIN.SCALES=[64]",
                      "detection.TRAIN.MAX_SIZE=96", "detection.TRAIN.RPN_PRE_NMS_TOP_N=200",
                      "detection.TRAIN.RPN_POST_NMS_TOP_N=50"]
    return overrides


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shapes-cache")


@pytest.fixture
def as_on_a_gpu(monkeypatch):
    monkeypatch.setattr(Layer, "host_checks", staticmethod(lambda tensor: False))


def train_net(cache, tmp_path, name):
    solver = "shapes_solver.yaml" if name == "fast" else "vgg16_solver.yaml"
    config = load_solver(str(REPO_DIR / "solvers" / solver), tiny(cache, name))
    return Solver(config, run_dir=str(tmp_path), device="cpu", dist_info=False, hook_list=[]).net


def audited_step(net):
    net.forward()
    net.backward()  # the first step opens the data and fills the caches
    audit = HostAudit()
    with audit:
        net.forward()
        net.backward()
    return audit


def run_on_meta(net, blobs):
    """Each layer alone on meta, with meta bottoms of the shapes in `blobs`;
    returns the types of the layers skipped (value-dependent)."""
    net.to("meta")
    skipped = set()
    for layer, bottoms, tops in zip(net.layers, net.bottom_names, net.top_names):
        if layer.type in VALUE_DEPENDENT or layer.type == "Input":
            skipped.add(layer.type)
            continue
        args = [torch.empty(blobs[b].shape, dtype=blobs[b].dtype, device="meta") for b in bottoms]
        outputs = layer.forward(*args)
        outputs = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        for top, value in zip(tops, outputs):
            assert value.device.type == "meta", f"{layer.describe()}: top '{top}' on {value.device}"
            assert value.shape == blobs[top].shape, f"{layer.describe()}: top '{top}'"
    return skipped


@pytest.mark.parametrize("name", ["fast", "vgg16"])
def test_train_step_reads_nothing_on_the_host(cache, tmp_path, name, as_on_a_gpu):
    net = train_net(cache, tmp_path, name)
    audit = audited_step(net)
    assert not audit.found, "\n" + audit.report()
    reads = {}
    for (_, site), n in audit.size_reads.items():
        path, _, function = site.partition(" in ")
        key = (path.split(":")[0], function)
        reads[key] = reads.get(key, 0) + n
    assert reads == TRAIN_SIZE_READS, "\n" + audit.report(audit.size_reads)
    assert {"Convolution", "Pooling", "InnerProduct"} - {l.type for l in net.layers} == set()
    blobs = {k: v.detach() for k, v in net.blobs.items()}
    assert run_on_meta(net, blobs) == {"Python", "ROIPooling", "SoftmaxWithLoss"}


def test_the_audit_sees_the_checks_that_a_gpu_skips(cache, tmp_path):
    # On the CPU the layers check their boxes and labels on the host; the
    # audit reports exactly those reads, so it is not blind.
    audit = audited_step(train_net(cache, tmp_path, "fast"))
    sites = {site.split(":")[0] for _, site in audit.found}
    assert "layers/bbox.py" in sites and "pyfrcnn/builtin/softmax_with_loss.py" in sites
    assert all(what.startswith("host read") for what, _ in audit.found)


@pytest.mark.parametrize("name", ["fast", "vgg16"])
def test_test_forward_reads_nothing_on_the_host(name, as_on_a_gpu):
    cfg = DetectionConfig.from_dict({"TEST": {"SCALES": [64], "MAX_SIZE": 96,
                                              "RPN_PRE_NMS_TOP_N": 200, "RPN_POST_NMS_TOP_N": 20}})
    net = Net(str(REPO_DIR / "prototxt" / name / "test.prototxt"), "TEST", config={"detection": cfg},
              input_shapes={"data": (1, 3, None, None)})
    net.eval()
    image = torch.randint(0, 256, (48, 64, 3), generator=torch.Generator().manual_seed(0))
    im_detect(net, image.to(torch.uint8).numpy(), cfg)
    inputs = {"data": net.blobs["data"], "im_info": net.blobs["im_info"]}
    audit = HostAudit()
    with audit, torch.no_grad():
        net.forward(**inputs)
    assert not audit.found, "\n" + audit.report()
    blobs = {k: v.detach() for k, v in net.blobs.items()}
    assert run_on_meta(net, blobs) == {"Input", "Python", "ROIPooling"}


@contextlib.contextmanager
def saved_as_on_cuda():
    """torch.save tags every CPU storage 'cuda:0', as a GPU run writes them."""
    def tagger(obj):
        return "cuda:0" if getattr(obj, "device", None) == torch.device("cpu") else None

    entry = (0, tagger, lambda obj, location: None)
    serialization._package_registry.append(entry)
    serialization._package_registry.sort(key=lambda e: e[0])
    try:
        yield
    finally:
        serialization._package_registry.remove(entry)


def test_a_snapshot_written_on_a_gpu_resumes_on_the_cpu(cache, tmp_path):
    config = load_solver(str(REPO_DIR / "solvers" / "shapes_solver.yaml"), tiny(cache, "fast"))
    solver = Solver(config, run_dir=str(tmp_path), device="cpu", dist_info=False, hook_list=[])
    solver.run_step()
    with saved_as_on_cuda():
        weights, state = solver.snapshot()
    if not torch.cuda.is_available():  # the files really say cuda
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(weights, weights_only=True)
    layers = load_weights_file(weights)
    assert all(t.device.type == "cpu" for ts in layers.values() for t in ts)
    fresh = Solver(config, run_dir=str(tmp_path / "again"), device="cpu", dist_info=False,
                   hook_list=[])
    fresh.restore(state)
    assert fresh.step == 1
    for name, blobs in solver.net.params.items():
        for blob, loaded in zip(blobs, fresh.net.params[name]):
            assert torch.equal(blob, loaded)


@requires_cuda
def test_snapshots_go_from_the_cpu_to_the_gpu_and_back(cache, tmp_path):
    config = load_solver(str(REPO_DIR / "solvers" / "shapes_solver.yaml"), tiny(cache, "fast"))

    def solver(device, folder):
        return Solver(config, run_dir=str(tmp_path / folder), device=device, dist_info=False,
                      hook_list=[])

    def same_weights(a, b):
        return all(torch.equal(x.detach().cpu(), y.detach().cpu())
                   for name, blobs in a.net.params.items() for x, y in zip(blobs, b.net.params[name]))

    cpu = solver("cpu", "cpu")
    cpu.run_step()
    _, state = cpu.snapshot()
    gpu = solver("cuda", "gpu")
    gpu.restore(state)
    assert gpu.step == 1 and same_weights(cpu, gpu)
    assert all(b.is_cuda for blobs in gpu.net.params.values() for b in blobs)
    gpu.run_step()
    _, state = gpu.snapshot()
    back = solver("cpu", "back")
    back.restore(state)
    assert back.step == 2 and same_weights(gpu, back)
