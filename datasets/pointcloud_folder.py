"""A folder of point-cloud files (.npy, .txt, .ply, .pcd) as an unlabelled dataset, for pre-training.

Two layouts:
- any folder: every file with a known suffix under `root` (recursively, sorted by path) is one
  sample, for every split name;
- ShapeNet-55 (Point-MAE / Point-BERT pre-training): root = ShapeNet55-34/shapenet_pc (one
  8192-point .npy per shape), file_list = ShapeNet55-34/ShapeNet-55/{split}.txt (one file name
  per line, relative to root; `{split}` is replaced by the split name).

Items are {'points': (npoints, 3) float32}: a random subset of `npoints` of the file's xyz (a new
one every epoch), centred and scaled into the unit sphere, as Point-MAE's ShapeNet55Dataset
(random_sample, then pc_norm). A file with fewer points than `npoints` is sampled with
repetition (partial scans vary in size; a repeated point changes neither patch centre much).
Columns past xyz (normals, colours, intensity) are ignored; files are read by `point_files.read_points`.
"""
from pathlib import Path
from typing import Callable, List, Optional

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import PathLike, check_positive, pc_normalize
from .point_files import SUFFIXES, read_points
from .transforms import apply_transform

__all__ = ["PointCloudFolder", "SUFFIXES", "list_files", "read_points"]  # read_points: datasets.point_files


# ----------------------------------------------------------------------------- dataset
def list_files(root: Path, file_list: Optional[str], split: str) -> List[Path]:
    """The split's files: the names in `file_list` (relative to root), else every point file under root."""
    if file_list:
        list_path = Path(file_list.replace("{split}", split)).expanduser()
        if not list_path.is_file():
            raise FileNotFoundError(f"dataset.file_list: no file '{list_path}' (split '{split}')")
        names = [ln.strip() for ln in list_path.read_text().splitlines() if ln.strip()]
        files = [root / name for name in names]
        absent = [str(p) for p in files if not p.is_file()]
        if absent:
            raise FileNotFoundError(f"dataset.file_list '{list_path}' names {len(absent)} files missing under "
                                    f"root '{root}', e.g. {absent[:3]}")
    else:
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"dataset.root '{root}': no point files ({', '.join(SUFFIXES)}) found")
    return files


class PointCloudFolder(Dataset):
    """Unlabelled point clouds from files; items {'points': (npoints, 3) float32}."""

    labelled = False  # no 'label': tools/train.py refuses it before training, tools/pretrain.py uses it

    def __init__(
        self,
        root: PathLike,
        split: str = "train",
        npoints: int = 1024,
        file_list: Optional[str] = None,
        transform: Optional[Callable] = None,
    ):
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset.root: folder '{self.root}' not found (expected a folder of "
                                    f"{', '.join(SUFFIXES)} point files)")
        self.split = split
        self.npoints = check_positive("npoints", npoints)
        self.transform = transform
        self.files = list_files(self.root, file_list, split)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        xyz = read_points(self.files[index])  # (P, 3)
        n = xyz.shape[0]
        if n >= self.npoints:
            idx = torch.randperm(n)[: self.npoints]
        else:
            idx = torch.randint(n, (self.npoints,))
        points = pc_normalize(xyz[idx.numpy()]).astype(np.float32)  # (npoints, 3)
        item = {"points": torch.from_numpy(points)}
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item
