"""A small procedural dataset written in the real on-disk formats.

    make_demo_data(root, seed=0) writes
    root/ScanObjectNN/h5_files/main_split/{training,test}_objectdataset.h5                      OBJ_BG
    root/ScanObjectNN/h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5 PB_T50_RS
    root/ScanObjectNN/h5_files/main_split_nobg/{training,test}_objectdataset.h5                 OBJ_ONLY
    root/modelnet40_normal_resampled/...                                      ModelNet40 text layout
    root/shapenetcore_partanno_segmentation_benchmark_v0_normal/...           ShapeNetPart text layout
    root/demo_info.json                                                       what was generated

Every shape is drawn from its own RNG seeded by (seed, dataset, split, class,
index), so the files are identical for a seed whatever else changes.
Class ids are those of the real datasets (15 ScanObjectNN, 40 ModelNet40, 16
ShapeNetPart categories / 50 parts); the demo fills a subset of them.
"""
import hashlib
import json
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .common import PathLike
from .demo_shapes import make_shape
from .modelnet40 import CLASSES as MODELNET_CLASSES
from ..io import atomic_path, atomic_write_text
from .pointcloud_io import format_rows
from .scanobjectnn import CLASSES as SCAN_CLASSES, variant_file
from .shapenetpart import CATEGORIES, FOLDER as SHAPENET_FOLDER, SEG_CLASSES, SYNSETS

# demo class -> shape builder
SCAN_DEMO = {"bin": "bin", "box": "box", "chair": "chair", "display": "display", "shelf": "shelf", "table": "table", "sofa": "sofa"}
MODELNET_DEMO = {
    "airplane": "airplane", "bookshelf": "shelf", "chair": "chair", "cup": "mug", "lamp": "lamp",
    "monitor": "display", "sofa": "sofa", "table": "table",
}  # fmt: skip
SHAPENET_DEMO = {"Airplane": "airplane", "Chair": "chair", "Lamp": "lamp", "Mug": "mug", "Table": "table"}
DATASET_IDS = {"ScanObjectNN": 1, "ModelNet40": 2, "ShapeNetPart": 3}
SPLIT_IDS = {"train": 0, "test": 1, "val": 2}


def shape_rng(seed: int, dataset: str, split: str, cls: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, DATASET_IDS[dataset], SPLIT_IDS[split], cls, index])


# ---------------------------------------------------------------- ScanObjectNN
def _background(obj: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) floor, wall and clutter points around an object (ScanObjectNN's OBJ_BG crops)."""
    lo, hi = obj.min(0), obj.max(0)
    span = (hi - lo).max()
    kind = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])
    u = rng.uniform(-0.8, 0.8, size=(n, 2)) * span
    floor = np.stack([u[:, 0], np.full(n, lo[1]), u[:, 1]], 1)
    wall_z = lo[2] - rng.uniform(0.0, 0.2) * span
    wall = np.stack([u[:, 0], lo[1] + (u[:, 1] / span + 0.8) / 1.6 * (hi[1] - lo[1]) * 1.2, np.full(n, wall_z)], 1)
    clutter_c = np.array([hi[0] + 0.2 * span, lo[1] + 0.1 * span, rng.uniform(lo[2], hi[2])])
    clutter = clutter_c + rng.uniform(-0.12, 0.12, size=(n, 3)) * span
    pts = np.where((kind == 0)[:, None], floor, np.where((kind == 1)[:, None], wall, clutter))
    return pts + rng.normal(scale=0.005 * span, size=pts.shape)


