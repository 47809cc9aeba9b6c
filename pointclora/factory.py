"""What a config describes, built: the model with its adapters and freezing, its backbone weights,
the datasets of its splits. Below `engine`, `profiler` and `visualization`, which all build from here.

    model = pointclora.build_model_from_config("scanobjectnn_clora.yaml")   # no weights loaded
    model = pointclora.build_model_from_config({"model": {...}, "adapter": {...}}, opts=["adapter.rank=4"])
"""
from __future__ import annotations

import copy
import inspect
import os
from typing import Iterable, Mapping

from torch import nn

from .adapters import AdapterConfig, apply_adapters, get_adapter_config
from .config import load_config, parse_opts, resolve_path, set_by_dotted, validate
from .datasets import DATASETS, build_dataset
from .datasets.heldout import HELDOUT, check_fraction
from .models import build_model, load_pretrained
from .sections import ENGINE_DATASET_KEYS  # dataset keys the engine reads, not the constructor

DEFAULT_SPLITS = {"ShapeNetPart": ("trainval", "test", "test")}  # Point-MAE part seg trains on trainval


def resolve_config(config: str | os.PathLike | Mapping, opts: Iterable[str] = ()) -> dict:
    """A config file (path or name in configs/) or an in-memory mapping, with --opts applied and
    validated; an in-memory mapping needs only the sections it uses (e.g. model + adapter)."""
    if not isinstance(config, Mapping):
        return load_config(config, opts)
    cfg = copy.deepcopy(dict(config))
    sources = {}
    for key, value in parse_opts(opts):
        set_by_dotted(cfg, key, value)
        sources[key] = "--opts"
    validate(cfg, sources, required=("model.NAME",))
    return cfg


def build_model_with_adapters(cfg: Mapping, ckpts: str | os.PathLike | None = None):
    """Builds cfg['model'], loads `ckpts` (when given) into the backbone, then applies cfg['adapter']
    (which freezes all but the adapters and the trainable head, by default the model's HEAD_MODULES).
    returns (model, the adapter config it holds (targets and method fields resolved) or None)."""
    model = build_model(cfg["model"])
    if ckpts:
        load_backbone(model, ckpts)
    adapter_cfg = None
    if cfg.get("adapter"):
        model = apply_adapters(model, AdapterConfig.from_dict(adapter_section(cfg["adapter"], model)))
        adapter_cfg = get_adapter_config(model)
    return model, adapter_cfg


def adapter_section(section: Mapping, model: nn.Module) -> dict:
    """The adapter section with the model's own task head (its HEAD_MODULES) as the default
    `trainable_modules`, so a config names no module of the model."""
    out = dict(section)
    if "trainable_modules" not in out and getattr(model, "HEAD_MODULES", ()):
        out["trainable_modules"] = list(model.HEAD_MODULES)
    return out


def build_model_from_config(config: str | os.PathLike | Mapping, opts: Iterable[str] = ()) -> nn.Module:
    """The model a config describes, adapters and freezing applied, no weights loaded (for
    notebooks and tests). `config`: a YAML path / name in configs/, or a mapping with a `model`
    section (and optionally `adapter`); `opts`: overrides as on the command line ("adapter.rank=4")."""
    model, _ = build_model_with_adapters(resolve_config(config, opts), None)
    return model


def load_backbone(model: nn.Module, path: str | os.PathLike) -> None:
    """Loads pre-trained weights (``load_pretrained``, partial: a checkpoint that fills none of the
    backbone is an error) and prints what was loaded."""
    path = resolve_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpts / ckpts: pre-trained checkpoint '{path}' not found")
    missing, unexpected = load_pretrained(model, path)
    total = len(model.state_dict())
    print(f"loaded pre-trained weights from {path}: {total - len(missing)}/{total} tensors, "
          f"missing {len(missing)} {missing[:6]}, unexpected {len(unexpected)}", flush=True)


# ----------------------------------------------------------------------------- datasets
def splits(cfg_dataset: Mapping) -> tuple[str, str, str]:
    """(train, val, test) split names; val selects the best epoch ('heldout' with dataset.val_fraction,
    which replaces val_split: datasets/heldout.py)."""
    train, val, test = DEFAULT_SPLITS.get(cfg_dataset.get("NAME"), ("train", "test", "test"))
    if check_fraction(cfg_dataset) is not None:
        return cfg_dataset.get("train_split", train), HELDOUT, cfg_dataset.get("test_split", test)
    return (cfg_dataset.get("train_split", train), cfg_dataset.get("val_split") or val,
            cfg_dataset.get("test_split", test))


def dataset_kwargs(cfg_dataset: Mapping) -> dict:
    """The dataset section minus the engine's keys, with `root` resolved."""
    out = {k: v for k, v in cfg_dataset.items() if k not in ENGINE_DATASET_KEYS}
    if "root" in out:
        out["root"] = str(resolve_path(out["root"]))
    return out


def eval_dataset_kwargs(kwargs: dict) -> dict:
    """Evaluation splits sample points per index from a fixed seed when the dataset supports it
    (ShapeNetPart's `sample_seed`), so metrics repeat exactly whatever the number of ranks."""
    cls = DATASETS.get(kwargs.get("NAME"))
    if cls is not None and "sample_seed" in inspect.signature(cls.__init__).parameters:
        return {**kwargs, "sample_seed": kwargs.get("sample_seed") if kwargs.get("sample_seed") is not None else 0}
    return kwargs


def build_split(cfg_dataset: Mapping, split: str, train: bool = False):
    """The dataset of one split: training transforms and random sampling when `train`, else the
    evaluation sampling (the points a model is tested on, and what visualisation shows)."""
    kwargs = dataset_kwargs(cfg_dataset)
    return build_dataset(kwargs if train else eval_dataset_kwargs(kwargs), split)


__all__ = ["DEFAULT_SPLITS", "ENGINE_DATASET_KEYS", "build_model_from_config", "build_model_with_adapters",
           "build_split", "dataset_kwargs", "eval_dataset_kwargs", "load_backbone", "resolve_config", "splits"]
