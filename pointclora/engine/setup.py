"""Everything a run needs before its first step, for either kind of run, checked before training:
splits, datasets, the task, the model (+ backbone weights, + adapters), optimizer, schedulers,
the trainer and its loaders. `Run` carries them through the fit loop to the task's artefacts."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..adapters import CoToScheduler
from ..factory import build_model_with_adapters, load_backbone, splits
from ..models import build_model
from ..sections import TrainConfig, section
from . import builders as B
from .data_errors import skipped_files
from .distributed import DistInfo, wrap_model
from .optim import build_optimizer, build_scheduler
from .options import PRETRAIN
from .tasks import build_task
from .trainer import Trainer


@dataclass
class Run:
    """One run's pieces: what the fit loop and the task's `finish` read."""

    cfg: dict
    info: DistInfo
    out: Path
    splits: tuple  # (train, val or None, test or None)
    datasets: dict
    task: object
    model: torch.nn.Module
    adapter_cfg: object = None
    trainer: Optional[Trainer] = None
    train_loader: object = None
    val_loader: object = None
    test_loader: object = None  # a separate validation split: the test split is evaluated every epoch too
    params: dict = field(default_factory=dict)
    rows: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def train(self) -> TrainConfig:
        return section(TrainConfig, self.cfg["train"])

    @property
    def skipped(self) -> list:
        return skipped_files(self.datasets)

    def loader(self, split: str):
        return B.eval_loader(self.datasets[split], self.cfg["train"], self.info)

    def sizes(self) -> dict:
        return {k: len(v) for k, v in self.datasets.items()}


def run_splits(cfg_dataset: Mapping, mode: str) -> tuple:
    """(train, val, test) split names; pre-training has no test split and an optional val split."""
    if mode == PRETRAIN:
        return cfg_dataset.get("train_split", "train"), cfg_dataset.get("val_split"), None
    return splits(cfg_dataset)


def build_pretrain_model(cfg: Mapping, ckpts: str | None) -> torch.nn.Module:
    """model section -> a pre-training model (+ weights to continue from); ValueError names model.NAME."""
    model = build_model(cfg["model"])
    if getattr(model, "TASK", None) != "pretrain":
        raise ValueError(f"model.NAME={cfg['model'].get('NAME')!r} builds {type(model).__name__}; "
                         "pre-training needs 'PointMAEPretrain' (or the official alias 'Point_MAE')")
    if ckpts:
        load_backbone(model, ckpts)
    return model


def build_run(cfg: dict, info: DistInfo, mode: str, ckpts: str | None, names: list | None = None) -> Run:
    """Splits, datasets, task and model (weights `ckpts`, adapters), on the device; `names`: the
    splits to build (default all of the run's)."""
    split_names = run_splits(cfg["dataset"], mode)
    # fine-tuning's training split gets the training sampling; pre-training keeps the evaluation
    # keywords for every split (ShapeNetPart's fixed per-index sampling), as it always did
    train_split = split_names[0] if names is None and mode != PRETRAIN else None
    names = names or [s for s in split_names if s]
    dsets = B.build_datasets(cfg["dataset"], info, names, train_split)
    task = build_task(cfg["model"], dsets[names[0]], mode)
    B.set_seed(section(TrainConfig, cfg["train"]).seed)
    if mode == PRETRAIN:
        model, adapter_cfg = build_pretrain_model(cfg, ckpts), None
    else:
        model, adapter_cfg = build_model_with_adapters(cfg, ckpts)
    B.check_model_fits_data(model, cfg["dataset"], dsets[names[0]])
    out = Path(cfg["output_dir"]).expanduser().resolve()
    return Run(cfg, info, out, split_names, dsets, task, model.to(info.device), adapter_cfg)


def add_trainer(run: Run) -> Run:
    """Optimizer, scheduler, CoTo, DDP, the trainer and the loaders of a run built by build_run."""
    cfg, info, model, adapter_cfg = run.cfg, run.info, run.model, run.adapter_cfg
    train = run.train
    B.set_seed(train.seed + info.rank)
    train_set = run.datasets[run.splits[0]]
    steps = B.steps_per_epoch(train_set, cfg["train"], info)
    optimizer = build_optimizer(model, cfg["optimizer"])
    scheduler = build_scheduler(optimizer, cfg.get("scheduler", {}), train.epochs)
    coto = None
    if adapter_cfg is not None and adapter_cfg.coto:
        coto = CoToScheduler(model, total_steps=train.epochs * steps, p_start=adapter_cfg.coto_p_start,
                             ramp_fraction=adapter_cfg.coto_ramp_fraction, seed=adapter_cfg.seed)
    ddp = wrap_model(model, info, find_unused=adapter_cfg is not None)
    regularize = adapter_cfg is not None and adapter_cfg.sade_weight > 0
    run.trainer = Trainer(ddp, run.task, optimizer, scheduler, info, cfg, coto=coto, use_regularizer=regularize)
    run.train_loader = B.train_loader(train_set, cfg["train"], info, run.trainer.loader_generator)
    run.val_loader = run.loader(run.splits[1]) if run.splits[1] else None
    # a separate validation split: the test split is evaluated every epoch too (all three protocols)
    run.test_loader = run.loader(run.splits[2]) if run.splits[2] and run.splits[2] != run.splits[1] else None
    return run


__all__ = ["Run", "add_trainer", "build_pretrain_model", "build_run", "run_splits"]
