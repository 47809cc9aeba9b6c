"""Training checkpoints: atomic writes and the full state needed for an exact resume.

A checkpoint is a dict with keys: model (state_dict, adapters included), optimizer,
scheduler, scaler, coto (CoTo scheduler state or None), epoch (number of finished epochs),
best (best metric dict), rng (python, numpy, torch, cuda states) and config (resolved).
"""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..io import atomic_path, atomic_write_text
from ..weights import load_weights, load_weights_only
from .faults import writing

REQUIRED_KEYS = ("model", "optimizer", "scheduler", "epoch", "best", "rng", "config")


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save to a temporary file in the same folder, fsync, then os.replace: a crash
    leaves either the old file or the new one, never a truncated one. A failed write (full disk)
    raises WriteError naming `path` and saying that its previous version is intact."""
    path = Path(path)
    with writing(path, "checkpoint" if path.suffix == ".pth" else "file"), atomic_path(path, fsync=True) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes a small text file (results.json) through a temporary file; WriteError when it fails."""
    path = Path(path)
    with writing(path):
        atomic_write_text(path, text)
    return path


def atomic_link(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Makes `dst` another name of the finished file `src` (a hard link, or a copy where the file
    system has none), atomically. Safe because files here are only ever replaced, never rewritten
    in place: a later atomic_save to either name leaves the other one intact."""
    src, dst = Path(src), Path(dst)
    with writing(dst, "checkpoint"), atomic_path(dst) as tmp:
        os.unlink(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return dst


def rng_state() -> dict:
    """Captures the python, numpy, torch CPU and CUDA random states."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: Mapping) -> None:
    """Restores states captured by `rng_state` (CUDA states only when CUDA is present)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | os.PathLike, required: tuple = REQUIRED_KEYS) -> dict:
    """Loads a training checkpoint on CPU with weights_only=True (tensors, plain containers and the
    numpy RNG state: a copied run folder cannot run code); FileNotFoundError / ValueError name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint '{path}' not found")
    ckpt = load_weights_only(str(path))  # ValueError naming the file when unreadable
    if not isinstance(ckpt, dict):
        raise ValueError(f"checkpoint '{path}': expected a dict, got {type(ckpt).__name__}")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint '{path}' is not a pointclora training checkpoint: missing keys {missing}")
    return ckpt


def load_model_state(model: torch.nn.Module, state: Mapping, path: str | os.PathLike) -> None:
    """The model state of a training checkpoint read from `path`, loaded strictly (``load_weights``:
    one message naming the file and the mismatching keys)."""
    load_weights(model, path, state=state, strict=True)
