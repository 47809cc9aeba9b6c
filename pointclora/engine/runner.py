"""`tools/train.py` behind the command line: fit (train + evaluate + checkpoints) and test.

Output folder: config.yaml (resolved), ckpt-last.pth, ckpt-best.pth, metrics.csv, tb/,
curves.png, results.json (best epoch, the split that selected it, test metrics, parameters)
and, for adapter runs, adapter-best.safetensors (adapters + trainable head only).
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Mapping


from ..config import load_config, save_config, set_by_dotted
from . import builders as B
from ..datasets.common import DataError
from .checkpoint import atomic_link, atomic_save, load_checkpoint, load_model_state, write_text_atomic
from .data_errors import skipped_files
from .faults import (
    INTERRUPT_STATUS, WRITE_ERROR_STATUS, RunInterrupted, WriteError, check_output_dir, clean_stale_temp_files, writing,
)  # fmt: skip
from .distributed import DistInfo, barrier, cleanup, init_distributed, wrap_model
from .logging import RunLogger, plot_curves, write_rows_csv
from .optim import build_optimizer, build_scheduler
from . import protocols as PR
from .resume import apply_optimizer_config, check_epochs, check_resume
from .tasks import build_task
from .trainer import Trainer, gather_rng_states


class SetupError(Exception):
    """Bad input found before training: one message, no traceback (tools/train.py exits 2)."""


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _close_progress_bars() -> None:
    """Clears the epoch's tqdm bar, so that the one error line does not land behind it."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", [])):
        with contextlib.suppress(Exception):
            bar.close()


def run_cli(run, args) -> int:
    """Runs `run(args)` for a command-line tool; every expected failure ends in one line on stderr:
    bad input or a bad data file -> exit 2, Ctrl-C -> 130, an output that cannot be written -> 1."""
    try:
        try:
            run(args)
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


@contextlib.contextmanager
def preflight():
    """Turns the input errors of the set-up phase into a SetupError with their message."""
    try:
        yield
    except SetupError:
        raise
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError, ImportError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise SetupError(f"{type(err).__name__}: {msg}") from err


def resolve_run_config(args) -> dict:
    """Config file + --opts, then the dedicated flags (--seed, --output-dir, --ckpts) on top."""
    cfg = load_config(args.config, args.opts)
    if args.seed is not None:
        set_by_dotted(cfg, "train.seed", int(args.seed))
    if args.output_dir:
        cfg["output_dir"] = str(args.output_dir)
    cfg.setdefault("output_dir", str(Path("runs") / Path(args.config).stem))
    limit = getattr(args, "max_epochs_this_run", None)
    if limit is not None and limit < 1:
        raise ValueError(f"--max-epochs-this-run must be >= 1, got {limit}")
    if args.ckpts and not getattr(args, "test", False):  # tools/pretrain.py has no --test
        cfg["ckpts"] = str(args.ckpts)
    return cfg


def main(args) -> dict:
    """Runs fit or test in this process (one torchrun rank or the only process)."""
    with preflight():
        cfg = resolve_run_config(args)
        info = init_distributed(args.device)
    try:
        return run_test(cfg, args, info) if args.test else run_fit(cfg, args, info)
    finally:
        cleanup()


def _setup(cfg: dict, info: DistInfo, split_names: list[str], ckpts: str | None, train_split: str | None = None):
    """Datasets, task and model (+ pre-trained weights, + adapters), all checked before training."""
    dsets = B.build_datasets(cfg["dataset"], info, split_names, train_split)
    task = build_task(cfg["model"], dsets[split_names[0]])
    B.set_seed(int(cfg["train"].get("seed", 0)))
    model, adapter_cfg = B.build_model_with_adapters(cfg, ckpts)
    B.check_model_fits_data(model, cfg["dataset"], dsets[split_names[0]])
    return dsets, task, model.to(info.device), adapter_cfg


def _build_trainer(cfg, task, model, adapter_cfg, info, steps_per_epoch: int) -> Trainer:
    epochs = int(cfg["train"]["epochs"])
    optimizer = build_optimizer(model, cfg["optimizer"])
    scheduler = build_scheduler(optimizer, cfg.get("scheduler", {}), epochs)
    coto = None
    if adapter_cfg is not None and adapter_cfg.coto:
        from ..adapters import CoToScheduler

        coto = CoToScheduler(model, total_steps=epochs * steps_per_epoch, p_start=adapter_cfg.coto_p_start,
                             ramp_fraction=adapter_cfg.coto_ramp_fraction, seed=adapter_cfg.seed)
    ddp = wrap_model(model, info, find_unused=adapter_cfg is not None)
    regularize = adapter_cfg is not None and adapter_cfg.sade_weight > 0
    return Trainer(ddp, task, optimizer, scheduler, info, cfg, coto=coto, use_regularizer=regularize)


