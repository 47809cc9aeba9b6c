"""Dataset loaders, installed as `pointclora.datasets`.

ScanObjectNN (OBJ_BG / OBJ_ONLY / PB_T50_RS h5), ModelNet40 (normal_resampled
text, .dat FPS cache, ply_hdf5_2048), few-shot ModelNet40 folds and ShapeNetPart (`_normal` text), the
public recipes' augmentations, `build_dataset(cfg, split)` and a procedural
demo dataset written in the same formats (`demo.make_demo_data`).
"""
from .build import DATASETS, build_dataset
from .modelnet40 import ModelNet40
from .modelnet_fewshot import ModelNetFewShot
from .scanobjectnn import ScanObjectNN
from .shapenetpart import NUM_CATEGORIES, NUM_PARTS, SEG_CLASSES, ShapeNetPart
from .transforms import (
    TRANSFORMS, Compose, FPSSample, Jitter, RandomDropout, RotateUp, ScaleTranslate, build_transforms,
)  # fmt: skip

__all__ = [
    "DATASETS", "build_dataset", "ModelNet40", "ModelNetFewShot", "ScanObjectNN", "ShapeNetPart", "NUM_CATEGORIES", "NUM_PARTS",
    "SEG_CLASSES", "TRANSFORMS", "Compose", "FPSSample", "Jitter", "RandomDropout", "RotateUp", "ScaleTranslate",
    "build_transforms",
]  # fmt: skip
