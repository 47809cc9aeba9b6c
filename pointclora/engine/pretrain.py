"""`tools/pretrain.py` behind the command line: Point-MAE pre-training with the fine-tuning engine.

The same pieces as `tools/train.py` (config with _base_, datasets, AdamW + cosine warm-up,
atomic checkpoints with every RNG state, exact --resume, tqdm, CSV / TensorBoard / PNG logs,
torchrun), with a task whose forward is the model's Chamfer loss: labels are ignored, so any
dataset (or a folder of point files, `PointCloudFolder`) pre-trains.

Output folder: config.yaml (resolved), ckpt-last.pth (full state for --resume), pretrain.pth
(the official Point-MAE layout {'base_model': state dict with MAE_encoder.*, MAE_decoder.*,
mask_token, decoder_pos_embed.*, increase_dim.*; 'epoch'; 'metrics'}: pass it to
`tools/train.py --ckpts`), metrics.csv, tb/, curves.png, results.json.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import torch

from ..config import save_config
from . import builders as B
from .checkpoint import atomic_save, load_checkpoint, write_text_atomic
from .data_errors import skipped_files
from .faults import RunInterrupted, check_output_dir, clean_stale_temp_files, writing
from .distributed import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, wrap_model
from .logging import RunLogger, Throughput, plot_curves, progress
from .optim import build_optimizer, build_scheduler
from .resume import apply_optimizer_config, check_epochs, check_resume
from .runner import preflight, resolve_run_config
from .trainer import Trainer, autocast, gather_rng_states

EVAL_MASK_SEED = 1234  # fixed masks for the validation loss, so epochs compare on the same task


class PretrainTask:
    """Unlabelled clouds: the model's forward returns the loss; labels (if any) are ignored."""

    name = "pretrain"
    select_key = "loss"
    metric_keys = ("loss",)

    def to_device(self, batch: Mapping, device: torch.device) -> dict:
        """batch['points']: (B, N, C) -> {'points': (B, N, 3)} (normals etc. dropped)."""
        return {"points": batch["points"][..., :3].contiguous().to(device, non_blocking=True)}

    def forward(self, model, batch: Mapping) -> torch.Tensor:
        return model(batch["points"])  # scalar Chamfer loss on the masked patches


class PretrainTrainer(Trainer):
    """Trainer whose step minimises the model's own loss; best = lowest validation loss."""

    def train_one_epoch(self, loader, epoch: int) -> dict:
        """returns {'train/loss', 'throughput'} averaged over all ranks."""
        self.model.train()
        self.seed_epoch(loader, epoch)
        sums = torch.zeros(2, dtype=torch.float64, device=self.info.device)  # loss*n, n
        meter = Throughput()
        bar = progress(loader, epoch, self.epochs, self.info.is_main)
        for step, batch in enumerate(bar):
            batch = self.task.to_device(batch, self.info.device)
            with autocast(self.info.device, self.dtype):
                loss = self.task.forward(self.model, batch).float()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pre-training loss is {loss.item()} at epoch {epoch + 1} step {step}; "
                                         "lower optimizer.lr or set train.grad_clip")
            self._step(loss)
            n = batch["points"].shape[0]
            sums[0] += loss.detach().double() * n
            sums[1] += n
            meter.add(n * self.info.world_size)
            if self.info.is_main and (step % self.log_every == 0 or step == len(loader) - 1):
                bar.set_postfix(loss=f"{loss.item():.4f}", samples_per_s=f"{meter.rate:.1f}")
        bar.close()
        all_reduce_sum(sums)
        return {"train/loss": sums[0].item() / max(sums[1].item(), 1.0), "throughput": meter.rate}

    @torch.no_grad()
    def evaluate(self, loader) -> dict:
        """Mean Chamfer loss on `loader` with masks drawn from a fixed seed (global RNG untouched)."""
        model = self.base
        model.eval()
        sums = torch.zeros(2, dtype=torch.float64, device=self.info.device)
        devices = [self.info.device] if self.info.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(EVAL_MASK_SEED + self.info.rank)
            for batch in loader:
                batch = self.task.to_device(batch, self.info.device)
                with autocast(self.info.device, self.dtype):
                    loss = self.task.forward(model, batch).float()
                sums[0] += loss.double() * batch["points"].shape[0]
                sums[1] += batch["points"].shape[0]
        all_reduce_sum(sums)
        return {"loss": sums[0].item() / max(sums[1].item(), 1.0)}

    def improved(self, metrics: Mapping) -> bool:
        return not self.best or metrics["loss"] < self.best["loss"]


