"""ModelNet40 (Wu et al., CVPR 2015) in its three public on-disk forms.

- 'txt': modelnet40_normal_resampled/ (PointNet++): modelnet40_shape_names.txt,
  modelnet40_{train,test}.txt (ids like 'airplane_0001'), <class>/<id>.txt with
  10,000 rows 'x,y,z,nx,ny,nz'. Each item is the furthest-point sample of
  `npoints` points (Point-MAE's uniform=True protocol), memoised per process.
- 'dat': the cache modelnet40_{split}_8192pts_fps.dat in the same folder
  (Point-BERT/Point-MAE): a pickle [list of (8192, 6) float32, list of (1,)
  int32]. Read with a restricted unpickler; built from the text files on first
  use with cuda_ext's FPS (progress bar, atomic write) when missing. FPS is
  greedy from index 0, so the first `npoints` cached points are exactly the
  FPS of `npoints`: 'txt' and 'dat' give the same items.
- 'h5': modelnet40_ply_hdf5_2048/ply_data_{train,test}N.h5 (PointNet): keys
  'data' (S, 2048, 3), 'label' (S, 1), optional 'normal'; the first `npoints`.

'auto' picks 'dat' when the cache exists, else 'txt', else 'h5'. xyz is then
centred and scaled into the unit sphere (pc_normalize).
"""
import re
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

import cuda_ext

from .common import (
    PathLike, check_choice, check_finite, check_labels, check_positive, check_split_and_size, hint, malformed, missing,
    pc_normalize, read_lines,
)  # fmt: skip
from .pointcloud_io import atomic_pickle_dump, read_h5_arrays, read_text_points, safe_pickle_load
from .transforms import apply_transform

NAME = "ModelNet40"
TEXT_FOLDER = "modelnet40_normal_resampled"
H5_FOLDER = "modelnet40_ply_hdf5_2048"
NAMES_FILE = "modelnet40_shape_names.txt"
FORMATS = ("auto", "txt", "dat", "h5")

# modelnet40_shape_names.txt of the public release (label = line index).
CLASSES = [
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
]  # fmt: skip


def cache_name(split: str, cache_points: int) -> str:
    return f"modelnet40_{split}_{cache_points}pts_fps.dat"


def fps_numpy(points: np.ndarray, npoints: int) -> np.ndarray:
    """points: (N, C) -> (npoints, C), furthest point sampling on xyz from row 0."""
    xyz = torch.from_numpy(np.ascontiguousarray(points[:, :3]))[None]  # (1, N, 3)
    idx = cuda_ext.furthest_point_sample(xyz, npoints)[0].long().numpy()
    return points[idx]


def _h5_dir(root: Path) -> Optional[Path]:
    for candidate in (root, root / H5_FOLDER):
        if candidate.is_dir() and any(candidate.glob("ply_data_*.h5")):
            return candidate
    return None


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


