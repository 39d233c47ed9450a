"""This process's place in a multi-process (torchrun/DDP) training job.

Under ``torchrun --nproc_per_node=P`` every process reads ``RANK``, ``LOCAL_RANK`` and
``WORLD_SIZE`` from its environment; without torchrun the job is one process. Rank 0
writes logs, checkpoints and caches; the others wait for it at barriers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor


@dataclass
class ProcessInfo:
    """Rank, world size and local rank of this process (world 1 without torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process created the process group (and destroys it)

    @classmethod
    def setup(cls, device: str) -> ProcessInfo:
        """Join the torchrun job (NCCL on CUDA, gloo on CPU), or a one-process job."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = not dist.is_initialized()
        if owns:
            cuda = torch.cuda.is_available() and device != "cpu"
            dist.init_process_group("nccl" if cuda else "gloo")
        return cls(rank, world, local, owns)

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, x: Tensor) -> Tensor:
        """The mean of ``x`` over processes."""
        if self.world > 1:
            x = x.clone()
            dist.all_reduce(x)
            x /= self.world
        return x

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()
