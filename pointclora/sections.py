"""Typed config sections: one dataclass per section of a run's YAML, holding its defaults.

The schema `pointclora.config.validate` checks a YAML file against is derived from these dataclasses
(`train`, `optimizer`, `scheduler`, the engine's `dataset` keys), from `AdapterConfig` (`adapter`) and
from the keyword arguments of the registered model and dataset constructors (`model`, `dataset`):
a key added to a constructor is a config key, with no second list to update.
"""
from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from .adapters import AdapterConfig
from .adapters.methods import METHOD_CONFIGS
from .datasets import DATASETS
from .models import MODELS

NoneType = type(None)
YAML_TYPES = (bool, int, float, str, list, dict, NoneType)


def positive(**kw) -> dict:
    """Field metadata: a value must be >= 1."""
    return {"min": (1, True), **kw}


def non_negative(**kw) -> dict:
    return {"min": (0, True), **kw}


@dataclass(frozen=True)
class TrainConfig:
    """`train:` how long, in which batches, with which seed (Point-MAE's fine-tuning defaults)."""

    epochs: int = field(metadata=positive())
    batch_size: int = field(metadata=positive())  # total over all ranks (Point-MAE's total_bs)
    val_batch_size: Optional[int] = field(default=None, metadata=positive(yaml=int))  # None: batch_size
    val_freq: int = field(default=1, metadata=positive())
    grad_clip: Optional[float] = 10.0  # Point-MAE's grad_norm_clip
    amp: Union[bool, str] = False
    num_workers: int = field(default=0, metadata=non_negative())
    pin_memory: bool = False
    seed: int = 0
    log_every: int = field(default=10, metadata=positive())

    @property
    def eval_batch_size(self) -> int:
        return self.val_batch_size if self.val_batch_size is not None else self.batch_size


@dataclass(frozen=True)
class OptimizerConfig:
    """`optimizer:` AdamW (Point-MAE cfgs: lr 5e-4, weight decay 0.05)."""

    lr: float = field(metadata={"min": (0, False)})
    type: str = "AdamW"
    weight_decay: float = field(default=0.05, metadata=non_negative())
    betas: Sequence[float] = (0.9, 0.999)
    eps: float = 1e-8


@dataclass(frozen=True)
class SchedulerConfig:
    """`scheduler:` per-epoch cosine with linear warm-up (Point-MAE: CosLR, 10 warm-up epochs,
    timm's lr_min 1e-6 and warmup_lr_init 1e-6)."""

    type: str = "cosine"
    warmup_epochs: int = field(default=10, metadata=non_negative())
    min_lr: float = field(default=1e-6, metadata=non_negative())
    warmup_lr: float = field(default=1e-6, metadata=non_negative())


@dataclass(frozen=True)
class DatasetSplits:
    """The `dataset:` keys the engine reads (the others go to the dataset's constructor)."""

    train_split: Optional[str] = field(default=None, metadata={"yaml": str})  # None: the dataset's default
    val_split: Optional[str] = None  # None: the dataset's default (selects the best epoch)
    test_split: Optional[str] = field(default=None, metadata={"yaml": str})
    generate_demo: Optional[str] = None  # demo root written when the dataset is missing
    # the engine's policy for a malformed data file: error, or skip it (and list it)
    on_bad_file: str = field(default="error", metadata={"choices": ("error", "skip")})
    # a class-stratified validation split held out of the training split (datasets/heldout.py):
    # the fraction of each class (in (0, 1); replaces val_split) and the seed of the draw
    val_fraction: Optional[float] = None
    val_seed: int = 0


# the dataset keys `datasets.build_dataset` itself reads (not constructor arguments)
DATASET_BUILD_TYPES = {"NAME": str, "train_transforms": (list, NoneType), "fps_pool": (int, NoneType)}
ENGINE_DATASET_KEYS = tuple(f.name for f in dataclasses.fields(DatasetSplits))
# value ranges of constructor keys: sizes must be positive
MODEL_MINIMUM = {k: (1, True) for k in ("trans_dim", "depth", "num_heads", "group_size", "num_group",
                                         "encoder_dims", "cls_dim", "num_categories")}
MODEL_MINIMUM["drop_path_rate"] = (0, True)
DATASET_MINIMUM = {"npoints": (1, True), "way": (1, True), "shot": (1, True), "fold": (0, True)}
OPTIONAL_SECTIONS = ("adapter",)  # `adapter: null` in a child config means full fine-tuning
REQUIRED = ("model.NAME", "dataset.NAME", "train.epochs", "train.batch_size", "optimizer.lr")


