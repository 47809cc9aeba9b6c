"""ScanObjectNN (Uy et al., ICCV 2019): the three standard variants from the
official h5 release.

    h5_files/main_split/training_objectdataset.h5                      OBJ_BG train
    h5_files/main_split/test_objectdataset.h5                          OBJ_BG test
    h5_files/main_split_nobg/{training,test}_objectdataset.h5          OBJ_ONLY
    h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5   PB_T50_RS

Keys: `data` (S, 2048, 3) float, `label` (S,) int, optional `mask` (S, 2048)
(-1 marks background points). Points are used as stored (Point-MAE does not
re-normalise ScanObjectNN); the point order is kept, the training recipe's
'fps_sample' transform samples and permutes.
"""
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

import cuda_ext

from .common import PathLike, check_choice, check_finite, check_labels, check_split_and_size, malformed, missing
from .pointcloud_io import read_h5_arrays
from .transforms import apply_transform

NAME = "ScanObjectNN"

# Label order of the official release (its README / training code).
CLASSES = [
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
]  # fmt: skip

# variant -> (sub-folder, file name stem suffix)
VARIANTS = {
    "OBJ_BG": ("main_split", ""),
    "OBJ_ONLY": ("main_split_nobg", ""),
    "PB_T50_RS": ("main_split", "_augmentedrot_scale75"),
}
SPLITS = {"train": "training", "test": "test"}


def variant_file(variant: str, split: str) -> Path:
    """Relative path of a variant's split file inside h5_files/."""
    folder, suffix = VARIANTS[variant]
    return Path(folder) / f"{SPLITS[split]}_objectdataset{suffix}.h5"


def resolve_file(root: PathLike, variant: str, split: str) -> Path:
    """Find the h5 file under root/h5_files/, root/ (= h5_files), root/ScanObjectNN/h5_files/
    (the demo layout) or root (= the split folder itself)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise missing(root, "dataset root (expected a folder holding h5_files/)", NAME)
    rel = variant_file(variant, split)
    candidates = [root / "h5_files" / rel, root / rel, root / "ScanObjectNN" / "h5_files" / rel]
    if root.name == rel.parent.name:
        candidates.append(root / rel.name)
    for path in candidates:
        if path.is_file():
            return path
    raise missing(candidates[0], f"{variant} {split} file {rel} (also looked at {[str(c) for c in candidates[1:]]})", NAME)


class ScanObjectNN(Dataset):
    """Items: {'points': (npoints, 3) float32, 'label': () int64}.

    npoints < 2048 keeps the furthest-point-sampled subset (Point-MAE's
    test-time `misc.fps`); `transform` is applied to each item (see transforms.py).
    """

    classes = CLASSES
    num_classes = len(CLASSES)

    def __init__(self, root: PathLike, variant: str = "OBJ_BG", split: str = "train", npoints: int = 2048,
                 transform: Optional[Callable] = None):
        self.variant = check_choice("variant", variant, list(VARIANTS))
        self.split, self.npoints = check_split_and_size(split, SPLITS, npoints)
        self.transform = transform
        self.path = resolve_file(root, variant, split)
        self.points, self.labels, self.mask = self._load(self.path)

    def _load(self, path: Path):
        arrays = read_h5_arrays(path, ["data", "label"], ["mask"], NAME)
        data, label = arrays["data"], arrays["label"]
        if data.ndim != 3 or data.shape[2] != 3:
            raise malformed(path, f"h5 key 'data' must have shape (S, P, 3), found {data.shape}", NAME)
        label = label.reshape(-1) if label.ndim == 2 and label.shape[1] == 1 else label
        if label.shape != (data.shape[0],):
            raise malformed(path, f"h5 key 'label' must have shape ({data.shape[0]},), found {arrays['label'].shape}", NAME)
        if not np.issubdtype(label.dtype, np.integer):
            raise malformed(path, f"h5 key 'label' must be integer, found {label.dtype}", NAME)
        mask = arrays.get("mask")
        if mask is not None and mask.shape != data.shape[:2]:
            raise malformed(path, f"h5 key 'mask' must have shape {data.shape[:2]}, found {mask.shape}", NAME)
        if data.shape[1] < self.npoints:
            raise malformed(path, f"has {data.shape[1]} points per object, fewer than npoints={self.npoints}", NAME)
        check_finite(data, path, NAME)  # index reported as [sample, point, coordinate]
        check_labels(label, self.num_classes, path, NAME)
        return data.astype(np.float32), label.astype(np.int64), mask

    def __len__(self) -> int:
        return self.points.shape[0]

    def __getitem__(self, index: int) -> dict:
        points = torch.from_numpy(self.points[index])  # (P, 3)
        if self.npoints < points.shape[0]:
            idx = cuda_ext.furthest_point_sample(points[None].contiguous(), self.npoints)[0].long()
            points = points[idx]  # (npoints, 3)
        else:
            points = points.clone()
        item = {"points": points, "label": torch.tensor(self.labels[index], dtype=torch.int64)}
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item
