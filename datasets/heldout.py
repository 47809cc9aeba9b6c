"""The held-out validation split of `dataset.val_fraction` (the engine selects the best epoch on it).

`dataset.val_fraction: f` (with `dataset.val_seed`, default 0) carves a class-stratified validation
split, named 'heldout', out of the training split (ShapeNetPart: stratified by object category):
round(f * n_c) shapes of each class c with n_c >= 2 shapes (at least 1, never all of them). It
depends only on the labels, f and val_seed, not on train.seed: every seed of a sweep validates on
the same shapes. It replaces `dataset.val_split`. See pointclora/engine/protocols.py for what is
reported.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional

import numpy as np
from torch.utils.data import Dataset

HELDOUT = "heldout"


def check_fraction(cfg_dataset: Mapping) -> Optional[float]:
    """dataset.val_fraction as a float in (0, 1), or None when not set; ValueError naming the key."""
    value = cfg_dataset.get("val_fraction")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"dataset.val_fraction must be a number in (0, 1), got {value!r}")
    return float(value)


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """labels: (N,) int -> (train indices, validation indices), both sorted, disjoint, covering 0..N-1."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(max(int(math.floor(fraction * len(idx) + 0.5)), 1), len(idx) - 1)  # 0 for a 1-shape class
        val += rng.permutation(idx)[:k].tolist()
    val_idx = np.sort(np.asarray(val, dtype=np.int64))
    return np.setdiff1d(np.arange(len(labels)), val_idx), val_idx


def strata(dataset) -> np.ndarray:
    """(N,) class labels to stratify by: `labels` (classification) or the object category (ShapeNetPart)."""
    if getattr(dataset, "labels", None) is not None:
        return np.asarray(dataset.labels)
    if getattr(dataset, "datapath", None) is not None:  # ShapeNetPart: [(category, file)]
        names = [c for c, _ in dataset.datapath]
        order = {c: i for i, c in enumerate(dict.fromkeys(names))}
        return np.asarray([order[c] for c in names])
    raise ValueError(f"dataset.val_fraction: {type(dataset).__name__} has no labels to stratify by")


class SplitView(Dataset):
    """The samples `indices` of `dataset`; other attributes (classes, seg_classes, ...) pass through."""

    def __init__(self, dataset, indices: np.ndarray, split: str):
        self.dataset, self.indices, self.split = dataset, [int(i) for i in indices], split
        labels = getattr(dataset, "labels", None)
        self.labels = None if labels is None else np.asarray(labels)[self.indices]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int):
        return self.dataset[self.indices[index]]

    def __getattr__(self, name: str):
        if name in ("dataset", "indices", "split", "labels"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def carve(train_set, eval_train_set, fraction: float, seed: int) -> tuple[SplitView, SplitView]:
    """(training view, held-out view): train_set keeps its augmentations, the held-out view reads
    the same shapes as an evaluation split does (eval_train_set: the training split built for evaluation)."""
    train_idx, val_idx = stratified_split(strata(train_set), fraction, seed)
    if len(val_idx) == 0:
        raise ValueError(f"dataset.val_fraction={fraction}: no class of the training split has 2 shapes to split")
    return SplitView(train_set, train_idx, "train"), SplitView(eval_train_set, val_idx, HELDOUT)
