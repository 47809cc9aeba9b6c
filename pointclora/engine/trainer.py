"""The one training loop of every task: an epoch of training, evaluation with optional voting, the run state.

What differs between classification, part segmentation and pre-training (loss, logged values,
metrics, the best epoch) comes from the task (engine/tasks.py). `Trainer` holds everything a
checkpoint must restore (model, optimizer, scheduler, scaler, CoTo scheduler, RNG states, best
metric) so that `--resume` continues a killed run exactly. The fit loop is runner.py's.
"""
from __future__ import annotations

import contextlib
from typing import Mapping

import torch

from ..sections import TrainConfig, section
from .checkpoint import load_model_state, rng_state, set_rng_state
from .distributed import DistInfo, all_reduce_sum, broadcast_buffers, unwrap
from .logging import Throughput, progress
from .metrics import reduce_meter
from .tasks import scale_translate


def amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """train.amp: false | true | 'bf16' | 'fp16'. Mixed precision only on CUDA (None elsewhere)."""
    if amp in (False, None, "none", "false", "fp32"):
        return None
    if amp not in (True, "bf16", "bfloat16", "fp16", "float16"):
        raise ValueError(f"train.amp must be false, true, 'bf16' or 'fp16', got {amp!r}")
    if device.type != "cuda":
        return None
    if amp in ("fp16", "float16"):
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class Trainer:
    """Training state and loops for one run (a single process or one torchrun rank)."""

    def __init__(self, model, task, optimizer, scheduler, info: DistInfo, cfg: Mapping, coto=None,
                 use_regularizer: bool = False):
        self.model = model  # possibly DDP-wrapped
        self.task, self.optimizer, self.scheduler = task, optimizer, scheduler
        self.info, self.cfg, self.coto = info, cfg, coto
        self.use_regularizer = use_regularizer
        train = section(TrainConfig, cfg["train"])
        self.epochs, self.grad_clip, self.log_every, self.seed = train.epochs, train.grad_clip, train.log_every, train.seed
        self.dtype = amp_dtype(train.amp, info.device)
        self.scaler = torch.amp.GradScaler(info.device.type, enabled=self.dtype == torch.float16)
        self.loader_generator = torch.Generator()
        self.start_epoch = 0
        self.checkpointed = 0  # epochs finished and saved in ckpt-last.pth (what --resume continues)
        self.best: dict = {}
        self.log_rows: list | None = None  # metrics rows stored in the checkpoint resumed from
        self.resume_overrides: list[dict] = []  # --resume-override history ({'after_epoch', 'changes'})
        self.params = [p for p in unwrap(model).parameters() if p.requires_grad]

    @property
    def base(self) -> torch.nn.Module:
        return unwrap(self.model)

    def train_step(self, batch: Mapping, where: str = "") -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step on a batch already on the device: forward under autocast, the task's
        loss, backward, clipping, step. returns (loss, the task's output)."""
        with autocast(self.info.device, self.dtype):
            out = self.task.train_output(self.model, batch)
        loss = self.task.train_loss(self.base, out, batch, self.use_regularizer, where)
        self.step(loss)
        return loss, out

    def step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, float(self.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.coto is not None:
            self.coto.step()

    def seed_epoch(self, loader, epoch: int) -> None:
        """Order and worker seeds of epoch `epoch` depend only on (seed, epoch, rank)."""
        loader.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(self.seed * 1_000_003 + epoch * 1009 + self.info.rank)

    def train_one_epoch(self, loader, epoch: int) -> dict:
        """returns the task's training values ({'train/loss'[, 'train/acc']}) averaged over all ranks,
        and 'throughput'."""
        self.model.train()
        self.seed_epoch(loader, epoch)
        device = self.info.device
        sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss*n, correct, n
        meter = Throughput()
        bar = progress(loader, epoch, self.epochs, self.info.is_main)
        for step, batch in enumerate(bar):
            batch = self.task.to_device(batch, device)
            loss, out = self.train_step(batch, f"epoch {epoch + 1} step {step}")
            n = self.task.count(batch)
            sums[0] += loss.detach().double() * n
            sums[1] += self.task.correct(out.detach(), batch).double()
            sums[2] += n
            meter.add(n * self.info.world_size)
            if self.info.is_main and (step % self.log_every == 0 or step == len(loader) - 1):
                bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{meter.rate:.1f}")  # host sync: logging only
        bar.close()
        all_reduce_sum(sums)
        return {**self.task.train_row(sums), "throughput": meter.rate}

    @torch.no_grad()
    def evaluate(self, loader, votes: int = 1, collect: bool = False):
        """Metrics on `loader` summed over ranks; votes > 1 averages softmax over extra passes with
        scale-and-translate (Point-MAE's voting). returns metrics, or (metrics, predictions)."""
        model, device = self.base, self.info.device
        broadcast_buffers(model)  # every rank evaluates the model rank 0 saves (its BatchNorm statistics)
        model.eval()
        meter = self.task.new_meter(device)
        gen = torch.Generator().manual_seed(self.seed + 7919 * self.info.rank)
        preds: dict = {}
        with self.task.eval_rng(self.info):
            for batch in loader:
                batch = self.task.to_device(batch, device)
                logits = self._vote(model, batch, votes, gen)
                self.task.update(meter, logits, batch)
                if collect:
                    for k, v in self.task.predictions(logits, batch, are_probs=votes > 1).items():
                        preds.setdefault(k, []).append(v.cpu())
        reduce_meter(meter, all_reduce_sum)
        metrics = meter.compute()
        if collect:
            return metrics, {k: torch.cat(v) for k, v in preds.items()}
        return metrics

    def _vote(self, model, batch: Mapping, votes: int, gen: torch.Generator) -> torch.Tensor:
        with autocast(self.info.device, self.dtype):
            logits = self.task.forward(model, batch).float()
        if votes <= 1:
            return logits
        probs = logits.softmax(-1)
        for _ in range(votes - 1):
            points = scale_translate(batch["points"], gen)
            with autocast(self.info.device, self.dtype):
                probs += self.task.forward(model, batch, points).float().softmax(-1)
        return probs / votes

    def improved(self, metrics: Mapping) -> bool:
        return self.task.improved(self.best, metrics)

    def state_dict(self, epoch: int, rng_all: list, log_rows: list | None = None) -> dict:
        """Checkpoint after `epoch` finished epochs; rng_all: RNG states of every rank; log_rows:
        the metrics.csv rows up to `epoch` (the CSV is rebuilt from them on --resume)."""
        return {
            "model": self.base.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "coto": self.coto.state_dict() if self.coto is not None else None,
            "epoch": epoch,
            "best": dict(self.best),
            "rng": rng_all,  # the loader generator is not saved: seed_epoch re-seeds it every epoch
            "config": self.cfg,
            "task": self.task.name,
            "log": log_rows,
            "resume_overrides": list(self.resume_overrides),
        }

    def load_state_dict(self, ckpt: Mapping, path) -> None:
        """Restores a checkpoint written by `state_dict` (this rank's RNG state when present)."""
        load_model_state(self.base, ckpt["model"], path)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        if self.coto is not None:
            if ckpt.get("coto") is None:
                raise ValueError(f"checkpoint '{path}' has no CoTo state but adapter.coto is true")
            self.coto.load_state_dict(ckpt["coto"])
        self.start_epoch = self.checkpointed = int(ckpt["epoch"])
        self.best = dict(ckpt["best"])
        self.log_rows = ckpt.get("log")
        self.resume_overrides = list(ckpt.get("resume_overrides") or [])
        rngs = ckpt["rng"]
        set_rng_state(rngs[self.info.rank] if self.info.rank < len(rngs) else rngs[0])


def gather_rng_states(info: DistInfo) -> list:
    """RNG states of every rank (rank order), for a checkpoint that resumes each rank exactly."""
    state = rng_state()
    if not info.distributed:
        return [state]
    out = [None] * info.world_size
    torch.distributed.all_gather_object(out, state)
    return out
