"""ShapeNetPart (Yi et al., SIGGRAPH Asia 2016), the `_normal` release of PointNet++.

    shapenetcore_partanno_segmentation_benchmark_v0_normal/
        synsetoffset2category.txt          'Airplane<TAB>02691156', one category a line
        <synset>/<token>.txt               rows 'x y z nx ny nz part' (part: global id 0..49)
        train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<token>", ...]

16 categories, 50 parts; the category id is the category's index in the
standard (alphabetical) list and part ids are global, so a file listing only
some categories keeps the ids of the full benchmark. Each item is centred and
scaled into the unit sphere, then `npoints` rows are drawn with replacement as
in the public code (torch's RNG, seeded per DataLoader worker; or fixed per
item with `sample_seed`).
"""
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.utils.data import Dataset

from .common import PathLike, check_split_and_size, find_root, malformed, missing, pc_normalize, read_lines
from .pointcloud_io import read_text_points
from .transforms import apply_transform

NAME = "ShapeNetPart"
FOLDER = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
CATEGORY_FILE = "synsetoffset2category.txt"
NUM_CATEGORIES = 16
NUM_PARTS = 50

# synsetoffset2category.txt of the public release (alphabetical = category id order).
SYNSETS = {
    "Airplane": "02691156", "Bag": "02773838", "Cap": "02954340", "Car": "02958343",
    "Chair": "03001627", "Earphone": "03261776", "Guitar": "03467517", "Knife": "03624134",
    "Lamp": "03636649", "Laptop": "03642806", "Motorbike": "03790512", "Mug": "03797390",
    "Pistol": "03948459", "Rocket": "04099429", "Skateboard": "04225987", "Table": "04379243",
}  # fmt: skip
CATEGORIES = list(SYNSETS)

# Category -> its global part ids (PointNet++ / Point-MAE `seg_classes`).
SEG_CLASSES = {
    "Airplane": [0, 1, 2, 3], "Bag": [4, 5], "Cap": [6, 7], "Car": [8, 9, 10, 11],
    "Chair": [12, 13, 14, 15], "Earphone": [16, 17, 18], "Guitar": [19, 20, 21], "Knife": [22, 23],
    "Lamp": [24, 25, 26, 27], "Laptop": [28, 29], "Motorbike": [30, 31, 32, 33, 34, 35], "Mug": [36, 37],
    "Pistol": [38, 39, 40], "Rocket": [41, 42, 43], "Skateboard": [44, 45, 46], "Table": [47, 48, 49],
}  # fmt: skip
SPLITS = {"train": ["train"], "val": ["val"], "trainval": ["train", "val"], "test": ["test"]}


def read_categories(path: Path) -> Dict[str, str]:
    """synsetoffset2category.txt -> {category name: synset folder}."""
    out = {}
    for n, line in enumerate(read_lines(path, "category file", NAME), 1):
        parts = line.split()
        if len(parts) != 2:
            raise malformed(path, f"line {n} '{line}': expected '<Category> <synset>'", NAME)
        if parts[0] not in SEG_CLASSES:
            raise malformed(path, f"line {n}: unknown category '{parts[0]}' (known: {CATEGORIES})", NAME)
        out[parts[0]] = parts[1]
    return out


def read_split(root: Path, name: str) -> List[Tuple[str, str]]:
    """train_test_split/shuffled_<name>_file_list.json -> [(synset, token)]."""
    path = root / "train_test_split" / f"shuffled_{name}_file_list.json"
    if not path.is_file():
        raise missing(path, f"{name} split file", NAME)
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise malformed(path, f"not valid JSON ({err})", NAME) from None
    if not isinstance(entries, list):
        raise malformed(path, "expected a JSON list of 'shape_data/<synset>/<token>' strings", NAME)
    out = []
    for entry in entries:
        parts = entry.split("/") if isinstance(entry, str) else []
        if len(parts) != 3:
            raise malformed(path, f"entry {entry!r}: expected 'shape_data/<synset>/<token>'", NAME)
        out.append((parts[1], parts[2]))
    return out


class ShapeNetPart(Dataset):
    """Items: {'points': (npoints, 3 or 6) float32, 'category': () int64, 'seg': (npoints,) int64}."""

    classes = CATEGORIES
    seg_classes = SEG_CLASSES
    NUM_PARTS = NUM_PARTS
    NUM_CATEGORIES = NUM_CATEGORIES

    def __init__(self, root: PathLike, split: str = "train", npoints: int = 2048, use_normals: bool = False,
                 transform: Optional[Callable] = None, sample_seed: Optional[int] = None):
        self.split, self.npoints = check_split_and_size(split, SPLITS, npoints)
        self.use_normals, self.transform, self.sample_seed = use_normals, transform, sample_seed
        self.root = find_root(root, FOLDER, CATEGORY_FILE, NAME)
        self.synsets = read_categories(self.root / CATEGORY_FILE)
        self.datapath = self._list_files()
        self._memo = {}

    def _list_files(self) -> List[Tuple[str, Path]]:
        """[(category, file)] in category order, then file name order (the public code's order)."""
        by_synset = {synset: cat for cat, synset in self.synsets.items()}
        chosen = {}
        for name in SPLITS[self.split]:
            for synset, token in read_split(self.root, name):
                if synset not in by_synset:
                    raise malformed(
                        self.root / "train_test_split" / f"shuffled_{name}_file_list.json",
                        f"synset '{synset}' is not listed in {CATEGORY_FILE}", NAME,
                    )  # fmt: skip
                chosen[(synset, token)] = by_synset[synset]
        out = []
        for synset, token in sorted(chosen, key=lambda k: (CATEGORIES.index(chosen[k]), k[1])):
            path = self.root / synset / f"{token}.txt"
            if not path.is_file():
                raise missing(path, f"{chosen[(synset, token)]} shape listed in the {self.split} split", NAME)
            out.append((chosen[(synset, token)], path))
        return out

    def __len__(self) -> int:
        return len(self.datapath)

    def _raw(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """(P, 6) normalised points and (P,) int64 part ids of one file, checked."""
        if index not in self._memo:
            category, path = self.datapath[index]
            data = read_text_points(path, 7, None, NAME)
            seg = data[:, 6]
            parts = SEG_CLASSES[category]
            bad = (seg != np.round(seg)) | (seg < parts[0]) | (seg > parts[-1])
            if bad.any():
                row = int(np.argmax(bad))
                raise malformed(path, f"row {row + 1}: part id {seg[row]:g}; part ids must be integers in {parts} "
                                      f"for {category}, found [{seg.min()}, {seg.max()}]", NAME)  # fmt: skip
            points = data[:, :6].copy()
            points[:, :3] = pc_normalize(points[:, :3])
            self._memo[index] = (points, seg.astype(np.int64))
        return self._memo[index]

    def _choice(self, index: int, count: int) -> torch.Tensor:
        generator = None
        if self.sample_seed is not None:
            generator = torch.Generator().manual_seed(self.sample_seed * 1_000_003 + index)
        return torch.randint(count, (self.npoints,), generator=generator)

    def __getitem__(self, index: int) -> dict:
        points, seg = self._raw(index)
        choice = self._choice(index, len(seg))  # (npoints,) sampled with replacement
        pts = torch.from_numpy(points)[choice]  # (npoints, 6)
        item = {
            "points": pts if self.use_normals else pts[:, :3].contiguous(),
            "category": torch.tensor(CATEGORIES.index(self.datapath[index][0]), dtype=torch.int64),
            "seg": torch.from_numpy(seg)[choice],
        }
        if self.transform is not None:
            item = apply_transform(self.transform, item)
        return item
