"""The grid of a sweep: methods x folds x seeds of one config, each run's config and folder.

A method replaces the config's `adapter` section by the one of a shipped config (the method study's
recipes): full fine-tuning, linear probing (head only), LoRA, CLoRA, CLoRA + CoTo, and the peer
methods DAPT, IDPT and PointGST. The keys of a section that depend on the model's size (SIZE_RULES:
PointGST's `local`, IDPT's `prompt_layer` and `prompt_k`) are fitted to the base config's model when
the shipped value does not fit it. A fold sets `dataset.fold` (few-shot ModelNet40), a seed
`train.seed`. Runs live in <out>/<method>/fold<k>/seed<s>/ (levels that are not swept are left out).
"""
from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..adapters.idpt import EDGE_CONVS
from ..adapters.methods import METHOD_CONFIGS
from ..config import load_config
from ..datasets import DATASETS
from ..factory import build_model_from_config

METHODS = ("full", "linear", "lora", "clora", "clora_coto", "dapt", "idpt", "pointgst")
LABELS = {"full": "full fine-tuning", "linear": "linear probing (head only)", "lora": "LoRA r=8 (qkv)",
          "clora": "CLoRA r=8 p=4 (input)", "clora_coto": "CLoRA + CoTo", "dapt": "DAPT", "idpt": "IDPT",
          "pointgst": "PointGST"}
ADAPTER_CONFIGS = {"lora": "scanobjectnn_lora.yaml", "clora": "scanobjectnn_clora.yaml",
                   "clora_coto": "scanobjectnn_clora_coto.yaml", "dapt": "scanobjectnn_dapt.yaml",
                   "idpt": "scanobjectnn_idpt.yaml", "pointgst": "scanobjectnn_pointgst.yaml"}
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


def _model_int(model: Mapping, key: str, method: str) -> int:
    value = model.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"model.{key}: {method} fits its adapter section to it, expected an integer >= 1, "
                         f"got {value!r}")
    return value


def fit_local(value: int, section: Mapping, model: Mapping) -> int:
    """PointGST: windows of `local` centres must tile model.num_group. A value that does not divide it
    becomes the largest divisor <= num_group / 2 (two windows at least, so the local basis is not the
    global one again); 32 of 128 centres (official) fits as it is, 16 centres get windows of 8."""
    if value < 1:
        return value  # not a window size: the method's own validation names it
    groups = _model_int(model, "num_group", "pointgst")
    if groups % value == 0:
        return value
    fits = [d for d in range(1, min(value, groups // 2) + 1) if groups % d == 0]
    if not fits:
        raise ValueError(f"adapter.local={value}: no window size fits model.num_group={groups} (PointGST's local "
                         f"windows must divide num_group, with at least 2 windows)")
    return fits[-1]


def fit_prompt_layer(value: int, section: Mapping, model: Mapping) -> int:
    """IDPT: the prompt goes before block `prompt_layer` in [0, depth - 1]; one past the model's depth
    becomes the last block, where the official ScanObjectNN config puts it (11 of 12)."""
    depth = _model_int(model, "depth", "idpt")
    return value if value < depth else depth - 1


def fit_prompt_k(value: int, section: Mapping, model: Mapping) -> int:
    """IDPT: the DGCNN prompt links each of the num_group tokens to its prompt_k nearest; more than
    num_group becomes num_group // 2 (a neighbourhood, not every token; 16 groups get 8)."""
    if EDGE_CONVS.get(section.get("prompt_module") or "dgcnn", 0) == 0:
        return value  # the mlp / transformer generators have no kNN
    groups = _model_int(model, "num_group", "idpt")
    if value <= groups:
        return value
    if groups < 2:
        raise ValueError(f"adapter.prompt_k={value}: model.num_group={groups} leaves IDPT's DGCNN prompt no "
                         f"neighbours (it needs num_group >= 2)")
    return groups // 2


# method -> {adapter key: fit(value, section, model section) -> value that fits}
SIZE_RULES: Dict[str, Dict[str, Callable[[int, Mapping, Mapping], int]]] = {
    "pointgst": {"local": fit_local},
    "idpt": {"prompt_layer": fit_prompt_layer, "prompt_k": fit_prompt_k},
}


def fit_section(section: Optional[Mapping], model: Mapping) -> Tuple[Optional[dict], List[str]]:
    """(`section` with its size-dependent keys fitted to `model` (a config's model section), notes
    'adapter.local: 32 -> 8 (model.num_group=16)' for each key changed). A value that already fits
    is kept; one that cannot fit raises ValueError naming the key."""
    if not section:
        return section, []
    method = section.get("method")
    out, notes = dict(section), []
    for key, fit in SIZE_RULES.get(method, {}).items():
        value = out.get(key)
        if value is None:
            value = METHOD_CONFIGS[method].OFFICIAL[key]  # what the method would use
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            continue  # not a size: the method's own validation names it
        fitted = fit(value, out, model)
        if fitted != value:
            notes.append(f"{method}: adapter.{key} {value} -> {fitted} to fit the model (depth "
                         f"{model.get('depth')}, num_group {model.get('num_group')})")
        out[key] = fitted
    return out, notes


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


def fit_notes(base: Mapping, methods: Optional[Sequence[str]]) -> List[str]:
    """What fit_section changes in each method's section for `base`'s model (for the log and report)."""
    return [note for m in methods or [] for note in fit_section(adapter_section(m), base.get("model") or {})[1]]


def check_builds(configs: Mapping[str, Mapping]) -> None:
    """Builds the model of each setting's config once (no weights), so a method that cannot adapt the
    base config's model stops the sweep before any run starts, in one line naming the setting."""
    for setting, cfg in configs.items():
        try:
            build_model_from_config(cfg)
        except (ValueError, KeyError, TypeError) as err:
            flag = "--config" if setting == CONFIG_METHOD else f"--methods {setting}"
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(f"{flag}: the model of this setting cannot be built: {msg}") from None


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
        cfg["adapter"] = fit_section(section, cfg.get("model") or {})[0]
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
