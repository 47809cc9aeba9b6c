"""Build datasets and loaders (per rank) from a resolved config, failing early; the model and its
adapters come from `pointclora.factory`.

Every check that can fail on user input (missing data or checkpoint, unknown model / adapter /
dataset name, a checkpoint that does not fit) runs here, before the first training step.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import resolve_path
from ..datasets import demo as demo_data
from ..datasets.heldout import HELDOUT, carve, check_fraction
from ..factory import (  # noqa: F401 (their former home: other modules and tests import them here)
    build_model_with_adapters, build_split, dataset_kwargs, eval_dataset_kwargs, load_backbone, splits,
)
from ..models.grouping import Group
from ..sections import TrainConfig, section
from .data_errors import SkipBadFiles
from .distributed import DistInfo, ShardSampler, barrier, train_sampler


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: numpy and python RNGs follow the worker's torch seed, which the
    loader derives from its (per-epoch seeded) generator."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _demo_roots(demo: Path, name: str) -> list[Path]:
    """The dataset roots that make_demo_data(demo) fills for dataset `name`."""
    folder = {"ScanObjectNN": "ScanObjectNN", "ModelNet40": "modelnet40_normal_resampled",
              "ShapeNetPart": demo_data.SHAPENET_FOLDER}.get(name)
    return [demo, demo / folder] if folder else []


def _generate_demo(cfg_dataset: Mapping, info: DistInfo) -> None:
    """Rank 0 writes the demo data under dataset.generate_demo (the demo root); others wait.

    Only when dataset.root is one that the demo data fills: a typo in the root stops with the
    loader's 'not found' message instead of writing the demo data somewhere else first."""
    root = resolve_path(cfg_dataset["generate_demo"])
    data_root = resolve_path(cfg_dataset.get("root", ""))
    roots = _demo_roots(root, cfg_dataset.get("NAME"))
    if data_root not in roots:
        raise FileNotFoundError(
            f"dataset.root '{data_root}' not found; dataset.generate_demo='{root}' only generates "
            f"{cfg_dataset.get('NAME')} demo data when dataset.root is one of {[str(r) for r in roots]}"
            " (is dataset.root misspelt?)")
    if info.is_main:
        print(f"dataset not found: generating the demo data under {root} (seed 0) ...", flush=True)
        demo_data.make_demo_data(str(root), seed=0)
    barrier()


def build_datasets(cfg_dataset: Mapping, info: DistInfo, names: list[str], train_split: str | None = None) -> dict:
    """{split: dataset} for the given split names (`train_split` gets the training transforms and
    random sampling; the others are evaluation splits); generates demo data first when asked."""
    out: dict = {}
    for split in dict.fromkeys(names):
        if split in out or split == HELDOUT:
            continue
        try:
            out[split] = build_split(cfg_dataset, split, train=split == train_split)
        except FileNotFoundError:
            if not cfg_dataset.get("generate_demo") or out:
                raise
            _generate_demo(cfg_dataset, info)
            out[split] = build_split(cfg_dataset, split, train=split == train_split)  # the root exists now
    if HELDOUT in names:  # carved out of the training split, read as an evaluation split reads it
        plain = {k: v for k, v in cfg_dataset.items() if k not in ("train_transforms", "fps_pool")}  # no augmentation
        out[train_split], out[HELDOUT] = carve(out[train_split], build_split(plain, train_split),
                                               check_fraction(cfg_dataset), int(cfg_dataset.get("val_seed") or 0))
    if cfg_dataset.get("on_bad_file", "error") == "skip":
        out = {split: SkipBadFiles(dataset, split, info.is_main) for split, dataset in out.items()}
    return out


def check_model_fits_data(model: torch.nn.Module, cfg_dataset: Mapping, dataset) -> None:
    """A model whose patches need more points than a cloud has can never train: ValueError."""
    npoints = int(cfg_dataset.get("npoints", getattr(dataset, "npoints", 0)) or 0)
    for module in model.modules():
        if isinstance(module, Group) and npoints:
            for key in ("num_group", "group_size"):
                if getattr(module, key) > npoints:
                    raise ValueError(f"model.{key}={getattr(module, key)} is larger than dataset.npoints={npoints}: "
                                     f"a cloud of {npoints} points has no {getattr(module, key)} "
                                     f"{'patch centres' if key == 'num_group' else 'neighbours per patch'}; "
                                     f"lower model.{key} or raise dataset.npoints")
            return


def per_rank_batch(total: int, info: DistInfo, key: str) -> int:
    """train.batch_size is the total batch over all ranks (Point-MAE's total_bs)."""
    if total % info.world_size:
        raise ValueError(f"{key}={total} is not divisible by the world size {info.world_size}")
    return total // info.world_size


def steps_per_epoch(dataset, cfg_train: Mapping, info: DistInfo) -> int:
    """Optimizer steps per epoch (drop_last; DistributedSampler drops the remainder too)."""
    batch = per_rank_batch(int(cfg_train["batch_size"]), info, "train.batch_size")
    steps = (len(dataset) // info.world_size) // batch
    if steps == 0:
        raise ValueError(f"train.batch_size={cfg_train['batch_size']} is larger than the training set "
                         f"({len(dataset)} samples over {info.world_size} process(es)); lower it")
    return steps


def train_loader(dataset, cfg_train: Mapping, info: DistInfo, generator: torch.Generator) -> DataLoader:
    train = section(TrainConfig, cfg_train)
    batch = per_rank_batch(train.batch_size, info, "train.batch_size")
    steps_per_epoch(dataset, cfg_train, info)
    return DataLoader(
        dataset, batch_size=batch, sampler=train_sampler(dataset, info, train.seed),
        num_workers=train.num_workers, drop_last=True, pin_memory=train.pin_memory and info.device.type == "cuda",
        worker_init_fn=seed_worker, generator=generator,
    )


def eval_loader(dataset, cfg_train: Mapping, info: DistInfo) -> DataLoader:
    """Unshuffled, unpadded shard per rank: summed metrics equal single-process ones."""
    train = section(TrainConfig, cfg_train)
    return DataLoader(
        dataset, batch_size=max(1, train.eval_batch_size // info.world_size),
        sampler=ShardSampler(dataset, info.rank, info.world_size), num_workers=train.num_workers, drop_last=False,
        pin_memory=train.pin_memory and info.device.type == "cuda",
        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
    )

