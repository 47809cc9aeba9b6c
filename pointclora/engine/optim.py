"""AdamW with Point-MAE's weight-decay groups and a per-epoch cosine schedule with warm-up.

Recipe: Point-MAE cfgs/finetune_scan_hardest.yaml (AdamW lr 5e-4, wd 0.05, CosLR with
10 initial epochs; timm CosineLRScheduler with lr_min 1e-6 and warmup_lr_init 1e-6).
"""
from __future__ import annotations

import math
from typing import Mapping

import torch
from torch import nn

from ..models.base import without_weight_decay
from ..sections import OptimizerConfig, SchedulerConfig, section


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Splits trainable parameters into decay / no-decay groups.

    No decay on 1-D parameters (biases, norm weights), names ending in `.bias`, names
    containing `token` (cls token, mask token, positional tokens) and names the model lists
    in `no_weight_decay()` — Point-MAE's `add_weight_decay`.
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if without_weight_decay(name, param) or "token" in name or name in skip:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: Mapping) -> torch.optim.Optimizer:
    """cfg: the `optimizer` section (sections.OptimizerConfig: type AdamW, lr, weight_decay, betas, eps)."""
    opt = section(OptimizerConfig, cfg)
    if opt.type != "AdamW":
        raise ValueError(f"optimizer.type: only 'AdamW' is supported, got '{opt.type}'")
    groups = param_groups(model, float(opt.weight_decay))
    if not groups:
        raise ValueError("optimizer: the model has no trainable parameters (check the adapter config)")
    return torch.optim.AdamW(groups, lr=float(opt.lr), betas=tuple(opt.betas), eps=float(opt.eps))


def cosine_lr(epoch: int, base_lr: float, epochs: int, warmup_epochs: int, min_lr: float, warmup_lr: float) -> float:
    """Learning rate at the start of `epoch` (0-based).

    Linear warm-up from `warmup_lr` to `base_lr` over `warmup_epochs`, then a half cosine
    from `base_lr` to `min_lr` over the remaining epochs.
    """
    if epoch < warmup_epochs:
        return warmup_lr + (base_lr - warmup_lr) * epoch / warmup_epochs
    span = max(1, epochs - warmup_epochs)
    t = min(1.0, (epoch - warmup_epochs) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


class CosineWarmupScheduler:
    """Per-epoch cosine schedule with warm-up; `step()` once at the end of every epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, warmup_epochs: int = 10,
                 min_lr: float = 1e-6, warmup_lr: float = 1e-6):
        if epochs <= 0:
            raise ValueError(f"train.epochs must be > 0, got {epochs}")
        if not 0 <= warmup_epochs <= epochs:
            raise ValueError(f"scheduler.warmup_epochs must be in [0, epochs={epochs}], got {warmup_epochs}")
        self.optimizer = optimizer
        self.epochs, self.warmup_epochs = epochs, warmup_epochs
        self.min_lr, self.warmup_lr = min_lr, warmup_lr
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.epoch = 0
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = cosine_lr(self.epoch, base, self.epochs, self.warmup_epochs, self.min_lr, self.warmup_lr)

    def step(self) -> None:
        self.epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: Mapping) -> None:
        self.epoch = int(state["epoch"])
        self.base_lrs = list(state["base_lrs"])
        self._apply()


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Mapping, epochs: int) -> CosineWarmupScheduler:
    """cfg: the `scheduler` section (sections.SchedulerConfig: type cosine, warmup_epochs, min_lr, warmup_lr)."""
    sched = section(SchedulerConfig, cfg)
    if sched.type != "cosine":
        raise ValueError(f"scheduler.type: only 'cosine' is supported, got '{sched.type}'")
    return CosineWarmupScheduler(optimizer, epochs, warmup_epochs=int(sched.warmup_epochs),
                                 min_lr=float(sched.min_lr), warmup_lr=float(sched.warmup_lr))