def export_pretrained(model: torch.nn.Module, epoch: int, metrics: Mapping, path: Path) -> Path:
    """Writes the official Point-MAE pre-training layout (readable with weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"base_model": state, "epoch": int(epoch),
                        "metrics": {k: float(v) for k, v in metrics.items()}}, path)


def build_pretrain_model(cfg: Mapping, ckpts: str | None) -> torch.nn.Module:
    """model section -> PointMAEPretrain (+ weights to continue from); ValueError names model.NAME."""
    from ..models import build_model
    from ..models.point_mae_pretrain import PointMAEPretrain

    model = build_model(cfg["model"])
    if not isinstance(model, PointMAEPretrain):
        raise ValueError(f"model.NAME={cfg['model'].get('NAME')!r} builds {type(model).__name__}; "
                         "pre-training needs 'PointMAEPretrain' (or the official alias 'Point_MAE')")
    if ckpts:
        B.load_backbone(model, ckpts)
    return model


def main(args) -> dict:
    """Pre-trains in this process (one torchrun rank or the only process)."""
    with preflight():
        cfg = resolve_run_config(args)
        info = init_distributed(args.device)
    try:
        return run_pretrain(cfg, args, info)
    finally:
        cleanup()


def _setup(cfg: dict, args, info: DistInfo, out: Path):
    """Datasets, model, trainer and loaders, all checked before the first step."""
    train_split, val_split = cfg["dataset"].get("train_split", "train"), cfg["dataset"].get("val_split")
    check_output_dir(out)
    if args.resume and not (out / "ckpt-last.pth").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint '{out / 'ckpt-last.pth'}' (set --output-dir to the run's folder)")
    dsets = B.build_datasets(cfg["dataset"], info, [train_split] + ([val_split] if val_split else []))
    seed = int(cfg["train"].get("seed", 0))
    B.set_seed(seed)
    model = build_pretrain_model(cfg, None if args.resume else cfg.get("ckpts"))
    B.check_model_fits_data(model, cfg["dataset"], dsets[train_split])
    model = model.to(info.device)
    B.set_seed(seed + info.rank)
    epochs = int(cfg["train"]["epochs"])
    B.steps_per_epoch(dsets[train_split], cfg["train"], info)
    optimizer = build_optimizer(model, cfg["optimizer"])
    scheduler = build_scheduler(optimizer, cfg.get("scheduler", {}), epochs)
    trainer = PretrainTrainer(wrap_model(model, info), PretrainTask(), optimizer, scheduler, info, cfg)
    tl = B.train_loader(dsets[train_split], cfg["train"], info, trainer.loader_generator)
    vl = B.eval_loader(dsets[val_split], cfg["train"], info) if val_split else None
    trainer.skipped_files = skipped_files(dsets)
    if args.resume:  # the rule of engine/resume.py: a changed key needs --resume-override
        ckpt = load_checkpoint(out / "ckpt-last.pth")
        changes = check_resume(ckpt["config"], cfg, bool(getattr(args, "resume_override", False)))
        trainer.load_state_dict(ckpt, out / "ckpt-last.pth")
        check_epochs(trainer.start_epoch, trainer.epochs)
        if changes:
            if any(c.startswith("optimizer.") for c in changes):
                apply_optimizer_config(optimizer, scheduler, build_optimizer(model, cfg["optimizer"]))
            trainer.resume_overrides.append({"after_epoch": trainer.start_epoch, "changes": changes})
            if info.is_main:
                print(f"--resume-override: continuing after epoch {trainer.start_epoch} with {'; '.join(changes)}",
                      flush=True)
    return trainer, tl, vl, {k: len(v) for k, v in dsets.items()}


def run_pretrain(cfg: dict, args, info: DistInfo) -> dict:
    out = Path(cfg["output_dir"]).expanduser().resolve()
    with preflight():
        trainer, tl, vl, sizes = _setup(cfg, args, info, out)
    try:
        return _run(cfg, args, info, trainer, tl, vl, sizes, out)
    except KeyboardInterrupt:
        raise RunInterrupted(trainer.checkpointed) from None


def _run(cfg, args, info: DistInfo, trainer: PretrainTrainer, tl, vl, sizes, out: Path) -> dict:
    params = B.count_params(trainer.base)
    if info.is_main:
        clean_stale_temp_files(out)
        out.mkdir(parents=True, exist_ok=True)
        with writing(out / "config.yaml", "config"):
            save_config(cfg, out / "config.yaml")
        print(f"pre-training {cfg['model']['NAME']} (mask ratio {cfg['model'].get('mask_ratio', 0.6)}, "
              f"{cfg['model'].get('mask_type', 'rand')}) on {cfg['dataset']['NAME']} {sizes} | device {info.device} x "
              f"{info.world_size} | {params['total']:,} parameters"
              + (f" | resuming after epoch {trainer.start_epoch}" if trainer.start_epoch else ""), flush=True)
    log = RunLogger(out, info.is_main, trainer.start_epoch, trainer.log_rows)
    start = time.perf_counter()
    limit = getattr(args, "max_epochs_this_run", None)
    stop = min(trainer.epochs, trainer.start_epoch + limit) if limit else trainer.epochs
    for epoch in range(trainer.start_epoch, stop):
        row = _epoch(trainer, tl, vl, epoch)
        state = trainer.state_dict(epoch + 1, gather_rng_states(info), log.rows_with(epoch + 1, row))
        if info.is_main:
            atomic_save(state, out / "ckpt-last.pth")
            export_pretrained(trainer.base, epoch + 1, {"loss": row["train/loss"]}, out / "pretrain.pth")
        trainer.checkpointed = epoch + 1
        log.log_epoch(epoch + 1, row)
        if info.is_main:
            print(_epoch_line(epoch + 1, trainer.epochs, row), flush=True)
    log.close()
    barrier()
    if stop < trainer.epochs:
        if info.is_main:
            print(f"stopped after epoch {stop}/{trainer.epochs} (--max-epochs-this-run); continue with --resume")
        return {"stopped_at": stop, "output_dir": str(out)}
    return _finish(trainer, out, log.rows, params, time.perf_counter() - start)


def _epoch(trainer: PretrainTrainer, tl, vl, epoch: int) -> dict:
    t0 = time.perf_counter()
    lr = trainer.optimizer.param_groups[-1]["lr"]
    row = trainer.train_one_epoch(tl, epoch)
    trainer.scheduler.step()
    row["lr"] = lr
    val_freq = int(trainer.cfg["train"].get("val_freq", 1))
    metrics = {"loss": row["train/loss"]}
    if vl is not None and ((epoch + 1) % val_freq == 0 or epoch + 1 == trainer.epochs):
        metrics = trainer.evaluate(vl)
        row["val/loss"] = metrics["loss"]
    if vl is None or "val/loss" in row:
        if trainer.improved(metrics):
            trainer.best = {**metrics, "epoch": epoch + 1, "split": "val" if vl is not None else "train"}
    row["epoch_time_s"] = time.perf_counter() - t0
    return row


def _epoch_line(epoch: int, epochs: int, row: Mapping) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {row['train/loss']:.5f}"]
    if "val/loss" in row:
        parts.append(f"val loss {row['val/loss']:.5f}")
    parts += [f"lr {row['lr']:.2e}", f"{row['throughput']:.1f} samples/s, {row['epoch_time_s']:.1f} s"]
    return " | ".join(parts)


def _finish(trainer: PretrainTrainer, out: Path, rows: list, params: Mapping, seconds: float) -> dict:
    files = {"output_dir": str(out), "pretrained": str(out / "pretrain.pth"), "last": str(out / "ckpt-last.pth"),
             "config": str(out / "config.yaml"), "csv": str(out / "metrics.csv"),
             "plot": str(out / "curves.png"), "results": str(out / "results.json")}
    if (out / "tb").is_dir():  # tensorboard is optional
        files["tensorboard"] = str(out / "tb")
    losses = [r["train/loss"] for r in rows]
    results = {"task": "pretrain", "epochs": trainer.epochs, "first_loss": losses[0] if losses else None,
               "final_loss": losses[-1] if losses else None, "best": trainer.best, "parameters": params,
               "train_time_s": seconds, "world_size": trainer.info.world_size, "files": files,
               "skipped_files": trainer.skipped_files, "resume_overrides": trainer.resume_overrides}
    if trainer.info.is_main:
        plot_curves(rows, out / "curves.png")
        write_text_atomic(out / "results.json", json.dumps(results, indent=2))
        print("\n==== pre-training summary ====")
        if losses:
            print(f"Chamfer-L2 loss (train, masked patches): epoch 1 {losses[0]:.5f} -> epoch {len(losses)} "
                  f"{losses[-1]:.5f}" + (f"; best val {trainer.best['loss']:.5f} (epoch {trainer.best['epoch']})"
                                         if trainer.best.get("split") == "val" else ""))
        print(f"time: {seconds:.1f} s on {trainer.info.world_size} process(es) (this run)")
        if trainer.skipped_files:
            print(f"skipped {len(trainer.skipped_files)} bad file(s) (dataset.on_bad_file=skip): "
                  + "; ".join(e["error"] for e in trainer.skipped_files))
        print(f"load it for fine-tuning: python tools/train.py --config <config> --ckpts {out / 'pretrain.pth'}")
        print("outputs: " + ", ".join(f"{k} {v}" for k, v in files.items()), flush=True)
    barrier()
    return results


__all__ = ["PretrainTask", "PretrainTrainer", "build_pretrain_model", "export_pretrained", "main", "run_pretrain"]