def section(cls, values: Mapping | None):
    """A typed section from its YAML mapping (already validated): missing keys take the defaults."""
    return cls(**dict(values or {}))


# ----------------------------------------------------------------------------- the derived schema
def yaml_types(annotation) -> tuple:
    """The YAML value types an annotation admits: float admits int, Optional admits null,
    sequences are lists, paths are strings."""
    if annotation is float:
        return (int, float)
    if annotation in (str, Path, os.PathLike):
        return (str,)
    if annotation in YAML_TYPES:
        return (annotation,)
    origin = typing.get_origin(annotation)
    if origin is Union:
        return tuple(dict.fromkeys(t for arg in typing.get_args(annotation) for t in yaml_types(arg)))
    if origin in (list, tuple, collections.abc.Sequence) or annotation in (list, tuple):
        return (list,)
    if origin in (dict, collections.abc.Mapping) or annotation is dict:
        return (dict,)
    return ()  # a callable or an object: not a config value


@dataclass
class Limits:
    """Value checks beyond the type: minimum {dotted key: (lowest, inclusive)}, choices {dotted key: values}."""

    minimum: dict = field(default_factory=dict)
    choices: dict = field(default_factory=dict)


def _fields_schema(classes, prefix: str, limits: Limits) -> dict:
    """{field: types} of dataclasses (the union of the types when two classes share a field)."""
    out: dict = {}
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            yaml = f.metadata.get("yaml")
            _add(out, f.name, (yaml,) if yaml is not None else yaml_types(hints[f.name]))
            if "min" in f.metadata:
                limits.minimum[f"{prefix}{f.name}"] = f.metadata["min"]
            if "choices" in f.metadata:
                limits.choices[f"{prefix}{f.name}"] = f.metadata["choices"]
    return {k: _one(v) for k, v in out.items()}


def _add(out: dict, key: str, types: tuple) -> None:
    out[key] = tuple(dict.fromkeys(out.get(key, ()) + tuple(types)))


def _one(types: tuple):
    return types[0] if len(types) == 1 else types


def _constructor_schema(classes, skip: Sequence[str], keyword_only: bool) -> dict:
    """{key: types} over the constructors' keyword arguments (the union when two classes share a key)."""
    out: dict = {}
    for cls in classes:
        hints = typing.get_type_hints(cls.__init__)
        for p in inspect.signature(cls.__init__).parameters.values():
            if p.name in skip or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if keyword_only and p.kind != p.KEYWORD_ONLY:
                continue
            types = yaml_types(hints.get(p.name, Any))
            if types:
                _add(out, p.name, types)
    return {k: _one(v) for k, v in out.items()}


def build_schema() -> tuple[dict, Limits]:
    """(schema, limits): schema maps key -> type, tuple of types or nested dict of a section."""
    limits = Limits({f"model.{k}": v for k, v in MODEL_MINIMUM.items()})
    limits.minimum.update({f"dataset.{k}": v for k, v in DATASET_MINIMUM.items()})
    model = {"NAME": str, **_constructor_schema(MODELS.values(), ("self",), keyword_only=True)}
    dataset = {**DATASET_BUILD_TYPES,
               **_constructor_schema(DATASETS.values(), ("self", "split", "transform"), keyword_only=False),
               **_fields_schema([DatasetSplits], "dataset.", limits)}
    # AdapterConfig and the method configs (DAPT, IDPT, PointGST) check their own values
    adapter = _fields_schema([AdapterConfig, *METHOD_CONFIGS.values()], "adapter.", Limits())
    schema = {
        "model": model, "adapter": adapter, "dataset": dataset,
        "train": _fields_schema([TrainConfig], "train.", limits),
        "optimizer": _fields_schema([OptimizerConfig], "optimizer.", limits),
        "scheduler": _fields_schema([SchedulerConfig], "scheduler.", limits),
        "output_dir": str, "ckpts": (str, NoneType),
    }
    return schema, limits


__all__ = ["DatasetSplits", "Limits", "ENGINE_DATASET_KEYS", "OPTIONAL_SECTIONS", "OptimizerConfig",
           "REQUIRED", "SchedulerConfig", "TrainConfig", "build_schema", "section", "yaml_types"]
