"""Read what the visualiser shows: raw point files and dataset samples. Prediction files
(their format, `save_predictions`, `load_predictions`) live in `pointclora.io`."""
import os

import numpy as np

from ..datasets.pointcloud_folder import read_npy, read_txt
from ..io import check_exists, check_index, load_predictions, save_predictions, to_numpy, validate_predictions

__all__ = ["load_point_file", "load_predictions", "sample_from_dataset", "save_predictions",
           "validate_predictions"]
POINT_SUFFIXES = (".txt", ".npy", ".h5", ".hdf5", ".ply", ".pcd")


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
        check_index(index, data.shape[0], path)
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


def load_point_file(path: str, index: int = 0) -> dict:
    """Read one cloud -> {'points': (N, 3) float32, optional 'normals', 'colors', 'seg' (N,), 'label'}.

    ``.txt`` (comma or space separated), ``.npy`` ((N, C) or (S, N, C): sample
    ``index``), ``.h5`` (keys data / label / pid or seg: sample ``index``), ``.ply``, ``.pcd``.
    """
    check_exists(path, "file")
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".txt":
        return _split_columns(read_txt(path, dtype=np.float64), path)
    if suffix == ".npy":
        array = read_npy(path)
        if array.ndim == 3:
            check_index(index, array.shape[0], path)
            array = array[index]
        return _split_columns(array, path)
    if suffix in (".h5", ".hdf5"):
        return _read_h5(path, index)
    if suffix in (".ply", ".pcd"):
        return _read_open3d(path)
    raise ValueError(f"{path}: unsupported suffix {suffix!r}; expected one of {POINT_SUFFIXES}")


# ----------------------------------------------------------------------------- datasets
def sample_from_dataset(dataset, index: int) -> dict:
    """Item ``index`` of a built dataset -> {'points' (N, 3), 'normals'?, 'label'? | 'category'?, 'seg'?}."""
    check_index(index, len(dataset), type(dataset).__name__)
    item = dataset[index]
    if "points" not in item:
        raise KeyError(f"{type(dataset).__name__}[{index}]: expected a 'points' key, found {sorted(item)}")
    out = _split_columns(to_numpy(item["points"]), f"{type(dataset).__name__}[{index}]")
    out.pop("seg", None)  # a 7th column of a dataset item is a feature, never a label
    for key in ("label", "category"):
        if key in item:
            out[key] = int(to_numpy(item[key]).reshape(-1)[0])
    if "seg" in item:
        out["seg"] = to_numpy(item["seg"]).reshape(-1).astype(np.int64)
    return out
