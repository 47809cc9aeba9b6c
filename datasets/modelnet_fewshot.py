"""Few-shot ModelNet40: the N-way K-shot protocol of Point-BERT, Point-MAE and their followers.

Layout (the public release, also written by `write_fewshot` / tools/make_fewshot.py):
  <root>/{way}way_{shot}shot/{fold}.pkl      way 5 or 10, shot 10 or 20, fold 0..9
each a pickle of {'train': [items], 'test': [items]}, item = (points (N, 6) float32 xyz + normals,
label in 0..way-1, original ModelNet40 label). The public folds hold `shot` training and 20 test
shapes per class, N = 8192 (the first rows of the ModelNet40 8192-point FPS cache).

Pickles are read with the restricted unpickler of pointcloud_io (numpy arrays, scalars and plain
containers only; anything else is refused with a message naming the file).

Items follow Point-MAE's ModelNetFewShot loader: xyz of the whole stored cloud is centred and
scaled into the unit sphere (pc_normalize), then the first `npoints` rows are kept. Stored clouds
are FPS-ordered (FPS is greedy from row 0), so these rows are the FPS of `npoints` points, the
sample Point-MAE's `misc.fps` takes at test time; training adds `fps_sample` (FPS 1200, random
1024) through train_transforms.
"""
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import PathLike, check_finite, check_positive, check_split_and_size, malformed, missing, pc_normalize
from .modelnet40 import CLASSES as MODELNET_CLASSES, fps_numpy
from .pointcloud_io import atomic_pickle_dump, safe_pickle_load
from .transforms import apply_transform

NAME = "ModelNetFewShot"
FOLDER = "ModelNetFewshot"
SPLITS = ("train", "test")
TEST_PER_CLASS = 20  # Point-MAE datasets/generate_few_shot_data.py: eval_sample=20

Item = Tuple[np.ndarray, int, int]


def setting_dir(way: int, shot: int) -> str:
    return f"{way}way_{shot}shot"


def fold_path(root: PathLike, way: int, shot: int, fold: int) -> Path:
    """<root>/{way}way_{shot}shot/{fold}.pkl, where root holds the setting folders or ModelNetFewshot/."""
    root = Path(root).expanduser()
    name = Path(setting_dir(way, shot)) / f"{fold}.pkl"
    for candidate in (root, root / FOLDER):
        if (candidate / name).is_file():
            return candidate / name
    if not root.exists():
        raise missing(root, f"few-shot root (expected a folder holding {setting_dir(way, shot)}/)", NAME)
    raise missing(root / name, f"{way}-way {shot}-shot fold {fold} (also looked at {root / FOLDER / name})", NAME)


def _int_like(value) -> Optional[int]:
    """A Python or numpy integer (also a 1-element integer array) as int, else None."""
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        return None
    return int(arr.reshape(-1)[0])


def _check_item(item, path: Path, where: str, way: int) -> Item:
    if not isinstance(item, (tuple, list)) or len(item) != 3:
        raise malformed(path, f"{where}: expected a (points, label, original label) tuple, found "
                              f"{type(item).__name__}", NAME)  # fmt: skip
    points, label, original = item[0], _int_like(item[1]), _int_like(item[2])
    if not isinstance(points, np.ndarray) or points.ndim != 2 or points.shape[1] not in (3, 6):
        raise malformed(path, f"{where}: points must be an (N, 6) or (N, 3) array, found "
                              f"{getattr(points, 'shape', type(points).__name__)}", NAME)  # fmt: skip
    if label is None or not 0 <= label < way:
        raise malformed(path, f"{where}: label must be an integer in [0, {way}), found {item[1]!r}", NAME)
    if original is None or original < 0:
        raise malformed(path, f"{where}: original label must be a non-negative integer, found {item[2]!r}", NAME)
    check_finite(points, path, NAME)
    return points.astype(np.float32, copy=False), label, original


def read_fold(path: PathLike, way: int) -> Dict[str, List[Item]]:
    """{'train': [items], 'test': [items]} of one fold pickle, every item checked."""
    path = Path(path)
    obj = safe_pickle_load(path, NAME)
    if not isinstance(obj, dict) or not all(isinstance(obj.get(s), (list, tuple)) for s in SPLITS):
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise malformed(path, f"expected a pickled dict {{'train': [...], 'test': [...]}}, found {found}", NAME)
    return {s: [_check_item(it, path, f"{s} item {i}", way) for i, it in enumerate(obj[s])] for s in SPLITS}


def class_names(items: Sequence[Item], way: int, path: Path) -> List[str]:
    """Name of each few-shot label from its original ModelNet40 label (one original per label)."""
    originals: Dict[int, int] = {}
    for _, label, original in items:
        if originals.setdefault(label, original) != original:
            raise malformed(path, f"label {label} stands for two ModelNet40 classes ({originals[label]} and "
                                  f"{original})", NAME)  # fmt: skip
    names = []
    for label in range(way):
        orig = originals.get(label)
        names.append(MODELNET_CLASSES[orig] if orig is not None and orig < len(MODELNET_CLASSES) else f"class_{label}")
    return names


