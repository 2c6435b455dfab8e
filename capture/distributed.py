"""Several capture processes, one per GPU, through torch.distributed (launched by torchrun).

Each rank loads the model once, takes a disjoint, deterministic shard of the images that are
not done yet (balanced by file size, so ranks finish together) and writes only its own files:
prediction parts named by rank, ``trace/rank=R/``, and its own log. Rank 0 writes run.json at
the start and, once every rank finished, merges the parts and records the world size.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from dsocr.capture.pdf import page_size_bytes
from dsocr.capture.signals import exit_with_parent

from dsocr.errors import BadInputError


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.world_size > 1:
            dist.barrier()

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a one-item list in a single process)."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


def join(device: str) -> Ranks:
    """Join the process group torchrun set up (env RANK, WORLD_SIZE, LOCAL_RANK), if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks()
    ranks = Ranks(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    # A rank outliving torchrun would capture on, unseen: SIGTERM stops it like a Ctrl-C.
    exit_with_parent(signal.SIGTERM)
    if device == "cuda":
        if torch.cuda.device_count() <= ranks.local_rank:
            raise BadInputError(f"rank {ranks.rank}: no CUDA device {ranks.local_rank} on this host")
        torch.cuda.set_device(ranks.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return ranks


def shard(image_sizes: dict[int, int], world_size: int) -> list[list[int]]:
    """Split image indices over ranks, largest first to the least-loaded rank (ties: lower rank).

    Deterministic for the same inputs, so every rank computes the same plan on its own.
    """
    loads = [0] * world_size
    plan: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(image_sizes, key=lambda index: (-image_sizes[index], index)):
        target = min(range(world_size), key=lambda rank: (loads[rank], rank))
        plan[target].append(index)
        loads[target] += image_sizes[index]
    return [sorted(indices) for indices in plan]


def image_size_bytes(path: Path) -> int:
    """File size as the cost estimate of an image (0 for a missing file: it fails fast); a PDF
    page's is its share of the PDF's bytes, so that a document's pages spread over the ranks."""
    page_bytes = page_size_bytes(path)
    if page_bytes is not None:
        return page_bytes
    try:
        return path.stat().st_size
    except OSError:
        return 0
