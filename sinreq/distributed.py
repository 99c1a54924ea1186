"""One run on many processes, started by torchrun: the process group, the sharded train loader,
and the rule that rank 0 alone writes (checkpoint, metrics.json, MLflow).

``torchrun --nproc-per-node N -m sinreq train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; without them everything here is a no-op and a run is one plain process. The
batch size stays the global one (each rank takes ``batch_size / N``), so a run's learning rate
does not change with N. Every rank evaluates the whole split and recalibrates BatchNorm on the
same batches, so all ranks hold one answer without an all-reduce.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True on rank 0 (and in a single process): the one process that writes."""
    return int(os.environ.get("RANK", "0")) == 0


def local_device(device: torch.device) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` under torchrun on CUDA, else ``device``."""
    if device.type == "cuda" and world_size() > 1:
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return device


@contextmanager
def process_group(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group for the duration (nccl on CUDA, gloo on CPU)."""
    if world_size() == 1 or dist.is_initialized():
        yield
        return
    if device.type == "cuda":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
        dist.barrier()  # rank 0 may still be writing the last run's files
    finally:
        dist.destroy_process_group()


def check_batch_size(batch_size: int) -> None:
    """The global batch must split evenly over the ranks."""
    n = world_size()
    if batch_size % n:
        raise ValueError(
            f"--batch_size {batch_size} does not split over {n} processes; allowed: a multiple "
            f"of {n} (the batch size is the global one)"
        )


def shard(loader: DataLoader, seed: int) -> DataLoader:
    """``loader``'s dataset split over the ranks by a DistributedSampler seeded with ``seed``
    (call ``sampler.set_epoch(e)`` every epoch), ``batch_size / world_size`` per rank."""
    sampler = DistributedSampler(loader.dataset, shuffle=True, seed=seed)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size // world_size(),
        sampler=sampler,
        generator=loader.generator,  # seeds the workers, as in the single-process loader
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel around ``model``: gradients are averaged over the ranks, which
    leaves SinReQ's gradient (the same on every rank, as the weights are) unchanged."""
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def sum_over_ranks(values: list, device: torch.device) -> list:
    """Each value summed over the ranks (returned unchanged in a single process)."""
    if world_size() == 1:
        return values
    total = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(total)  # on ``device``: nccl reduces CUDA tensors only
    return total.tolist()
