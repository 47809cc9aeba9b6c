"""Read what the visualiser shows: raw point files and dataset samples. Prediction files
(their format, `save_predictions`, `load_predictions`) live in `pointclora.io`."""
import numpy as np

from ..datasets.point_files import read_point_file, split_columns
from ..io import check_index, load_predictions, save_predictions, to_numpy

__all__ = ["load_point_file", "load_predictions", "sample_from_dataset", "save_predictions"]


def load_point_file(path: str, index: int = 0) -> dict:
    """Read one cloud -> {'points': (N, 3) float32, optional 'normals', 'colors', 'seg' (N,), 'label'}.

    ``.txt`` (comma or space separated), ``.npy`` ((N, C) or (S, N, C): sample ``index``), ``.h5``
    (keys data / label / pid or seg: sample ``index``), ``.ply``, ``.pcd`` (ascii or binary, with
    their normals and colours): the datasets' reader, `pointclora.datasets.point_files`.
    """
    return read_point_file(path, index)


# ----------------------------------------------------------------------------- datasets
def sample_from_dataset(dataset, index: int) -> dict:
    """Item ``index`` of a built dataset -> {'points' (N, 3), 'normals'?, 'label'? | 'category'?, 'seg'?}."""
    check_index(index, len(dataset), type(dataset).__name__)
    item = dataset[index]
    if "points" not in item:
        raise KeyError(f"{type(dataset).__name__}[{index}]: expected a 'points' key, found {sorted(item)}")
    out = split_columns(to_numpy(item["points"]), f"{type(dataset).__name__}[{index}]")
    out.pop("seg", None)  # a 7th column of a dataset item is a feature, never a label
    for key in ("label", "category"):
        if key in item:
            out[key] = int(to_numpy(item[key]).reshape(-1)[0])
    if "seg" in item:
        out["seg"] = to_numpy(item["seg"]).reshape(-1).astype(np.int64)
    return out
