"""`tools/predict.py`: a fine-tuned model on a user's own point files.

Weights (`--ckpts`, one or more files):
- a training checkpoint of tools/train.py (ckpt-best.pth, ckpt-last.pth): the whole model, adapters
  included; alone;
- a plain state dict of fine-tuned weights (any layout `pointclora.weights.load_weights` reads);
- an adapter file (adapter-best.safetensors: adapters + trained head) with the backbone it was
  trained on (a .pth given before it, or the config's `ckpts:`).
Every tensor of the model must come from one of them, else the run stops naming what is missing.

Each file is read (xyz; the columns after xyz are ignored) and prepared as the evaluation split of
the config's dataset prepares its shapes, then `Trainer.evaluate` runs on the batch, with votes
(`--vote N`: Point-MAE's scale-and-translate test-time augmentation) exactly as `tools/train.py
--test --vote N`.
"""
from __future__ import annotations

import types
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

import cuda_ext

from ..adapters import METHOD_CONFIGS, adapter_state_dict, load_adapter
from ..config import resolve_path
from ..datasets import DATASETS, NUM_PARTS, SEG_CLASSES, build_dataset
from ..datasets.common import pc_normalize
from ..datasets.modelnet40 import CLASSES
from ..datasets.pointcloud_folder import read_points
from ..factory import build_model_with_adapters, dataset_kwargs, splits
from ..io import atomic_path
from ..models import build_model, model_class
from ..sections import TrainConfig, section
from ..weights import load_weights, load_weights_only
from .checkpoint import REQUIRED_KEYS, load_model_state
from .distributed import DistInfo
from .tasks import build_task
from .trainer import Trainer


class PredictError(ValueError):
    """A file that cannot be predicted (unreadable, too few points): reported, the others go on."""


# ---------------------------------------------------------------- weights
def read_weight_files(paths: Sequence[str]) -> Dict[Path, object]:
    """{resolved path: what torch.load read} of every weights file among `paths` (not the adapter
    files): each is read once, for training_checkpoint and load_model alike."""
    return {resolve_path(p): load_weights_only(str(resolve_path(p))) for p in paths
            if Path(p).suffix != ".safetensors"}


def training_checkpoint(paths: Sequence[str], read: Optional[Mapping[Path, object]] = None) -> Optional[dict]:
    """The training checkpoint among `paths` (it must then be the only file), else None; `read`:
    read_weight_files(paths), when already read."""
    read = read_weight_files(paths) if read is None else read
    found = [obj for obj in read.values() if isinstance(obj, dict) and all(k in obj for k in REQUIRED_KEYS)]
    if found and len(paths) > 1:
        raise ValueError("--ckpts: a training checkpoint (ckpt-*.pth) holds the whole model; pass it alone")
    return found[0] if found else None


def _is_model_variant_method(cfg: Mapping) -> bool:
    return bool(cfg.get("adapter")) and cfg["adapter"].get("method") in METHOD_CONFIGS


def load_model(cfg: Mapping, paths: Sequence[str], train_ckpt: Optional[dict],
               read: Optional[Mapping[Path, object]] = None) -> torch.nn.Module:
    """The model of `cfg` with the weights of `paths` (see the module docstring), in eval mode; `read`:
    read_weight_files(paths), so that no file is read twice."""

    if train_ckpt is not None:
        model, _ = build_model_with_adapters(cfg, None)
        load_model_state(model, train_ckpt["model"], paths[0])
        return model.eval()
    adapters = [resolve_path(p) for p in paths if Path(p).suffix == ".safetensors"]
    weights = [resolve_path(p) for p in paths if Path(p).suffix != ".safetensors"]
    if len(adapters) > 1:
        raise ValueError(f"--ckpts: one adapter file at a time, got {len(adapters)}")
    if adapters and not weights:
        if not cfg.get("ckpts"):
            raise ValueError(f"--ckpts: adapter file {adapters[0]} needs the backbone it was trained on: pass "
                             "--ckpts backbone.pth adapter.safetensors (or set ckpts: in the config)")
        weights = [resolve_path(cfg["ckpts"])]
    if not adapters and _is_model_variant_method(cfg):  # DAPT / PointGST / IDPT fine-tuned weights hold
        model, _ = build_model_with_adapters(cfg, None)  # the variant's keys, not the backbone's
    else:
        model = build_model(cfg["model"])
    missing = set(model.state_dict())
    for path in weights:
        if not path.is_file():
            raise FileNotFoundError(f"--ckpts: no file '{path}'")
        absent, _ = load_weights(model, path, state=(read or {}).get(path))  # partial: together they cover it
        missing &= set(absent)
    if adapters:
        model = load_adapter(model, str(adapters[0]))  # a new model for DAPT / PointGST / IDPT
        missing -= set(adapter_state_dict(model))  # the file's tensors (load_adapter checked they are these)
    if missing:
        raise ValueError(f"--ckpts: {len(missing)} tensors of the model come from no file, e.g. {sorted(missing)[:4]}: "
                         "pass fine-tuned weights, a training checkpoint, or an adapter file with its backbone")
    return model.eval()


# ---------------------------------------------------------------- points
def fps(xyz: np.ndarray, npoints: int) -> np.ndarray:
    """(N, 3) -> indices (npoints,) of the furthest point sample from row 0 (the datasets' FPS)."""
    pts = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))[None]  # (1, N, 3)
    return cuda_ext.furthest_point_sample(pts, npoints)[0].long().numpy()