def _yaw(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _scan_object(kind: str, rng: np.random.Generator, npoints: int) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """One scanned object -> {variant: (points (npoints, 3) float32, mask (npoints,) int32)}."""
    obj, _, _ = make_shape(kind, npoints, rng, noise=0.01, occlusion=0.35)
    obj = _yaw(obj, rng.uniform(0, 2 * np.pi))  # scans are not aligned
    bg = _background(obj, rng, npoints)
    out = {"OBJ_ONLY": (obj, np.ones(npoints, np.int32))}
    n_bg = int(npoints * rng.uniform(0.15, 0.35))
    out["OBJ_BG"] = _mix(obj, bg, n_bg, rng)
    # PB_T50_RS: bounding box shifted by up to 50% of its size, rotated, scaled
    span = obj.max(0) - obj.min(0)
    shift = rng.uniform(-0.5, 0.5, size=3) * span * np.array([1, 0.2, 1])
    scene = np.concatenate([obj, bg])
    inside = np.all(np.abs(scene - shift) <= 0.5 * span * 1.3 + 1e-6, axis=1)
    keep_obj, keep_bg = np.flatnonzero(inside[:npoints]), np.flatnonzero(inside[npoints:])
    pts, mask = _mix(obj[keep_obj], bg[keep_bg], int(npoints * rng.uniform(0.25, 0.5)), rng, total=npoints)
    pts = _yaw(pts - shift, rng.uniform(0, 2 * np.pi)) * rng.uniform(0.75, 1.0)
    out["PB_T50_RS"] = (pts, mask)
    return {k: (_unit(p).astype(np.float32), m) for k, (p, m) in out.items()}


def _mix(obj, bg, n_bg, rng, total=None):
    total = total or len(obj)
    n_bg = min(n_bg, len(bg))
    io = rng.choice(len(obj), size=total - n_bg, replace=len(obj) < total - n_bg)
    ib = rng.choice(len(bg), size=n_bg, replace=False)
    order = rng.permutation(total)
    pts = np.concatenate([obj[io], bg[ib]])[order]
    mask = np.concatenate([np.ones(len(io), np.int32), -np.ones(n_bg, np.int32)])[order]  # -1: background
    return pts, mask


def _unit(points: np.ndarray) -> np.ndarray:
    centred = points - points.mean(0)
    return centred / np.linalg.norm(centred, axis=1).max()


def write_scanobjectnn(root: Path, seed: int, counts: Dict[str, int], npoints: int) -> None:
    for split, per_class in counts.items():
        data = {v: ([], []) for v in ("OBJ_BG", "OBJ_ONLY", "PB_T50_RS")}
        labels = []
        for name, kind in SCAN_DEMO.items():
            label = SCAN_CLASSES.index(name)
            for i in range(per_class):
                for variant, (pts, mask) in _scan_object(kind, shape_rng(seed, "ScanObjectNN", split, label, i), npoints).items():
                    data[variant][0].append(pts), data[variant][1].append(mask)
                labels.append(label)
        for variant, (pts, masks) in data.items():
            _write_h5(root / "h5_files" / variant_file(variant, split), np.stack(pts), np.array(labels), np.stack(masks))


def _write_h5(path: Path, data: np.ndarray, label: np.ndarray, mask: np.ndarray) -> None:
    import h5py

    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("data", data=data.astype(np.float32))  # (S, P, 3)
            f.create_dataset("label", data=label.astype(np.int64))  # (S,)
            f.create_dataset("mask", data=mask.astype(np.int32))  # (S, P)


# ---------------------------------------------------------------- ModelNet40
def write_modelnet40(root: Path, seed: int, counts: Dict[str, int], npoints: int) -> None:
    ids = {split: [] for split in counts}
    for name, kind in MODELNET_DEMO.items():
        label, number = MODELNET_CLASSES.index(name), 0
        for split, per_class in counts.items():  # real ids: train first, then test
            for i in range(per_class):
                number += 1
                rng = shape_rng(seed, "ModelNet40", split, label, i)
                pts, nrm, _ = make_shape(kind, npoints, rng, noise=0.005, occlusion=0.1)
                angle = rng.normal(scale=0.1)  # CAD models are roughly aligned
                pts, nrm = _yaw(pts, angle), _yaw(nrm, angle)
                shape_id = f"{name}_{number:04d}"
                atomic_write_text(root / name / f"{shape_id}.txt", format_rows(np.concatenate([pts, nrm], 1), "%.6f", ","))
                ids[split].append(shape_id)
    for split, names in ids.items():
        atomic_write_text(root / f"modelnet40_{split}.txt", "".join(f"{s}\n" for s in names))
    atomic_write_text(root / "modelnet40_shape_names.txt", "".join(f"{n}\n" for n in MODELNET_CLASSES))


# ---------------------------------------------------------------- ShapeNetPart
def _token(seed: int, category: str, split: str, index: int) -> str:
    return hashlib.md5(f"{seed}/{category}/{split}/{index}".encode()).hexdigest()


def write_shapenetpart(root: Path, seed: int, counts: Dict[str, int], npoints: int) -> None:
    atomic_write_text(root / "synsetoffset2category.txt", "".join(f"{c}\t{SYNSETS[c]}\n" for c in CATEGORIES))
    for category in CATEGORIES:
        (root / SYNSETS[category]).mkdir(parents=True, exist_ok=True)  # all 16 folders, as the release
    lists = {split: [] for split in counts}
    for category, kind in SHAPENET_DEMO.items():
        cat_id, parts = CATEGORIES.index(category), np.asarray(SEG_CLASSES[category])
        for split, per_class in counts.items():
            for i in range(per_class):
                rng = shape_rng(seed, "ShapeNetPart", split, cat_id, i)
                pts, nrm, part = make_shape(kind, npoints, rng, noise=0.003, occlusion=0.0)
                token = _token(seed, category, split, i)
                table = np.concatenate([pts, nrm, parts[part][:, None].astype(np.float32)], 1)
                atomic_write_text(root / SYNSETS[category] / f"{token}.txt", format_rows(table, "%.6f", " "))
                lists[split].append(f"shape_data/{SYNSETS[category]}/{token}")
    for split, entries in lists.items():
        order = np.random.default_rng([seed, SPLIT_IDS[split]]).permutation(len(entries))
        shuffled = [entries[i] for i in order]
        atomic_write_text(root / "train_test_split" / f"shuffled_{split}_file_list.json", json.dumps(shuffled))


# ---------------------------------------------------------------- entry point
def make_demo_data(
    root: PathLike,
    seed: int = 0,
    train_per_class: int = 40,
    test_per_class: int = 20,
    val_per_class: int = 8,
    npoints: int = 2048,
    datasets: Sequence[str] = ("ScanObjectNN", "ModelNet40", "ShapeNetPart"),
) -> Path:
    """Write the demo dataset under `root` (see the module docstring); returns root."""
    for name, value in [("train_per_class", train_per_class), ("test_per_class", test_per_class), ("npoints", npoints)]:
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if not isinstance(val_per_class, int) or val_per_class < 0:
        raise ValueError(f"val_per_class must be a non-negative int, got {val_per_class!r}")
    unknown = [d for d in datasets if d not in DATASET_IDS]
    if unknown:
        raise ValueError(f"datasets: unknown {unknown}; known: {list(DATASET_IDS)}")
    root = Path(root)
    counts = {"train": train_per_class, "test": test_per_class}
    if "ScanObjectNN" in datasets:
        write_scanobjectnn(root / "ScanObjectNN", seed, counts, npoints)
    if "ModelNet40" in datasets:
        write_modelnet40(root / "modelnet40_normal_resampled", seed, counts, npoints)
    if "ShapeNetPart" in datasets:
        write_shapenetpart(root / SHAPENET_FOLDER, seed, {**counts, "val": val_per_class}, npoints)
    info = {
        "seed": seed, "npoints": npoints, "per_class": {**counts, "val (ShapeNetPart)": val_per_class},
        "datasets": list(datasets), "ScanObjectNN classes": list(SCAN_DEMO), "ModelNet40 classes": list(MODELNET_DEMO),
        "ShapeNetPart categories": list(SHAPENET_DEMO),
    }  # fmt: skip
    atomic_write_text(root / "demo_info.json", json.dumps(info, indent=1) + "\n")
    return root


def demo_classes(dataset: str) -> List[str]:
    """The class (category) names a demo dataset fills."""
    return list({"ScanObjectNN": SCAN_DEMO, "ModelNet40": MODELNET_DEMO, "ShapeNetPart": SHAPENET_DEMO}[dataset])