class ModelNet40(Dataset):
    """Items: {'points': (npoints, 3 or 6) float32, 'label': () int64}."""

    num_classes = len(CLASSES)

    def __init__(self, root: PathLike, split: str = "train", npoints: int = 1024, use_normals: bool = False,
                 format: str = "auto", transform: Optional[Callable] = None, cache_points: int = 8192):
        self.split, self.npoints = check_split_and_size(split, ("train", "test"), npoints)
        self.cache_points = check_positive("cache_points", cache_points)
        self.use_normals, self.transform = use_normals, transform
        self.format = self._resolve(Path(root).expanduser(), check_choice("format", format, FORMATS))
        self._memo = {}
        if self.format == "h5":
            self._load_h5()
        else:
            self._load_split()
            if self.format == "dat":
                self._load_dat()

    # ------------------------------------------------------------------ layout
    def _resolve(self, root: Path, fmt: str) -> str:
        if not root.exists():
            raise missing(root, f"dataset root (expected a folder holding {TEXT_FOLDER}/ or {H5_FOLDER}/)", NAME)
        text_dir = next((c for c in (root, root / TEXT_FOLDER) if (c / NAMES_FILE).is_file()), None)
        h5_dir = _h5_dir(root)
        if fmt == "auto":
            if text_dir is not None:
                fmt = "dat" if (text_dir / cache_name(self.split, self.cache_points)).is_file() else "txt"
            elif h5_dir is not None:
                fmt = "h5"
            else:
                raise missing(root, f"{TEXT_FOLDER}/{NAMES_FILE} or {H5_FOLDER}/ply_data_*.h5", NAME)
        if fmt in ("txt", "dat") and text_dir is None:
            raise missing(root, f"{NAMES_FILE} (looked in {root} and {root / TEXT_FOLDER})", NAME)
        if fmt == "h5" and h5_dir is None:
            raise missing(root, f"ply_data_{self.split}*.h5 (looked in {root} and {root / H5_FOLDER})", NAME)
        self.dir = text_dir if fmt in ("txt", "dat") else h5_dir
        return fmt

    def _load_split(self) -> None:
        self.classes = read_lines(self.dir / NAMES_FILE, "class names file", NAME)
        index = {name: i for i, name in enumerate(self.classes)}
        split_file = self.dir / f"modelnet40_{self.split}.txt"
        self.shape_ids = read_lines(split_file, f"{self.split} split file", NAME)
        self.files, labels = [], []
        for shape_id in self.shape_ids:
            cls = shape_id.rsplit("_", 1)[0]
            if cls not in index:
                raise malformed(split_file, f"shape id '{shape_id}' has class '{cls}' not in {NAMES_FILE}", NAME)
            self.files.append(self.dir / cls / f"{shape_id}.txt")
            labels.append(index[cls])
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.format == "txt":  # a listed shape that is missing stops before training, not mid-epoch
            absent = [f for f in self.files if not f.is_file()]
            if absent:
                raise FileNotFoundError(f"{absent[0]}: point file not found; {len(absent)} of the {len(self.files)} "
                                        f"shapes listed in {split_file} are missing.{hint(NAME)}")

    # ------------------------------------------------------------------ dat cache
    def _load_dat(self) -> None:
        path = self.dir / cache_name(self.split, self.cache_points)
        if not path.is_file():
            self.build_cache(path)
        points, labels = self._check_dat(path, safe_pickle_load(path, NAME))
        self.cache, self.labels = points, labels

    def build_cache(self, path: Path) -> None:
        """FPS every text shape to cache_points and write the Point-MAE .dat pickle atomically."""
        list_of_points, list_of_labels = [], []
        for file, label in tqdm(list(zip(self.files, self.labels)), desc=f"building {path.name}", unit="shape"):
            data = read_text_points(file, 6, ",", NAME)
            if data.shape[0] < self.cache_points:
                raise malformed(file, f"has {data.shape[0]} points, fewer than cache_points={self.cache_points}", NAME)
            list_of_points.append(fps_numpy(data, self.cache_points).astype(np.float32))
            list_of_labels.append(np.array([label], dtype=np.int32))
        atomic_pickle_dump([list_of_points, list_of_labels], path)

    def _check_dat(self, path: Path, obj) -> Tuple[List[np.ndarray], np.ndarray]:
        ok = isinstance(obj, (list, tuple)) and len(obj) == 2 and all(isinstance(o, (list, tuple)) for o in obj)
        if not ok or len(obj[0]) != len(obj[1]):
            raise malformed(path, "expected a pickled [list of (P, 6) arrays, list of labels] of equal lengths", NAME)
        points, labels = obj
        if len(points) != len(self.files):
            raise malformed(path, f"holds {len(points)} shapes, the split file lists {len(self.files)}", NAME)
        for i, p in enumerate(points):
            if not isinstance(p, np.ndarray) or p.ndim != 2 or p.shape[1] != 6 or p.shape[0] < self.npoints:
                shape = getattr(p, "shape", type(p).__name__)
                raise malformed(path, f"shape {i}: expected a (>= {self.npoints}, 6) array, found {shape}", NAME)
            check_finite(p, path, NAME, index=i)
        labels = np.asarray([int(np.asarray(label).reshape(-1)[0]) for label in labels], dtype=np.int64)
        check_labels(labels, len(self.classes), path, NAME)
        return [p.astype(np.float32) for p in points], labels

    # ------------------------------------------------------------------ h5
    def _load_h5(self) -> None:
        names = self.dir / "shape_names.txt"
        self.classes = read_lines(names, "class names", NAME) if names.is_file() else list(CLASSES)
        files = sorted(self.dir.glob(f"ply_data_{self.split}*.h5"), key=_natural_key)
        if not files:
            raise missing(self.dir / f"ply_data_{self.split}0.h5", f"{self.split} h5 files", NAME)
        optional = ["normal"] if self.use_normals else []
        data, labels = [], []
        for path in files:
            arrays = read_h5_arrays(path, ["data", "label"] + optional, [], NAME)
            points = arrays["data"]
            if points.ndim != 3 or points.shape[2] != 3 or points.shape[1] < self.npoints:
                raise malformed(path, f"h5 key 'data' must be (S, >= {self.npoints}, 3), found {points.shape}", NAME)
            if self.use_normals:
                if arrays["normal"].shape != points.shape:
                    raise malformed(path, f"h5 key 'normal' must be {points.shape}, found {arrays['normal'].shape}", NAME)
                points = np.concatenate([points, arrays["normal"]], axis=2)
            label = arrays["label"].reshape(-1)
            if label.shape[0] != points.shape[0]:
                raise malformed(path, f"h5 key 'label' has {label.shape[0]} entries for {points.shape[0]} shapes", NAME)
            check_finite(points, path, NAME)
            check_labels(label, len(self.classes), path, NAME)
            data.append(points.astype(np.float32))
            labels.append(label.astype(np.int64))
        self.h5_points, self.labels = np.concatenate(data), np.concatenate(labels)

    # ------------------------------------------------------------------ items
    def __len__(self) -> int:
        return len(self.labels)

    def raw_points(self, index: int) -> np.ndarray:
        """(npoints, 3 or 6) before normalisation; FPS-ordered for 'txt' and 'dat', stored order for 'h5'."""
        if self.format == "h5":
            return self.h5_points[index, : self.npoints]
        if self.format == "dat":
            return self.cache[index][: self.npoints]
        if index not in self._memo:
            data = read_text_points(self.files[index], 6, ",", NAME)
            if data.shape[0] < self.npoints:
                raise malformed(self.files[index], f"has {data.shape[0]} points, fewer than npoints={self.npoints}", NAME)
            self._memo[index] = fps_numpy(data, self.npoints)
        return self._memo[index]

    def __getitem__(self, index: int) -> dict:
        points = np.array(self.raw_points(index), dtype=np.float32)  # copy: normalisation must not touch the cache
        points[:, :3] = pc_normalize(points[:, :3])
        if not self.use_normals:
            points = points[:, :3]
        item = {"points": torch.from_numpy(np.ascontiguousarray(points)), "label": torch.tensor(self.labels[index])}
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item
