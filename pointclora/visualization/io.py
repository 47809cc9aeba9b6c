"""Read what the visualiser shows: raw point files, dataset samples and prediction files.

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

import numpy as np

POINT_SUFFIXES = (".txt", ".npy", ".h5", ".hdf5", ".ply", ".pcd")
_CLS_KEYS = ("label", "pred")
_SEG_KEYS = ("seg", "pred_seg")


def _check_exists(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}")


def _split_columns(array: np.ndarray, path: str) -> dict:
    """array: (N, C>=3) -> {'points', optional 'normals' / 'colors' / 'seg'} by the usual column layouts.

    3: xyz; 6: xyz + unit normals (ModelNet40) or xyz + rgb; 7: xyz + normals + part label (ShapeNetPart).
    """
    if array.ndim != 2 or array.shape[1] < 3 or array.shape[0] == 0:
        raise ValueError(f"{path}: expected a non-empty (N, C>=3) array of points, got shape {array.shape}")
    array = array.astype(np.float64)
    if not np.isfinite(array[:, :3]).all():
        raise ValueError(f"{path}: point coordinates contain NaN or inf")
    out = {"points": array[:, :3].astype(np.float32)}
    if array.shape[1] >= 6:
        extra = array[:, 3:6]
        if np.allclose(np.linalg.norm(extra, axis=1), 1.0, atol=1e-2):
            out["normals"] = extra.astype(np.float32)
        elif extra.min() >= 0:
            out["colors"] = (extra / (255.0 if extra.max() > 1.0 else 1.0)).astype(np.float32)
    if array.shape[1] == 7:
        out["seg"] = array[:, 6].astype(np.int64)
    return out


def _read_txt(path: str) -> np.ndarray:
    with open(path) as f:
        first = f.readline()
    try:
        return np.loadtxt(path, delimiter="," if "," in first else None, ndmin=2)
    except ValueError as err:
        raise ValueError(f"{path}: cannot parse as a numeric point table: {err}") from err


def _read_h5(path: str, index: int) -> dict:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: not a readable HDF5 file: {err}") from err
    with f:
        if "data" not in f:
            raise KeyError(f"{path}: expected a 'data' dataset (S, N, 3+), found keys {sorted(f.keys())}")
        data = f["data"]
        if data.ndim != 3:
            raise ValueError(f"{path}: 'data' expected shape (S, N, C), got {data.shape}")
        _check_index(index, data.shape[0], path)
        out = _split_columns(np.asarray(data[index]), path)
        if "label" in f:
            out["label"] = int(np.asarray(f["label"][index]).reshape(-1)[0])
        for key in ("pid", "seg"):
            if key in f:
                out["seg"] = np.asarray(f[key][index]).reshape(-1).astype(np.int64)
    return out


def _read_open3d(path: str) -> dict:
    try:
        import open3d as o3d
    except (ImportError, OSError) as err:
        raise ImportError(f"{path}: reading .ply/.pcd needs open3d ({err}); see the README set-up") from err
    cloud = o3d.io.read_point_cloud(path)
    if not cloud.has_points():
        raise ValueError(f"{path}: no points could be read (corrupt or not a point cloud)")
    out = {"points": np.asarray(cloud.points, dtype=np.float32)}
    if cloud.has_normals():
        out["normals"] = np.asarray(cloud.normals, dtype=np.float32)
    if cloud.has_colors():
        out["colors"] = np.asarray(cloud.colors, dtype=np.float32)
    return out


def _check_index(index: int, size: int, path: str) -> None:
    if not -size <= index < size:
        raise IndexError(f"index: {index} is out of range for {path} with {size} samples")


def load_point_file(path: str, index: int = 0) -> dict:
    """Read one cloud -> {'points': (N, 3) float32, optional 'normals', 'colors', 'seg' (N,), 'label'}.

    ``.txt`` (comma or space separated), ``.npy`` ((N, C) or (S, N, C): sample
    ``index``), ``.h5`` (keys data / label / pid or seg: sample ``index``), ``.ply``, ``.pcd``.
    """
    _check_exists(path, "file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".txt":
        return _split_columns(_read_txt(path), path)
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a readable .npy array: {err}") from err
        if array.ndim == 3:
            _check_index(index, array.shape[0], path)
            array = array[index]
        return _split_columns(array, path)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, index)
    if suffix in (".ply", ".pcd"):
        return _read_open3d(path)
    raise ValueError(f"{path}: unsupported suffix {suffix!r}; expected one of {POINT_SUFFIXES}")


# ----------------------------------------------------------------------------- predictions
def save_predictions(path: str, points, class_names, **arrays) -> str:
    """Write a prediction file (format in the module docstring); validates before writing.

    arrays: any of label, pred, logits, probs, seg, pred_seg, category, part_names
    (numpy arrays or torch tensors). Returns the path written.
    """
    data = {"points": _to_numpy(points).astype(np.float32), "class_names": np.asarray(list(class_names), dtype=str)}
    for key, value in arrays.items():
        if value is None:
            continue
        if key not in ("label", "pred", "logits", "probs", "seg", "pred_seg", "category", "part_names"):
            raise KeyError(f"save_predictions: unknown key {key!r}")
        data[key] = np.asarray(list(value), dtype=str) if key == "part_names" else _to_numpy(value)
    validate_predictions(data, path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez_compressed(path, **data)
    return path


def _to_numpy(value) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


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


def _fill_from_dataset(data: dict, dataset, path: str) -> None:
    """The engine's bare layout (label/pred only): points and names come from the run's test dataset."""
    count = len(data["pred"] if "pred" in data else data["pred_seg"])
    if dataset is None:
        raise KeyError(f"{path}: has no 'points'; pass the run's --config so they are read from its test split")
    if len(dataset) != count:
        raise ValueError(f"{path}: holds {count} samples but the dataset split has {len(dataset)}; "
                         "use the config and split the predictions were made on")
    data["points"] = np.stack([_to_numpy(dataset[i]["points"])[:, :3] for i in range(count)]).astype(np.float32)
    if "class_names" not in data:
        data["class_names"] = np.asarray(list(getattr(dataset, "classes", None) or []), dtype=str)


def load_predictions(path: str, dataset=None) -> dict:
    """Read and validate a prediction ``.npz`` -> dict of numpy arrays (names as lists of str).

    Also reads the bare layout {'label', 'pred'[, 'category']} (part seg when label is (S, N)):
    its points and class names are then taken from ``dataset`` (the split it was predicted on).
    """
    _check_exists(path, "predictions")
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
    data["class_names"] = [str(n) for n in data["class_names"]]
    if "part_names" in data:
        data["part_names"] = [str(n) for n in data["part_names"]]
    return data


# ----------------------------------------------------------------------------- datasets
def sample_from_dataset(dataset, index: int) -> dict:
    """Item ``index`` of a built dataset -> {'points' (N, 3), 'normals'?, 'label'? | 'category'?, 'seg'?}."""
    _check_index(index, len(dataset), type(dataset).__name__)
    item = dataset[index]
    if "points" not in item:
        raise KeyError(f"{type(dataset).__name__}[{index}]: expected a 'points' key, found {sorted(item)}")
    out = _split_columns(_to_numpy(item["points"]), f"{type(dataset).__name__}[{index}]")
    out.pop("seg", None)  # a 7th column of a dataset item is a feature, never a label
    for key in ("label", "category"):
        if key in item:
            out[key] = int(_to_numpy(item[key]).reshape(-1)[0])
    if "seg" in item:
        out["seg"] = _to_numpy(item["seg"]).reshape(-1).astype(np.int64)
    return out
