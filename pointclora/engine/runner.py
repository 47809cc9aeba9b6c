"""The one run pipeline behind `tools/train.py` and `tools/pretrain.py`: fit (train + evaluate +
checkpoints + the task's artefacts) and test, for classification, part segmentation and pre-training.

Fine-tuning output folder: config.yaml (resolved), ckpt-last.pth, ckpt-best.pth, metrics.csv, tb/,
curves.png, results.json (best epoch, the split that selected it, test metrics, parameters) and, for
adapter runs, adapter-best.safetensors (adapters + trainable head only). Pre-training: config.yaml,
ckpt-last.pth, pretrain.pth (the official Point-MAE layout {'base_model', 'epoch', 'metrics'}: pass
it to `tools/train.py --ckpts`), metrics.csv, tb/, curves.png, results.json.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ..adapters import count_parameters
from ..config import save_config
from ..datasets.common import DataError
from .checkpoint import atomic_link, atomic_save, load_checkpoint
from .distributed import barrier, cleanup, init_distributed
from .evaluate import evaluate_checkpoint
from .faults import (
    INTERRUPT_STATUS, WRITE_ERROR_STATUS, RunInterrupted, WriteError, check_output_dir, clean_stale_temp_files, writing,
)  # fmt: skip
from .logging import RunLogger
from .optim import build_optimizer
from .options import FINETUNE, RunOptions, SetupError, preflight, resolve_run_config
from .resume import apply_optimizer_config, check_epochs, check_resume
from .setup import Run, add_trainer, build_run
from .tasks import print_summary
from .trainer import gather_rng_states


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _close_progress_bars() -> None:
    """Clears the epoch's tqdm bar, so that the one error line does not land behind it."""
    for bar in list(getattr(tqdm, "_instances", [])):
        with contextlib.suppress(Exception):
            bar.close()


def run_cli(run, options) -> int:
    """Runs `run(options)` for a command-line tool; every expected failure ends in one line on stderr:
    bad input or a bad data file -> exit 2, Ctrl-C -> 130, an output that cannot be written -> 1."""
    try:
        try:
            run(options)
        finally:
            _close_progress_bars()
    except (SetupError, DataError) as err:  # bad input, found before training or mid-epoch
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 2
    except RunInterrupted as err:
        if _is_main_process():
            print(err if err.epoch else "interrupted before the first epoch finished; nothing to resume, start again",
                  file=sys.stderr, flush=True)
        return INTERRUPT_STATUS
    except KeyboardInterrupt:
        if _is_main_process():
            print("interrupted before training started; nothing was written", file=sys.stderr, flush=True)
        return INTERRUPT_STATUS
    except WriteError as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return WRITE_ERROR_STATUS
    return 0


def main(options: RunOptions) -> dict:
    """Runs fit or test in this process (one torchrun rank or the only process)."""
    with preflight():
        cfg = resolve_run_config(options)
        info = init_distributed(options.device)
    try:
        return evaluate_checkpoint(cfg, options, info) if options.test else fit(cfg, options, info)
    finally:
        cleanup()


