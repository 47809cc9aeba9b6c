"""`tools/train.py --test`: evaluate a checkpoint on the test split, optionally with voting.

The checkpoint is a training checkpoint of this tool (default <output_dir>/ckpt-best.pth) or
a bare fine-tuned state dict in any layout `pointclora.weights.load_weights` reads.
Writes test_results.json (and, with --save-predictions, predictions.npz in the format of
pointclora.io.save_predictions, read by tools/visualize.py) on rank 0.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from ..config import resolve_path
from ..io import save_predictions
from ..weights import load_weights, load_weights_only
from .checkpoint import REQUIRED_KEYS, load_model_state, write_text_atomic
from .distributed import DistInfo
from .options import preflight
from .setup import build_run, run_splits
from .trainer import Trainer


def _load_weights(model: torch.nn.Module, path: Path) -> dict:
    """Loads `path` into the model; returns the stored best metric ({} for a bare state dict).

    --ckpts may be a downloaded file: it is read with weights_only=True (no code runs)."""
    obj = load_weights_only(str(path))
    if isinstance(obj, dict) and all(k in obj for k in REQUIRED_KEYS):
        load_model_state(model, obj["model"], path)
        return dict(obj["best"])
    load_weights(model, path, state=obj, complete=True)  # every tensor of the model, from any layout
    return {}


def _gather_predictions(preds: Mapping[str, torch.Tensor], info: DistInfo) -> dict:
    """Reassembles per-rank predictions (rank r holds samples r, r+W, ...) in dataset order."""
    if not info.distributed:
        return {k: v.numpy() for k, v in preds.items()}
    parts = [None] * info.world_size
    torch.distributed.all_gather_object(parts, {k: v.numpy() for k, v in preds.items()})
    out = {}
    for key in parts[0]:
        n = sum(len(p[key]) for p in parts)
        arr = np.empty((n,) + parts[0][key].shape[1:], dtype=parts[0][key].dtype)
        for rank, p in enumerate(parts):
            arr[rank::info.world_size] = p[key]
        out[key] = arr
    return out


def evaluate_checkpoint(cfg: dict, options, info: DistInfo) -> dict:
    """options: the run's RunOptions (ckpts: the checkpoint, default <output_dir>/ckpt-best.pth; vote;
    save_predictions). Bad input raises SetupError before the evaluation starts."""
    args = options
    out = Path(cfg["output_dir"]).expanduser().resolve()
    with preflight():
        path = resolve_path(args.ckpts) if args.ckpts else out / "ckpt-best.pth"
        if not path.is_file():
            raise FileNotFoundError(f"--test: checkpoint '{path}' not found (train first, or pass --ckpts)")
        if args.vote < 1:
            raise ValueError(f"--vote must be >= 1, got {args.vote}")
        test_split = run_splits(cfg["dataset"], args.mode)[2]
        run = build_run(cfg, info, args.mode, None, [test_split])
        dsets, task, model = run.datasets, run.task, run.model
        stored = _load_weights(model, path)
    trainer = Trainer(model, task, None, None, info, cfg)
    loader = run.loader(test_split)
    metrics, preds = trainer.evaluate(loader, votes=args.vote, collect=True)
    preds = _gather_predictions(preds, info) if args.save_predictions else None
    result = {"checkpoint": str(path), "split": test_split, "votes": args.vote, "metrics": metrics,
              "stored_best": stored, "world_size": info.world_size}
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out / "test_results.json", json.dumps(result, indent=2))
        if preds is not None:
            points = preds.pop("points")
            names = list(getattr(dsets[test_split], "classes", None) or range(task.num_classes))
            save_predictions(str(out / "predictions.npz"), points, names, **preds)
            result["predictions"] = str(out / "predictions.npz")
        shown = ", ".join(f"{k} {v:.2f} %" for k, v in metrics.items())
        print(f"test on '{test_split}' ({len(dsets[test_split])} samples, {args.vote} vote(s)) of {path}: {shown}")
        if stored:
            kept = ", ".join(f"{k} {stored[k]:.2f} %" for k in task.metric_keys if k in stored)
            print(f"stored best (epoch {stored.get('epoch')}, split '{stored.get('split')}'): {kept}", flush=True)
    return result
