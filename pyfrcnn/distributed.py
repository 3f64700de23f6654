"""Data-parallel training under torchrun: one process per device.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR / MASTER_PORT);
`from_env()` reads them and `ProcessGroup` joins the group (gloo on CPU, nccl
on CUDA). Rank 0's initial weights are broadcast; each step, after iter_size
passes, every rank's gradients are averaged by one all-reduce of a flat
buffer that also carries a few flags (a non-finite loss, a signal asking to
stop or snapshot), so every rank takes the same decision at the same step.
The effective batch is world_size x iter_size x the net's batch, as in Caffe's
multi-GPU training (gradients summed over solvers, then scaled by
1 / solver_count). Each rank's data layer reads its own shard: the run config
handed to the net carries config['distributed'] = {'rank': r, 'world_size': w}.
"""

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from .errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int


def from_env(environ=None):
    """The torchrun environment, or None for a single process."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        world_size = int(env["WORLD_SIZE"])
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK / WORLD_SIZE / LOCAL_RANK must be integers") from None
    if world_size <= 1:
        return None
    if not 0 <= rank < world_size:
        raise ConfigError(f"RANK {rank} is out of range for WORLD_SIZE {world_size}")
    return DistInfo(rank, world_size, local_rank)


def run_config_entry(info):
    """What data layers read as config['distributed']."""
    if info is None:
        return {"rank": 0, "world_size": 1}
    return {"rank": info.rank, "world_size": info.world_size}


class ProcessGroup:
    """The default process group of a torchrun job, joined on creation."""

    def __init__(self, info, device, timeout_minutes=30):
        self.info = info
        self.rank, self.world_size = info.rank, info.world_size
        backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size,
                                    timeout=datetime.timedelta(minutes=timeout_minutes))
        self.backend = dist.get_backend()
        self.device = torch.device(device)

    @property
    def is_main(self):
        return self.rank == 0

    @torch.no_grad()
    def broadcast_params(self, params):
        """Every rank takes rank 0's values of `params` (tensors)."""
        for p in params:
            dist.broadcast(p.data, src=0)

    @torch.no_grad()
    def average_gradients(self, grads, flags):
        """Average `grads` (tensors, updated in place) over the ranks in one
        all-reduce; returns `flags` (numbers) summed over the ranks."""
        parts = [g.reshape(-1).float() for g in grads]
        parts.append(torch.tensor([float(f) for f in flags], device=self.device))
        flat = torch.cat(parts)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for g in grads:
            n = g.numel()
            g.copy_(flat[offset:offset + n].view_as(g).div_(self.world_size))
            offset += n
        return [float(v) for v in flat[offset:].tolist()]

    def all_gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self):
        dist.barrier()

    def close(self):
        if dist.is_initialized():
            dist.destroy_process_group()
