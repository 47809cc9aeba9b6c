"""Files the toolkit writes in one place and reads in another, below every package that uses them:
the one atomic-write helper (`atomic_path`) and the prediction file format.

Prediction file format (``.npz``, written by ``save_predictions``; ``tools/train.py
--test --save-predictions`` calls it), S samples of N points:

=============  ===========  ===============================================
key            shape        meaning
=============  ===========  ===============================================
points         (S, N, 3)    float32 input coordinates (after test transforms)
class_names    (C,)         str, names of the classes / object categories
label, pred    (S,)         int64 classification ground truth and prediction
logits, probs  (S, C)       float32, optional, classification scores
seg, pred_seg  (S, N)       int64 part labels and predicted part labels
category       (S,)         int64, optional, object category of each part-seg sample
part_names     (P,)         str, optional, names of the part labels
=============  ===========  ===============================================

A file holds a classification (label + pred) or a part segmentation (seg +
pred_seg) result, or both.
"""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import numpy as np

PathLike = Union[str, os.PathLike]

_CLS_KEYS = ("label", "pred")
_SEG_KEYS = ("seg", "pred_seg")


@contextmanager
def atomic_path(path: PathLike, fsync: bool = False) -> Iterator[Path]:
    """Yields a temporary path next to `path` (same folder, so the rename is atomic); when the block
    ends without error, moves it onto `path`. A crash (or Ctrl-C) half-way leaves the old file or
    none, never a truncated one; `fsync` flushes the bytes to disk before the rename (checkpoints)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_exists(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")


def check_index(index: int, size: int, path: str) -> None:
    if not -size <= index < size:
        raise IndexError(f"index: {index} is out of range for {path} with {size} samples")


def to_numpy(value) -> np.ndarray:
    """A numpy array of a tensor (detached, on the host) or of anything np.asarray takes."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


# ----------------------------------------------------------------------------- predictions
def save_predictions(path: str, points, class_names, **arrays) -> str:
    """Write a prediction file (format in the module docstring); validates before writing.

    arrays: any of label, pred, logits, probs, seg, pred_seg, category, part_names
    (numpy arrays or torch tensors). Returns the path written.
    """
    data = {"points": to_numpy(points).astype(np.float32), "class_names": np.asarray(list(class_names), dtype=str)}
    for key, value in arrays.items():
        if value is None:
            continue
        if key not in ("label", "pred", "logits", "probs", "seg", "pred_seg", "category", "part_names"):
            raise KeyError(f"save_predictions: unknown key {key!r}")
        data[key] = np.asarray(list(value), dtype=str) if key == "part_names" else to_numpy(value)
    validate_predictions(data, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def validate_predictions(data: dict, path: str) -> None:
    """Raise KeyError / ValueError naming the key when ``data`` breaks the prediction format."""
    for key in ("points", "class_names"):
        if key not in data:
            raise KeyError(f"{path}: missing key {key!r} (found {sorted(data)})")
    points = data["points"]
    if points.ndim != 3 or points.shape[2] != 3:
        raise ValueError(f"{path}: 'points' expected shape (S, N, 3), got {points.shape}")
    S, N, _ = points.shape
    has_cls = any(k in data for k in _CLS_KEYS)
    has_seg = any(k in data for k in _SEG_KEYS)
    if not (has_cls or has_seg):
        raise KeyError(f"{path}: expected 'label'+'pred' (classification) or 'seg'+'pred_seg' (part seg)")
    expected = {}
    if has_cls:
        expected.update(label=(S,), pred=(S,))
    if has_seg:
        expected.update(seg=(S, N), pred_seg=(S, N))
    for key in ("logits", "probs"):
        if key in data:
            expected[key] = (S, len(data["class_names"]))
    if "category" in data:
        expected["category"] = (S,)
    for key, shape in expected.items():
        if key not in data:
            raise KeyError(f"{path}: missing key {key!r}")
        if tuple(data[key].shape) != shape:
            raise ValueError(f"{path}: {key!r} expected shape {shape}, got {tuple(data[key].shape)}")
    _check_ids(data, path)


def _check_ids(data: dict, path: str) -> None:
    """Class ids must name one of 'class_names', part ids one of 'part_names' (when the file has them):
    an id outside would be drawn as an anonymous 'class 99'."""
    limits = {"label": "class_names", "pred": "class_names", "category": "class_names",
              "seg": "part_names", "pred_seg": "part_names"}
    for key, names_key in limits.items():
        if key not in data or names_key not in data or len(data[names_key]) == 0:
            continue
        ids = np.asarray(data[key])
        bad = (ids < 0) | (ids >= len(data[names_key]))
        if bad.any():
            where = np.argwhere(bad)[0].tolist()
            raise ValueError(f"{path}: {key!r} holds {int(ids[tuple(where)])} at index {where}, outside the "
                             f"{len(data[names_key])} names of {names_key!r} (ids 0..{len(data[names_key]) - 1})")


def check_same_dataset(data: dict, dataset, path: str) -> None:
    """A prediction file shown with --config must come from that config's split: same size, same classes."""
    names = [str(n) for n in (getattr(dataset, "classes", None) or [])]
    stored = [str(n) for n in data.get("class_names", [])]
    if names and stored and names != stored:
        raise ValueError(f"{path}: predictions over classes {stored[:4]}{'...' if len(stored) > 4 else ''} but the "
                         f"--config dataset {type(dataset).__name__} has classes {names[:4]}"
                         f"{'...' if len(names) > 4 else ''}; pass the config the predictions were made with")
    count = len(data["points"])
    if len(dataset) != count:
        raise ValueError(f"{path}: holds {count} samples but the --config dataset split has {len(dataset)}; "
                         "use the config and split the predictions were made on")


def _fill_from_dataset(data: dict, dataset, path: str) -> None:
    """The engine's bare layout (label/pred only): points and names come from the run's test dataset."""
    count = len(data["pred"] if "pred" in data else data["pred_seg"])
    if dataset is None:
        raise KeyError(f"{path}: has no 'points'; pass the run's --config so they are read from its test split")
    if len(dataset) != count:
        raise ValueError(f"{path}: holds {count} samples but the dataset split has {len(dataset)}; "
                         "use the config and split the predictions were made on")
    data["points"] = np.stack([to_numpy(dataset[i]["points"])[:, :3] for i in range(count)]).astype(np.float32)
    if "class_names" not in data:
        data["class_names"] = np.asarray(list(getattr(dataset, "classes", None) or []), dtype=str)


def load_predictions(path: str, dataset=None) -> dict:
    """Read and validate a prediction ``.npz`` -> dict of numpy arrays (names as lists of str).

    Also reads the bare layout {'label', 'pred'[, 'category']} (part seg when label is (S, N)):
    its points and class names are then taken from ``dataset`` (the split it was predicted on).
    """
    check_exists(path, "predictions")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {key: f[key] for key in f.files}
    except (ValueError, OSError) as err:
        raise ValueError(f"{path}: not a readable .npz prediction file: {err}") from err
    if "label" in data and data["label"].ndim == 2 and "seg" not in data:
        data["seg"], data["pred_seg"] = data.pop("label"), data.pop("pred")
    if "points" not in data and any(k in data for k in ("pred", "pred_seg")):
        _fill_from_dataset(data, dataset, path)
    validate_predictions(data, path)
    if dataset is not None:
        check_same_dataset(data, dataset, path)
    data["class_names"] = [str(n) for n in data["class_names"]]
    if "part_names" in data:
        data["part_names"] = [str(n) for n in data["part_names"]]
    return data
