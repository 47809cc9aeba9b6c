"""torch.distributed helpers: one code path for a single process and for `torchrun`.

Under torchrun (RANK / WORLD_SIZE / LOCAL_RANK set) the process group is initialised with
NCCL on CUDA and gloo on CPU; otherwise everything runs in one process with world size 1.
Only rank 0 writes files. Evaluation shards the dataset without padding, so metrics summed
across ranks equal the single-process metrics exactly.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterator, Sized

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler, Sampler


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistInfo:
    """Initialises the process group when launched by torchrun; returns this process's DistInfo.

    device: 'cpu', 'cuda' or None (CUDA when available).
    """
    use_cuda = torch.cuda.is_available() if device is None else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available on this machine")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sums `tensor` across ranks in place (no-op in a single process); returns it."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copies rank 0's buffers (BatchNorm running statistics) to every rank (no-op in a single process).

    DDP broadcasts buffers only before training forwards, so after an epoch each rank holds the
    statistics of its own last batches; evaluating with rank 0's makes every rank score the model
    that rank 0 saves."""
    if dist.is_available() and dist.is_initialized():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


class ShardSampler(Sampler[int]):
    """Deterministic, unpadded shard of range(len(dataset)) for evaluation: rank r gets r, r+W, ..."""

    def __init__(self, dataset: Sized, rank: int, world_size: int):
        self.n, self.rank, self.world_size = len(dataset), rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


class EpochRandomSampler(Sampler[int]):
    """Single-process shuffling seeded by (seed, epoch): the order of epoch e does not depend on
    how many epochs ran before in this process, which makes resumed runs identical."""

    def __init__(self, dataset: Sized, seed: int):
        self.n, self.seed, self.epoch = len(dataset), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def train_sampler(dataset: Sized, info: DistInfo, seed: int) -> Sampler[int]:
    """DistributedSampler (seeded, shuffled, drop_last) under torchrun, else EpochRandomSampler."""
    if info.distributed:
        return DistributedSampler(dataset, num_replicas=info.world_size, rank=info.rank,
                                  shuffle=True, seed=seed, drop_last=True)
    return EpochRandomSampler(dataset, seed)


def wrap_model(model: torch.nn.Module, info: DistInfo, find_unused: bool = False) -> torch.nn.Module:
    """DistributedDataParallel under torchrun (find_unused for CoTo, which drops adapters), else as is."""
    if not info.distributed:
        return model
    ids = [info.local_rank] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
