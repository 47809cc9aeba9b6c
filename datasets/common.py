"""Shared helpers of the loaders: where the data is published, error messages,
normalisation and array checks.

Every error a loader raises names the file (or folder, or key), says what was
expected, and ends with a hint on where the official data is published and
which folder layout the loader reads (the same text as DATASET.md).
"""
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, Path]

# Where each public dataset is published and the layout our loaders read.
SOURCES = {
    "ScanObjectNN": (
        "Download h5_files.zip from the official ScanObjectNN site https://hkust-vgd.github.io/scanobjectnn/ "
        "(terms-of-use form) and pass root=<folder holding h5_files/> (or the h5_files folder itself): "
        "h5_files/main_split/{training,test}_objectdataset.h5 (OBJ_BG), "
        "h5_files/main_split_nobg/{training,test}_objectdataset.h5 (OBJ_ONLY), "
        "h5_files/main_split/{training,test}_objectdataset_augmentedrot_scale75.h5 (PB_T50_RS). See DATASET.md."
    ),
    "ModelNet40": (
        "Download modelnet40_normal_resampled.zip (Point-BERT's DATASET.md links it; originally "
        "https://shapenet.cs.stanford.edu/media/modelnet40_normal_resampled.zip) and pass "
        "root=<folder holding modelnet40_normal_resampled/> (or that folder itself): "
        "modelnet40_shape_names.txt, modelnet40_{train,test}.txt, <class>/<class>_NNNN.txt with rows "
        "'x,y,z,nx,ny,nz', optional modelnet40_{train,test}_8192pts_fps.dat; or the PointNet h5 release "
        "modelnet40_ply_hdf5_2048/ply_data_{train,test}N.h5. See DATASET.md."
    ),
    "ModelNetFewShot": (
        "Use the public few-shot folds (linked from Point-BERT's DATASET.md, 'ModelNet Few-shot Dataset') or "
        "write them with tools/make_fewshot.py from a ModelNet40 copy, and pass root=<folder holding "
        "ModelNetFewshot/> (or that folder itself): {way}way_{shot}shot/{fold}.pkl, each a pickle {'train': [...], 'test': [...]} of "
        "(points (N, 6) float32, label in 0..way-1, ModelNet40 label). See DATASET.md."
    ),
    "ShapeNetPart": (
        "Download https://shapenet.cs.stanford.edu/media/shapenetcore_partanno_segmentation_benchmark_v0_normal.zip "
        "and pass root=<folder holding shapenetcore_partanno_segmentation_benchmark_v0_normal/> (or that folder "
        "itself): synsetoffset2category.txt, <synset>/<token>.txt with rows 'x y z nx ny nz part', "
        "train_test_split/shuffled_{train,val,test}_file_list.json. See DATASET.md."
    ),
}


def hint(dataset: str) -> str:
    """The 'where to get it, which layout' sentence appended to every error."""
    return f" [{dataset}] {SOURCES[dataset]}"


class DataError(ValueError):
    """A data file is unreadable or malformed; the message names the file (and the 1-based row).

    The engine ends a run on it with the message alone (exit status 2) or, with
    `dataset.on_bad_file: skip`, skips the file. A DataLoader worker re-raises it in the main
    process as `DataError(<worker traceback text>)`: the original message is recovered here.
    """

    _WORKER = "in DataLoader worker process"

    def __init__(self, message: str = "", path: Optional[PathLike] = None):
        if self._WORKER in message:  # rebuilt by torch from a worker: its last line is 'DataError: <message>'
            last = message.rstrip().splitlines()[-1]
            message = last.split("DataError: ", 1)[-1]
        super().__init__(message)
        self.path = None if path is None else str(path)

    def __reduce__(self):
        return type(self), (str(self), self.path)


def missing(path: PathLike, what: str, dataset: str) -> FileNotFoundError:
    return FileNotFoundError(f"{path}: {what} not found.{hint(dataset)}")


def malformed(path: PathLike, what: str, dataset: str) -> DataError:
    return DataError(f"{path}: {what}.{hint(dataset)}", path)


def require_file(path: Path, what: str, dataset: str) -> Path:
    if not path.is_file():
        raise missing(path, what, dataset)
    return path


def find_root(root: PathLike, folder: str, marker: str, dataset: str) -> Path:
    """Accept either the dataset folder itself (holding `marker`) or its parent.

    Returns the folder that holds `marker`; raises FileNotFoundError naming both
    places it looked.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise missing(root, f"dataset root (expected a folder holding {folder}/)", dataset)
    for candidate in (root, root / folder):
        if (candidate / marker).exists():
            return candidate
    raise FileNotFoundError(f"{marker} not found: looked for {root / marker} and {root / folder / marker}.{hint(dataset)}")


def check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}")
    return value


def check_positive(name: str, value: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def check_split_and_size(split: str, splits: Sequence[str], npoints: int) -> Tuple[str, int]:
    """What every loader's constructor checks first: (split, one of `splits`; npoints, a positive int)."""
    return check_choice("split", split, list(splits)), check_positive("npoints", npoints)


def check_finite(points: np.ndarray, path: PathLike, dataset: str, index: Optional[int] = None) -> None:
    """Raise if `points` holds NaN or inf, naming the file (and sample)."""
    bad = ~np.isfinite(points)
    if bad.any():
        where = np.argwhere(bad)[0].tolist()
        sample = "" if index is None else f" sample {index}"
        raise malformed(path, f"{sample} non-finite value (NaN/inf) at index {where}; the file is corrupt", dataset)


def check_labels(labels: np.ndarray, num_classes: int, path: PathLike, dataset: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise malformed(
            path, f"labels must lie in [0, {num_classes}), found [{labels.min()}, {labels.max()}]", dataset
        )


def pc_normalize(xyz: np.ndarray) -> np.ndarray:
    """xyz: (N, 3) -> (N, 3) centred on the centroid and scaled into the unit sphere.

    The public recipes' `pc_normalize` (PointNet++, Point-MAE): centroid, then
    divide by the largest distance to it.
    """
    centred = xyz - xyz.mean(axis=0, keepdims=True)
    radius = np.sqrt((centred ** 2).sum(axis=1)).max()
    return centred / radius if radius > 0 else centred


def read_lines(path: Path, what: str, dataset: str) -> list:
    """Non-empty stripped lines of a text file (a split or names file)."""
    require_file(path, what, dataset)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]
