"""Build datasets, loaders, the model and its adapters from a resolved config, failing early.

Every check that can fail on user input (missing data or checkpoint, unknown model / adapter /
dataset name, a checkpoint that does not fit) runs here, before the first training step.
"""
from __future__ import annotations

import inspect
import os
import random
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import CONFIG_DIR
from .distributed import DistInfo, ShardSampler, barrier, train_sampler

REPO_ROOT = CONFIG_DIR.parent
# dataset-section keys read by the engine, not passed to the dataset constructor
ENGINE_DATASET_KEYS = ("train_split", "val_split", "test_split", "generate_demo", "on_bad_file")
DEFAULT_SPLITS = {"ShapeNetPart": ("trainval", "test", "test")}  # Point-MAE part seg trains on trainval


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


def resolve_path(path: str | os.PathLike) -> Path:
    """A relative path is taken from the current directory, or from the repository root when it
    exists only there (so the shipped configs work from any directory)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or not (REPO_ROOT / p).exists():
        return p.resolve()
    return (REPO_ROOT / p).resolve()


def splits(cfg_dataset: Mapping) -> tuple[str, str, str]:
    """(train, val, test) split names; val selects the best epoch."""
    train, val, test = DEFAULT_SPLITS.get(cfg_dataset.get("NAME"), ("train", "test", "test"))
    return (cfg_dataset.get("train_split", train), cfg_dataset.get("val_split") or val,
            cfg_dataset.get("test_split", test))


def dataset_kwargs(cfg_dataset: Mapping) -> dict:
    """The dataset section minus the engine's keys, with `root` resolved."""
    out = {k: v for k, v in cfg_dataset.items() if k not in ENGINE_DATASET_KEYS}
    if "root" in out:
        out["root"] = str(resolve_path(out["root"]))
    return out


def _demo_roots(demo: Path, name: str) -> list[Path]:
    """The dataset roots that make_demo_data(demo) fills for dataset `name`."""
    from ..datasets.demo import SHAPENET_FOLDER

    folder = {"ScanObjectNN": "ScanObjectNN", "ModelNet40": "modelnet40_normal_resampled",
              "ShapeNetPart": SHAPENET_FOLDER}.get(name)
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
        from ..datasets.demo import make_demo_data

        print(f"dataset not found: generating the demo data under {root} (seed 0) ...", flush=True)
        make_demo_data(str(root), seed=0)
    barrier()


def eval_dataset_kwargs(kwargs: dict) -> dict:
    """Evaluation splits sample points per index from a fixed seed when the dataset supports it
    (ShapeNetPart's `sample_seed`), so metrics repeat exactly whatever the number of ranks."""
    from ..datasets import DATASETS

    cls = DATASETS.get(kwargs.get("NAME"))
    if cls is not None and "sample_seed" in inspect.signature(cls.__init__).parameters:
        return {**kwargs, "sample_seed": kwargs.get("sample_seed") if kwargs.get("sample_seed") is not None else 0}
    return kwargs


def build_datasets(cfg_dataset: Mapping, info: DistInfo, names: list[str], train_split: str | None = None) -> dict:
    """{split: dataset} for the given split names (`train_split` gets the training transforms and
    random sampling; the others are evaluation splits); generates demo data first when asked."""
    from ..datasets import build_dataset

    out: dict = {}
    for split in dict.fromkeys(names):
        if split in out:
            continue
        try:
            kwargs = dataset_kwargs(cfg_dataset)
            out[split] = build_dataset(kwargs if split == train_split else eval_dataset_kwargs(kwargs), split)
        except FileNotFoundError:
            if not cfg_dataset.get("generate_demo") or out:
                raise
            _generate_demo(cfg_dataset, info)
            kwargs = dataset_kwargs(cfg_dataset)  # the root exists now
            out[split] = build_dataset(kwargs if split == train_split else eval_dataset_kwargs(kwargs), split)
    if cfg_dataset.get("on_bad_file", "error") == "skip":
        from .data_errors import SkipBadFiles

        out = {split: SkipBadFiles(dataset, split, info.is_main) for split, dataset in out.items()}
    return out


def check_model_fits_data(model: torch.nn.Module, cfg_dataset: Mapping, dataset) -> None:
    """A model whose patches need more points than a cloud has can never train: ValueError."""
    from ..models.grouping import Group

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
    batch = per_rank_batch(int(cfg_train["batch_size"]), info, "train.batch_size")
    steps_per_epoch(dataset, cfg_train, info)
    return DataLoader(
        dataset, batch_size=batch, sampler=train_sampler(dataset, info, int(cfg_train.get("seed", 0))),
        num_workers=int(cfg_train.get("num_workers", 0)), drop_last=True,
        pin_memory=bool(cfg_train.get("pin_memory", False)) and info.device.type == "cuda",
        worker_init_fn=seed_worker, generator=generator,
    )


def eval_loader(dataset, cfg_train: Mapping, info: DistInfo) -> DataLoader:
    """Unshuffled, unpadded shard per rank: summed metrics equal single-process ones."""
    total = int(cfg_train.get("val_batch_size", cfg_train["batch_size"]))
    return DataLoader(
        dataset, batch_size=max(1, total // info.world_size), sampler=ShardSampler(dataset, info.rank, info.world_size),
        num_workers=int(cfg_train.get("num_workers", 0)), drop_last=False,
        pin_memory=bool(cfg_train.get("pin_memory", False)) and info.device.type == "cuda",
        worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0),  # keeps the global RNG untouched
    )


def load_backbone(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Loads pre-trained weights; a checkpoint that fills none of the backbone is an error."""
    from ..models import load_pretrained

    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpts / ckpts: pre-trained checkpoint '{path}' not found")
    missing, unexpected = load_pretrained(model, str(path))
    total = len(model.state_dict())
    if len(missing) >= total:
        raise ValueError(
            f"checkpoint '{path}' does not fit model {type(model).__name__}: none of its {total} tensors "
            f"matched ({len(unexpected)} unexpected keys, e.g. {unexpected[:3]})"
        )
    print(f"loaded pre-trained weights from {path}: {total - len(missing)}/{total} tensors, "
          f"missing {len(missing)} {missing[:6]}, unexpected {len(unexpected)}", flush=True)


def build_model_with_adapters(cfg: Mapping, ckpts: str | None):
    """Builds model, loads `ckpts` (when given) into the backbone, then applies `adapter`.

    returns (model, adapter_config or None).
    """
    from ..models import build_model

    model = build_model(cfg["model"])
    if ckpts:
        load_backbone(model, ckpts)
    adapter_cfg = None
    if cfg.get("adapter"):
        from ..adapters import AdapterConfig, apply_adapters

        adapter_cfg = AdapterConfig.from_dict(dict(cfg["adapter"]))
        model = apply_adapters(model, adapter_cfg)
    return model, adapter_cfg


def count_params(model: torch.nn.Module) -> dict:
    """{'total', 'trainable', 'adapter', 'head'} (adapter/head from the adapters package)."""
    from ..adapters import count_parameters

    return dict(count_parameters(model))
