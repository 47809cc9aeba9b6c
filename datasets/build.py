"""`build_dataset(cfg, split)`: one builder keyed by cfg['NAME'].

cfg holds NAME, the dataset's constructor keywords (root, variant, npoints,
use_normals, format, ...) and optionally
- train_transforms: [name or {'NAME': name, **kwargs}], applied for split 'train' (and 'trainval')
  (names: scale_translate, rotate_up, dropout, jitter, fps_sample);
- fps_pool: points the 'fps_sample' transform draws its subset from (Point-MAE
  fine-tuning: FPS 1200 -> random 1024); the training dataset then loads
  fps_pool points and the transform returns npoints.
"""
import inspect
from typing import Mapping

from .modelnet40 import ModelNet40
from .modelnet_fewshot import ModelNetFewShot
from .pointcloud_folder import PointCloudFolder
from .scanobjectnn import ScanObjectNN
from .shapenetpart import ShapeNetPart
from .transforms import TRANSFORMS, build_transforms

DATASETS = {"ScanObjectNN": ScanObjectNN, "ModelNet40": ModelNet40, "ModelNetFewShot": ModelNetFewShot,
            "ShapeNetPart": ShapeNetPart, "PointCloudFolder": PointCloudFolder}  # unlabelled files, for pre-training
EXTRA_KEYS = ("NAME", "train_transforms", "fps_pool")


def _kwargs_of(cls) -> list:
    params = inspect.signature(cls.__init__).parameters
    return [p for p in params if p not in ("self", "split", "transform")]


def _spec_name(spec) -> str:
    return spec.get("NAME") if isinstance(spec, Mapping) else spec


def build_dataset(cfg: Mapping, split: str):
    """cfg: {'NAME': 'ScanObjectNN' | 'ModelNet40' | 'ShapeNetPart', **kwargs} -> Dataset for `split`."""
    if not isinstance(cfg, Mapping) or "NAME" not in cfg:
        raise KeyError(f"dataset config needs a 'NAME' key, one of {sorted(DATASETS)}")
    name = cfg["NAME"]
    if name not in DATASETS:
        raise KeyError(f"unknown dataset NAME '{name}'; known datasets: {sorted(DATASETS)}")
    cls = DATASETS[name]
    known = _kwargs_of(cls)
    unknown = [k for k in cfg if k not in known and k not in EXTRA_KEYS]
    if unknown:
        raise KeyError(f"dataset config for {name}: unknown key(s) {unknown}; known keys: {sorted(known + list(EXTRA_KEYS))}")
    kwargs = {k: v for k, v in cfg.items() if k not in EXTRA_KEYS}
    training = split in ("train", "trainval")  # trainval: ShapeNetPart's training split (Point-MAE)
    specs = list(cfg.get("train_transforms") or []) if training else []
    for spec in specs:
        if _spec_name(spec) not in TRANSFORMS:
            raise KeyError(f"unknown transform '{_spec_name(spec)}' in train_transforms; known: {sorted(TRANSFORMS)}")
    npoints = kwargs.get("npoints", inspect.signature(cls.__init__).parameters["npoints"].default)
    fps_pool = cfg.get("fps_pool")
    if fps_pool is not None and any(_spec_name(s) == "fps_sample" for s in specs):
        if fps_pool < npoints:
            raise ValueError(f"fps_pool={fps_pool} must be >= npoints={npoints}")
        kwargs["npoints"] = fps_pool  # the dataset loads the pool, fps_sample returns npoints
    transform = build_transforms(specs, npoints=npoints, fps_pool=fps_pool) if specs else None
    return cls(split=split, transform=transform, **kwargs)
