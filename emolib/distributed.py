"""Several GPUs with ``torchrun``: which process this is, and the few collectives we need.

Under ``torchrun --nproc_per_node=N`` every rank trains on its share of each batch, DDP
averages the gradients, and the contrastive loss all-gathers the embeddings
(:func:`emolib.losses.gather_with_grad`). Rank 0 alone writes files.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from emolib.hardware import default_device


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=default_device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return DistInfo()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if cuda:  # before the process group, so NCCL binds each rank to its own GPU
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return DistInfo(rank, world, torch.device(f"cuda:{local}" if cuda else "cpu"))


def from_main(info: DistInfo, value: float) -> float:
    """Rank 0's ``value`` on every rank, so all take the same early-stopping decision
    (ranks that disagreed in the last bit of a metric would otherwise hang DDP)."""
    if info.world_size == 1:
        return value
    box = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.broadcast(box, src=0)
    return float(box)


@contextlib.contextmanager
def main_first(info: DistInfo):
    """Rank 0 runs the block first, then the other ranks (shared files are written once)."""
    if info.world_size > 1 and not info.is_main:
        dist.barrier()
    yield
    if info.world_size > 1 and info.is_main:
        dist.barrier()


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        dist.barrier()