class ModelNetFewShot(Dataset):
    """Items: {'points': (npoints, 3 or 6) float32, 'label': () int64 in [0, way)}.

    `classes` names the way classes. The public recipe keeps a 40-way head (cls_dim 40) for every
    setting, so a head wider than `way` is accepted (`wider_head_ok`).
    """

    wider_head_ok = True

    def __init__(self, root: PathLike, split: str = "train", way: int = 5, shot: int = 10, fold: int = 0,
                 npoints: int = 1024, use_normals: bool = False, transform: Optional[Callable] = None):
        self.split, self.npoints = check_split_and_size(split, SPLITS, npoints)
        self.way, self.shot = check_positive("way", way), check_positive("shot", shot)
        if not isinstance(fold, int) or isinstance(fold, bool) or fold < 0:
            raise ValueError(f"fold must be a non-negative int, got {fold!r}")
        self.fold = fold
        self.use_normals, self.transform = use_normals, transform
        self.path = fold_path(root, self.way, self.shot, fold)
        data = read_fold(self.path, self.way)
        self.classes = class_names(data["train"] + data["test"], self.way, self.path)
        self.items = data[self.split]
        for i, (points, _, _) in enumerate(self.items):
            if points.shape[0] < self.npoints:
                raise malformed(self.path, f"{self.split} item {i} has {points.shape[0]} points, fewer than "
                                           f"npoints={self.npoints}", NAME)  # fmt: skip
            if use_normals and points.shape[1] < 6:
                raise malformed(self.path, f"{self.split} item {i} has no normals (3 columns) but "
                                           "use_normals=true", NAME)  # fmt: skip
        self.labels = np.asarray([label for _, label, _ in self.items], dtype=np.int64)
        self.original_labels = np.asarray([orig for _, _, orig in self.items], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        points = np.array(self.items[index][0], dtype=np.float32)  # (N, C) copy
        points[:, :3] = pc_normalize(points[:, :3])  # over the whole stored cloud, as the public loader
        points = points[: self.npoints, : 6 if self.use_normals else 3]  # (npoints, C): FPS-ordered rows
        item = {"points": torch.from_numpy(np.ascontiguousarray(points)), "label": torch.tensor(self.labels[index])}
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item


# ---------------------------------------------------------------- making folds
def sample_fold(train_labels: np.ndarray, test_labels: np.ndarray, way: int, shot: int, test_per_class: int,
                rng: np.random.Generator, names: Sequence[str]) -> Dict[str, List[Tuple[int, int, int]]]:
    """Chooses `way` classes among those with training shapes, `shot` training and `test_per_class`
    test shapes of each (Point-MAE's generate_few_shot_data.py, with a seeded generator).

    returns {'train' | 'test': [(source index, label in 0..way-1, original label)]}, shuffled.
    Raises ValueError naming the class when one has too few shapes.
    """
    present = np.unique(train_labels)
    if way > len(present):
        raise ValueError(f"way={way}: the training split has shapes of only {len(present)} classes")
    chosen = rng.permutation(present)[:way]
    out: Dict[str, List[Tuple[int, int, int]]] = {"train": [], "test": []}
    for label, original in enumerate(chosen):
        for split, labels, count in (("train", train_labels, shot), ("test", test_labels, test_per_class)):
            idx = np.flatnonzero(labels == original)
            if len(idx) < count:
                need = f"shot={shot}" if split == "train" else f"test_per_class={test_per_class}"
                raise ValueError(f"class '{names[original]}' has {len(idx)} {split} shapes, fewer than {need}")
            out[split] += [(int(i), label, int(original)) for i in rng.permutation(idx)[:count]]
    for split in out:
        out[split] = [out[split][i] for i in rng.permutation(len(out[split]))]
    return out


def fold_rng(seed: int, way: int, shot: int, fold: int) -> np.random.Generator:
    """Each (way, shot, fold) draws from its own stream: adding a fold changes no other."""
    return np.random.default_rng([seed, way, shot, fold])


def write_fewshot(train_source, test_source, out: PathLike, ways: Sequence[int], shots: Sequence[int],
                  folds: Sequence[int], points: int, seed: int = 0, test_per_class: int = TEST_PER_CLASS,
                  fps_order: bool = False, log: Callable[[str], None] = print) -> List[Path]:
    """Writes <out>/{way}way_{shot}shot/{fold}.pkl for every setting from two ModelNet40 splits.

    *_source: datasets.ModelNet40 (labels, classes, raw_points(i) -> (points, C) unnormalised);
    fps_order: re-order each cloud by FPS (sources whose rows are not FPS-ordered, e.g. h5).
    Every setting is checked before any file is written. returns the written paths.
    """
    plans = {}
    for way in ways:
        for shot in shots:
            for fold in folds:
                rng = fold_rng(seed, way, shot, fold)
                try:
                    plans[way, shot, fold] = sample_fold(train_source.labels, test_source.labels, way, shot,
                                                         test_per_class, rng, train_source.classes)
                except ValueError as err:
                    raise ValueError(f"{way}-way {shot}-shot fold {fold}: {err}") from None
    cache: Dict[Tuple[str, int], np.ndarray] = {}

    def cloud(split: str, index: int) -> np.ndarray:
        if (split, index) not in cache:
            source = train_source if split == "train" else test_source
            raw = np.asarray(source.raw_points(index), dtype=np.float32)
            cache[split, index] = fps_numpy(raw, points).astype(np.float32) if fps_order else raw[:points].copy()
        return cache[split, index]

    objs = {key: {s: [(cloud(s, i), label, orig) for i, label, orig in plan[s]] for s in SPLITS}
            for key, plan in plans.items()}  # every shape is read (and checked) before the first write
    written = []
    for (way, shot, fold), obj in objs.items():
        path = Path(out) / setting_dir(way, shot) / f"{fold}.pkl"
        atomic_pickle_dump(obj, path)
        written.append(path)
        log(f"wrote {path}: {len(obj['train'])} train / {len(obj['test'])} test shapes")
    return written
