"""The grid of a sweep: methods x folds x seeds of one config, each run's config and folder.

A method replaces the config's `adapter` section by the one of a shipped config (the method study's
recipes): full fine-tuning, linear probing (head only), LoRA, CLoRA, CLoRA + CoTo. A fold sets
`dataset.fold` (few-shot ModelNet40), a seed `train.seed`. Runs live in
<out>/<method>/fold<k>/seed<s>/ (levels that are not swept are left out).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Sequence

from ..config import load_config

METHODS = ("full", "linear", "lora", "clora", "clora_coto")
LABELS = {"full": "full fine-tuning", "linear": "linear probing (head only)", "lora": "LoRA r=8 (qkv)",
          "clora": "CLoRA r=8 p=4 (input)", "clora_coto": "CLoRA + CoTo"}
ADAPTER_CONFIGS = {"lora": "scanobjectnn_lora.yaml", "clora": "scanobjectnn_clora.yaml",
                   "clora_coto": "scanobjectnn_clora_coto.yaml"}
CONFIG_METHOD = "config"  # no --methods: the config's own adapter section


def parse_indices(text: str, what: str) -> list[int]:
    """'0-9' -> [0..9]; '0,3,5' and '0-2,7' too. Raises ValueError naming `what` for bad text."""
    out: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        except ValueError:
            raise ValueError(f"{what}: expected numbers like '0-9', '0,3,5' or '0-2,7', got {text!r}") from None
        if sep and int(hi) < int(lo) or min(values, default=0) < 0:
            raise ValueError(f"{what}: expected non-negative increasing ranges, got {text!r}")
        out += [v for v in values if v not in out]
    return out


def adapter_section(method: str) -> Optional[dict]:
    """The `adapter:` section of `method` (None: full fine-tuning)."""
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    if method == "full":
        return None
    if method == "linear":  # head only: the class token stays frozen, as in linear probing
        return {"method": "none", "trainable_modules": ["cls_head_finetune"]}
    return dict(load_config(ADAPTER_CONFIGS[method])["adapter"])


def method_label(method: str) -> str:
    return LABELS.get(method, method)


@dataclass(frozen=True)
class Run:
    """One training run of the grid; None means 'not swept'."""

    method: Optional[str]
    fold: Optional[int]
    seed: int

    @property
    def name(self) -> str:
        parts = [self.method] if self.method else []
        parts += [f"fold{self.fold}"] if self.fold is not None else []
        return "/".join(parts + [f"seed{self.seed}"])

    @property
    def setting(self) -> str:
        """What the run's replicates share: the method (the config's own when not swept)."""
        return self.method or CONFIG_METHOD

    def folder(self, out: Path) -> Path:
        return Path(out) / self.name


def check_grid(cfg: Mapping, seeds: Sequence[int], methods: Optional[Sequence[str]],
               folds: Optional[Sequence[int]]) -> None:
    """Raises ValueError naming the flag for an empty, repeated or impossible axis."""
    from ..datasets import DATASETS

    for flag, values in (("--seeds", seeds), ("--methods", methods), ("--folds", folds)):
        if values is not None and (not values or len(set(values)) != len(values)):
            raise ValueError(f"{flag}: expected distinct values, got {list(values)}")
    for m in methods or []:
        if m not in METHODS:
            raise ValueError(f"--methods: unknown method {m!r}; known: {', '.join(METHODS)}")
    if folds is not None:
        name = cfg["dataset"]["NAME"]
        cls = DATASETS.get(name)
        if cls is None or "fold" not in inspect.signature(cls.__init__).parameters:
            raise ValueError(f"--folds: dataset {name} has no folds (ModelNetFewShot has: dataset.fold)")


def plan(seeds: Sequence[int], methods: Optional[Sequence[str]], folds: Optional[Sequence[int]]) -> list[Run]:
    """Every (method, fold, seed), methods outermost, seeds innermost."""
    return [Run(m, f, s) for m in (methods or [None]) for f in (folds if folds is not None else [None])
            for s in seeds]


def run_config(base: Mapping, run: Run) -> dict:
    """`base` (a resolved config) with the run's adapter section, fold and seed."""
    cfg = copy.deepcopy(dict(base))
    if run.method is not None:
        section = adapter_section(run.method)
        inherited = (cfg.get("adapter") or {}).get("trainable_modules")
        if section is not None and inherited and "trainable_modules" not in section:
            section["trainable_modules"] = inherited  # e.g. the part-seg head of shapenetpart_clora.yaml
        cfg["adapter"] = section
    if run.fold is not None:
        cfg["dataset"]["fold"] = int(run.fold)
    cfg["train"]["seed"] = int(run.seed)
    return cfg


def _flatten(cfg: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in cfg.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_diff(old: Mapping, new: Mapping, ignore: Sequence[str] = ("output_dir", "ckpts")) -> list[str]:
    """['key: old -> new'] for every dotted key whose value differs (keys in `ignore` aside)."""
    a, b = _flatten(old), _flatten(new)
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and k not in ignore]


def load_base(config: str, opts: Iterable[str]) -> dict:
    return load_config(config, list(opts))