def fit(cfg: dict, options: RunOptions, info) -> dict:
    """Trains (or continues, with options.resume) the run `cfg` describes, for any task."""
    with preflight():
        out = Path(cfg["output_dir"]).expanduser().resolve()
        check_output_dir(out)
        last_path = out / "ckpt-last.pth"
        if options.resume and not last_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint '{last_path}' (set --output-dir to the run's folder)")
        run = add_trainer(build_run(cfg, info, options.mode, None if options.resume else cfg.get("ckpts")))
        if options.resume:
            _resume(run, options, last_path)
    try:
        return _fit(run, options)
    except KeyboardInterrupt:
        raise RunInterrupted(run.trainer.checkpointed) from None


def _resume(run: Run, options: RunOptions, last_path: Path) -> None:
    """Loads ckpt-last.pth into the trainer under the rule of engine/resume.py."""
    trainer, cfg = run.trainer, run.cfg
    ckpt = load_checkpoint(last_path)
    changes = check_resume(ckpt["config"], cfg, options.resume_override)
    trainer.load_state_dict(ckpt, last_path)
    check_epochs(trainer.start_epoch, trainer.epochs)
    if changes:
        if any(c.startswith("optimizer.") for c in changes):
            apply_optimizer_config(trainer.optimizer, trainer.scheduler, build_optimizer(run.model, cfg["optimizer"]))
        trainer.resume_overrides.append({"after_epoch": trainer.start_epoch, "changes": changes})
        if run.info.is_main:
            print(f"--resume-override: continuing after epoch {trainer.start_epoch} with {'; '.join(changes)}",
                  flush=True)


def _fit(run: Run, options: RunOptions) -> dict:
    trainer, info, out = run.trainer, run.info, run.out
    run.params = count_parameters(run.model)
    if info.is_main:
        clean_stale_temp_files(out)  # temporary files of a killed run
        out.mkdir(parents=True, exist_ok=True)
        with writing(out / "config.yaml", "config"):
            save_config(run.cfg, out / "config.yaml")
        print(run.task.header(run.cfg, run.params, info, run.sizes(), run.splits, trainer.start_epoch), flush=True)
        if trainer.start_epoch == trainer.epochs and options.mode == FINETUNE:
            print(f"all {trainer.epochs} epochs were already trained; writing the results of the best epoch",
                  flush=True)
    start = time.perf_counter()
    limit = options.max_epochs_this_run
    stop = min(trainer.epochs, trainer.start_epoch + limit) if limit else trainer.epochs
    run.rows = _train_epochs(run, stop)
    if stop < trainer.epochs:
        if info.is_main:
            print(f"stopped after epoch {stop}/{trainer.epochs} (--max-epochs-this-run); continue with --resume")
        return {"stopped_at": stop, "best": trainer.best, "output_dir": str(out)}
    run.seconds = time.perf_counter() - start
    return run.task.finish(run)


def _train_epochs(run: Run, stop: int) -> list[dict]:
    """Epochs start_epoch..stop-1: train, evaluate, checkpoint (best, then last), log. returns CSV rows.

    The checkpoint holds the CSV rows up to its epoch and is written before the CSV, so a kill in
    between loses nothing: --resume rebuilds the CSV from the checkpoint."""
    trainer, info, out, task = run.trainer, run.info, run.out, run.task
    log = RunLogger(out, info.is_main, trainer.start_epoch, trainer.log_rows)
    for epoch in range(trainer.start_epoch, stop):
        row = _fit_epoch(run, epoch)
        improved = row.pop("_improved", False)
        state = trainer.state_dict(epoch + 1, gather_rng_states(info), log.rows_with(epoch + 1, row))  # collective
        if info.is_main:
            if improved and task.keeps_best:  # best first: a crash before `last` repeats this epoch on --resume
                atomic_save(state, out / "ckpt-best.pth")
                atomic_link(out / "ckpt-best.pth", out / "ckpt-last.pth")  # the same bytes, serialised once
            else:
                atomic_save(state, out / "ckpt-last.pth")
            task.after_checkpoint(trainer.base, epoch + 1, row, out)
        trainer.checkpointed = epoch + 1
        if info.is_main:
            print(task.epoch_line(epoch + 1, trainer.epochs, row), flush=True)
        log.log_epoch(epoch + 1, row)
    log.close()
    barrier()
    return log.rows


def _fit_epoch(run: Run, epoch: int) -> dict:
    """One epoch: train, step the schedule, validate when due, choose the best epoch (the task's rule)."""
    trainer, task = run.trainer, run.task
    t0 = time.perf_counter()
    lr = trainer.optimizer.param_groups[-1]["lr"]
    row = trainer.train_one_epoch(run.train_loader, epoch)
    trainer.scheduler.step()
    row["lr"] = lr
    if trainer.coto is not None:
        row["coto/active_fraction"] = float(trainer.coto.active_fraction)
    metrics, split = None, "train"
    if run.val_loader is not None and ((epoch + 1) % run.train.val_freq == 0 or epoch + 1 == trainer.epochs):
        metrics, split = trainer.evaluate(run.val_loader), task.best_split(run.splits[1])
        row.update({f"val/{k}": v for k, v in metrics.items()})
        if run.test_loader is not None:
            row.update({f"test/{k}": v for k, v in trainer.evaluate(run.test_loader).items()})
    elif run.val_loader is None:
        metrics = task.fallback_metrics(row)  # pre-training without a validation split: the training loss
    if metrics is not None and trainer.improved(metrics):
        trainer.best = {**metrics, "epoch": epoch + 1, "split": split}
        row["_improved"] = True
    row["epoch_time_s"] = time.perf_counter() - t0
    return row


__all__ = ["RunOptions", "SetupError", "fit", "main", "preflight", "print_summary", "run_cli"]