def _resume(trainer: Trainer, model, cfg: dict, args, last_path: Path, info: DistInfo) -> None:
    """Loads ckpt-last.pth into the trainer under the rule of engine/resume.py."""
    ckpt = load_checkpoint(last_path)
    changes = check_resume(ckpt["config"], cfg, bool(getattr(args, "resume_override", False)))
    trainer.load_state_dict(ckpt, last_path)
    check_epochs(trainer.start_epoch, trainer.epochs)
    if changes:
        if any(c.startswith("optimizer.") for c in changes):
            apply_optimizer_config(trainer.optimizer, trainer.scheduler, build_optimizer(model, cfg["optimizer"]))
        trainer.resume_overrides.append({"after_epoch": trainer.start_epoch, "changes": changes})
        if info.is_main:
            print(f"--resume-override: continuing after epoch {trainer.start_epoch} with {'; '.join(changes)}",
                  flush=True)


def _prepare_output(out: Path, info: DistInfo) -> None:
    """Checks the output folder and removes temporary files of a killed run (rank 0)."""
    check_output_dir(out)
    if info.is_main:
        clean_stale_temp_files(out)


def run_fit(cfg: dict, args, info: DistInfo) -> dict:
    with preflight():
        out = Path(cfg["output_dir"]).expanduser().resolve()
        check_output_dir(out)
        last_path = out / "ckpt-last.pth"
        if args.resume and not last_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint '{last_path}' (set --output-dir to the run's folder)")
        train_split, val_split, test_split = B.splits(cfg["dataset"])
        dsets, task, model, adapter_cfg = _setup(cfg, info, [train_split, val_split, test_split],
                                                 None if args.resume else cfg.get("ckpts"), train_split)
        B.set_seed(int(cfg["train"].get("seed", 0)) + info.rank)
        steps = B.steps_per_epoch(dsets[train_split], cfg["train"], info)
        trainer = _build_trainer(cfg, task, model, adapter_cfg, info, steps)
        tl = B.train_loader(dsets[train_split], cfg["train"], info, trainer.loader_generator)
        vl = B.eval_loader(dsets[val_split], cfg["train"], info)
        # a separate validation split: the test split is evaluated every epoch too (all three protocols)
        testl = B.eval_loader(dsets[test_split], cfg["train"], info) if test_split != val_split else None
        if args.resume:
            _resume(trainer, model, cfg, args, last_path, info)
    try:
        return _fit(cfg, args, info, trainer, dsets, (train_split, val_split, test_split), model, adapter_cfg, tl,
                    (vl, testl), out)
    except KeyboardInterrupt:
        raise RunInterrupted(trainer.checkpointed) from None


def _fit(cfg, args, info, trainer: Trainer, dsets, split_names, model, adapter_cfg, tl, eval_loaders,
         out: Path) -> dict:
    params = B.count_params(model)
    if info.is_main:
        _prepare_output(out, info)
        out.mkdir(parents=True, exist_ok=True)
        with writing(out / "config.yaml", "config"):
            save_config(cfg, out / "config.yaml")
        _print_header(cfg, trainer.task, params, info, len(dsets[split_names[0]]), len(dsets[split_names[1]]),
                      trainer.start_epoch)
        if trainer.start_epoch == trainer.epochs:
            print(f"all {trainer.epochs} epochs were already trained; writing the results of the best epoch",
                  flush=True)
    start = time.perf_counter()
    stop = trainer.epochs if not args.max_epochs_this_run else min(trainer.epochs,
                                                                    trainer.start_epoch + args.max_epochs_this_run)
    rows = _train_epochs(trainer, tl, eval_loaders, split_names[1], out, stop)
    if stop < trainer.epochs:
        if info.is_main:
            print(f"stopped after epoch {stop}/{trainer.epochs} (--max-epochs-this-run); continue with --resume")
        return {"stopped_at": stop, "best": trainer.best, "output_dir": str(out)}
    return _finish(cfg, trainer, dsets, split_names, params, adapter_cfg, out, time.perf_counter() - start, rows)


def _train_epochs(trainer: Trainer, tl, eval_loaders, val_split: str, out: Path, stop: int) -> list[dict]:
    """Epochs start_epoch..stop-1: train, evaluate, checkpoint (best, then last), log. returns CSV rows.

    The checkpoint holds the CSV rows up to its epoch and is written before the CSV, so a kill in
    between loses nothing: --resume rebuilds the CSV from the checkpoint."""
    info = trainer.info
    log = RunLogger(out, info.is_main, trainer.start_epoch, trainer.log_rows)
    for epoch in range(trainer.start_epoch, stop):
        row = _fit_epoch(trainer, tl, eval_loaders, epoch, val_split, trainer.cfg)
        improved = row.pop("_improved", False)
        state = trainer.state_dict(epoch + 1, gather_rng_states(info), log.rows_with(epoch + 1, row))  # collective
        if info.is_main:
            if improved:  # best first: a crash before `last` is written repeats this epoch on --resume
                atomic_save(state, out / "ckpt-best.pth")
                atomic_link(out / "ckpt-best.pth", out / "ckpt-last.pth")  # the same bytes, serialised once
            else:
                atomic_save(state, out / "ckpt-last.pth")
        trainer.checkpointed = epoch + 1
        if info.is_main:
            print(_epoch_line(epoch + 1, trainer.epochs, row), flush=True)
        log.log_epoch(epoch + 1, row)
    log.close()
    barrier()
    return log.rows


def _fit_epoch(trainer: Trainer, tl, eval_loaders, epoch: int, val_split: str, cfg: Mapping) -> dict:
    """eval_loaders: (validation loader, test loader or None when the validation split is the test split)."""
    vl, testl = eval_loaders
    t0 = time.perf_counter()
    lr = trainer.optimizer.param_groups[-1]["lr"]
    row = trainer.train_one_epoch(tl, epoch)
    trainer.scheduler.step()
    row["lr"] = lr
    if trainer.coto is not None:
        row["coto/active_fraction"] = float(trainer.coto.active_fraction)
    val_freq = int(cfg["train"].get("val_freq", 1))
    if (epoch + 1) % val_freq == 0 or epoch + 1 == trainer.epochs:
        metrics = trainer.evaluate(vl)
        row.update({f"val/{k}": v for k, v in metrics.items()})
        if testl is not None:
            row.update({f"test/{k}": v for k, v in trainer.evaluate(testl).items()})
        if trainer.improved(metrics):
            trainer.best = {**metrics, "epoch": epoch + 1, "split": val_split}
            row["_improved"] = True
    row["epoch_time_s"] = time.perf_counter() - t0
    return row


def _epoch_line(epoch: int, epochs: int, row: Mapping) -> str:
    parts = [f"epoch {epoch}/{epochs}", f"loss {row['train/loss']:.4f}", f"train acc {row['train/acc']:.2f}",
             f"lr {row['lr']:.2e}"]
    parts += [f"{k} {v:.2f}" for k, v in row.items() if k.startswith(("val/", "test/"))]
    if "coto/active_fraction" in row:
        parts.append(f"coto active {row['coto/active_fraction']:.2f}")
    parts.append(f"{row['throughput']:.1f} samples/s, {row['epoch_time_s']:.1f} s")
    return " | ".join(parts)


def _print_header(cfg, task, params, info, n_train, n_val, start_epoch) -> None:
    method = (cfg.get("adapter") or {}).get("method", "clora") if cfg.get("adapter") else "full fine-tuning"
    print(f"task {task.name} | model {cfg['model']['NAME']} | method {method} | dataset "
          f"{cfg['dataset']['NAME']} ({n_train} train / {n_val} val samples) | device {info.device} x "
          f"{info.world_size} | trainable {params['trainable']:,} / {params['total']:,} parameters"
          + (f" | resuming after epoch {start_epoch}" if start_epoch else ""), flush=True)


def _finish(cfg, trainer: Trainer, dsets, split_names, params, adapter_cfg, out: Path, seconds: float, rows) -> dict:
    """Best weights -> adapter file and test metrics (when the test split differs), results.json, summary."""
    info = trainer.info
    _, val_split, test_split = split_names
    best_path = out / "ckpt-best.pth"
    barrier()
    load_model_state(trainer.base, load_checkpoint(best_path)["model"], best_path)
    test_metrics = {k: v for k, v in trainer.best.items() if k not in ("epoch", "split")}
    if test_split != val_split:
        test_metrics = trainer.evaluate(B.eval_loader(dsets[test_split], cfg["train"], info))
    files = {"output_dir": str(out), "best": str(best_path), "last": str(out / "ckpt-last.pth"),
             "config": str(out / "config.yaml"), "csv": str(out / "metrics.csv"),
             "plot": str(out / "curves.png"), "results": str(out / "results.json")}
    if (out / "tb").is_dir():  # tensorboard is optional
        files["tensorboard"] = str(out / "tb")
    results = {"task": trainer.task.name, "best_epoch": trainer.best.get("epoch"), "selected_on": val_split,
               "test_split": test_split, "best_val": trainer.best, "test": test_metrics,
               "parameters": params, "train_time_s": seconds, "world_size": info.world_size, "files": files,
               "skipped_files": skipped_files(dsets), "resume_overrides": trainer.resume_overrides}
    results["protocols"] = PR.protocols(rows, trainer.task.metric_keys, trainer.task.select_key, val_split != test_split,
                                        trainer.best, test_metrics)
    if val_split == PR.HELDOUT:
        fraction, seed = PR.check_fraction(cfg["dataset"]), int(cfg["dataset"].get("val_seed") or 0)
        results["heldout"] = {"val_fraction": fraction, "val_seed": seed, "of_split": split_names[0],
                              "size": len(dsets[val_split])}
    if info.is_main:
        write_rows_csv(out / "metrics.csv", PR.label_rows(rows, results["protocols"]))
        plot_curves(rows, out / "curves.png")
        if adapter_cfg is not None:
            from ..adapters import save_adapter

            save_adapter(trainer.base, str(out / "adapter-best.safetensors"))
            files["adapter"] = str(out / "adapter-best.safetensors")
        write_text_atomic(out / "results.json", json.dumps(results, indent=2))
        print_summary(results, trainer.task)
    barrier()
    return results


def print_summary(results: Mapping, task) -> None:
    names = {"oa": "overall accuracy", "macc": "mean class accuracy", "ins_miou": "instance mIoU",
             "cls_miou": "class mIoU", "acc": "point accuracy"}
    sel, test = results["selected_on"], results["test_split"]
    note = (" (no separate validation split: best epoch chosen on the test split, as in the public protocol)"
            if sel == test else f"; metrics below are on '{test}'")
    held = results.get("heldout")
    if held:
        note = (f" ({held['size']} shapes, {100 * held['val_fraction']:g} % of '{held['of_split']}' per class, "
                f"val_seed {held['val_seed']}){note}")
    print("\n==== summary ====")
    print(f"best epoch {results['best_epoch']} selected on split '{sel}'{note}")
    print("  " + ", ".join(f"{names[k]} {results['test'][k]:.2f} %" for k in task.metric_keys))
    for line in PR.summary_lines(results.get("protocols") or {}, names, task.metric_keys):
        print(line)
    p = results["parameters"]
    print(f"trainable parameters: {p['trainable']:,} of {p['total']:,} ({100.0 * p['trainable'] / max(p['total'], 1):.2f} %)"
          f"; adapter {p.get('adapter', 0):,}, head {p.get('head', 0):,}")
    print(f"training time: {results['train_time_s']:.1f} s on {results['world_size']} process(es)")
    skipped = results.get("skipped_files") or []
    if skipped:
        print(f"skipped {len(skipped)} bad file{'s' if len(skipped) > 1 else ''} (dataset.on_bad_file=skip): "
              + "; ".join(e["error"] for e in skipped))
    for entry in results.get("resume_overrides") or []:
        print(f"resumed after epoch {entry['after_epoch']} with --resume-override: {'; '.join(entry['changes'])}")
    print("outputs: " + ", ".join(f"{k} {v}" for k, v in results["files"].items()), flush=True)


def run_test(cfg: dict, args, info: DistInfo) -> dict:
    """Evaluates a checkpoint (default: <output_dir>/ckpt-best.pth) on the test split."""
    from .evaluate import evaluate_checkpoint

    return evaluate_checkpoint(cfg, args, info, _setup, preflight)


__all__ = ["SetupError", "main", "run_cli", "resolve_run_config", "run_fit", "run_test", "print_summary", "preflight"]