def prepare(xyz: np.ndarray, cfg_dataset: Mapping, min_points: int, path: str) -> np.ndarray:
    """xyz (N, 3) -> (npoints, 3) float32 as the evaluation split of cfg_dataset's NAME prepares a shape:
    ScanObjectNN: FPS, as stored (the release is already normalised); ModelNet40: FPS, then centre and
    scale; ModelNetFewShot: centre and scale the whole cloud, then FPS; ShapeNetPart: centre and scale,
    then `npoints` rows drawn with replacement from the fixed evaluation seed."""
    name, npoints = cfg_dataset.get("NAME"), int(cfg_dataset.get("npoints", 1024))
    n = xyz.shape[0]
    if name == "ShapeNetPart":
        if n < min_points:
            raise PredictError(f"{path}: has {n} points, fewer than the {min_points} of one patch (model.group_size)")
        seed = cfg_dataset.get("sample_seed") or 0
        choice = torch.randint(n, (npoints,), generator=torch.Generator().manual_seed(seed * 1_000_003)).numpy()
        return pc_normalize(xyz)[choice].astype(np.float32)
    if n < npoints:
        raise PredictError(f"{path}: has {n} points, fewer than dataset.npoints={npoints} (the evaluation samples "
                           "that many; lower it with --opts dataset.npoints=...)")
    if name == "ModelNetFewShot":
        xyz = pc_normalize(xyz)
    pts = xyz[fps(xyz, npoints)] if n > npoints else xyz
    return (pts if name in ("ScanObjectNN", "ModelNetFewShot") else pc_normalize(pts)).astype(np.float32)


def read_file(path: str, cfg: Mapping) -> Tuple[np.ndarray, np.ndarray]:
    """(all xyz (N, 3), prepared (npoints, 3)); PredictError naming the file when it cannot be used."""
    try:
        xyz = read_points(path)
    except (ValueError, FileNotFoundError, OSError, IndexError, KeyError) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        raise PredictError(msg if str(path) in msg else f"{path}: {msg}") from None
    return xyz, prepare(xyz, cfg["dataset"], int(cfg["model"].get("group_size", 32)), path)


# ---------------------------------------------------------------- names
def class_names(cfg: Mapping, num_classes: int) -> List[str]:
    """The dataset's class names (built from the config when its data is present), padded to the head."""
    names = None
    try:
        _, _, test_split = splits(cfg["dataset"])
        names = list(build_dataset(dataset_kwargs(cfg["dataset"]), test_split).classes)
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        cls = DATASETS.get(cfg["dataset"].get("NAME"))
        names = list(getattr(cls, "classes", None) or [])
        if not names and cfg["dataset"].get("NAME") == "ModelNet40":
            names = list(CLASSES)
    names = names[:num_classes]
    return names + [f"class_{i}" for i in range(len(names), num_classes)]


def build_task_for(cfg: Mapping, names: Optional[List[str]]):
    if model_class(cfg["model"]).TASK == "part_segmentation":
        stub = types.SimpleNamespace(NUM_PARTS=NUM_PARTS, seg_classes=SEG_CLASSES, classes=list(SEG_CLASSES))
    else:
        stub = types.SimpleNamespace(classes=names)
    return build_task(cfg["model"], stub)


# ---------------------------------------------------------------- running
def run_model(model, task, cfg: Mapping, items: List[dict], votes: int, device: torch.device) -> dict:
    """Trainer.evaluate on the prepared items (labels are placeholders: only predictions are kept)."""
    info = DistInfo(device=device)
    trainer = Trainer(model.to(device), task, None, None, info, cfg)
    batch = section(TrainConfig, cfg["train"]).eval_batch_size
    loader = torch.utils.data.DataLoader(items, batch_size=max(1, batch), shuffle=False)
    _, preds = trainer.evaluate(loader, votes=votes, collect=True)
    return preds


def spread_labels(xyz: np.ndarray, sampled: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Labels of every point of the file from the nearest sampled point: xyz (N, 3), sampled (M, 3)
    in the same (normalised) frame, labels (M,) -> (N,) int64."""
    src = torch.from_numpy(np.ascontiguousarray(xyz, dtype=np.float32))
    ref = torch.from_numpy(np.ascontiguousarray(sampled, dtype=np.float32))
    out = []
    for chunk in src.split(8192):  # bounded memory: (8192, M) distances at a time
        out.append(torch.cdist(chunk, ref).argmin(dim=1))
    return labels[torch.cat(out).numpy()]


def write_part_ply(path: Path, xyz: np.ndarray, parts: np.ndarray, colors: np.ndarray) -> Path:
    """Binary little-endian PLY: x y z float, part int, red green blue uchar per vertex."""
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("part", "<i4"),
                      ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    rows = np.empty(len(xyz), dtype=dtype)
    for i, c in enumerate("xyz"):
        rows[c] = xyz[:, i]
    rows["part"] = parts
    rgb = np.clip(np.round(colors * 255), 0, 255).astype(np.uint8)
    rows["red"], rows["green"], rows["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = ("ply\nformat binary_little_endian 1.0\ncomment pointclora tools/predict.py part labels\n"
              f"element vertex {len(xyz)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property int part\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with atomic_path(path) as tmp:
        tmp.write_bytes(header.encode("ascii") + rows.tobytes())
    return path
