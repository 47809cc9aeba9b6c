"""ScanObjectNN on tiny generated h5 files: every variant and split, layouts, every error."""
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from pointclora.datasets import ScanObjectNN
from pointclora.datasets.scanobjectnn import CLASSES, VARIANTS, variant_file

S, P = 6, 64  # objects, points per object


def write_h5(path: Path, data=None, label=None, mask=None, **extra):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    data = rng.uniform(-1, 1, size=(S, P, 3)).astype(np.float32) if data is None else data
    label = np.arange(S) % 15 if label is None else label
    with h5py.File(path, "w") as f:
        f["data"], f["label"] = data, label
        if mask is not None:
            f["mask"] = mask
        for key, value in extra.items():
            f[key] = value
    return data, label


@pytest.fixture
def root(tmp_path):
    for variant in VARIANTS:
        for split in ("train", "test"):
            write_h5(tmp_path / "h5_files" / variant_file(variant, split), mask=-np.ones((S, P), np.int32))
    return tmp_path


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("split", ["train", "test"])
def test_loads_each_variant_and_split(root, variant, split):
    ds = ScanObjectNN(root, variant, split, npoints=P)
    path = root / "h5_files" / variant_file(variant, split)
    with h5py.File(path, "r") as f:
        data, label = f["data"][()], f["label"][()]
    assert len(ds) == S and ds.path == path
    item = ds[3]
    assert item["points"].dtype == torch.float32 and item["points"].shape == (P, 3)
    assert item["label"].dtype == torch.int64 and item["label"].shape == () and item["label"] == label[3]
    assert np.array_equal(item["points"].numpy(), data[3])  # stored points, unchanged


def test_file_names_of_the_official_release():
    assert str(variant_file("OBJ_BG", "train")) == "main_split/training_objectdataset.h5"
    assert str(variant_file("OBJ_ONLY", "test")) == "main_split_nobg/test_objectdataset.h5"
    assert str(variant_file("PB_T50_RS", "train")) == "main_split/training_objectdataset_augmentedrot_scale75.h5"
    assert len(CLASSES) == 15 and CLASSES[0] == "bag" and CLASSES[14] == "toilet"


@pytest.mark.parametrize("sub", ["h5_files", "h5_files/main_split", "."])
def test_accepts_each_root_level(root, sub):
    ds = ScanObjectNN(root / sub if sub != "." else root, "OBJ_BG", "test", npoints=P)
    assert len(ds) == S


def test_demo_layout_root(tmp_path):
    write_h5(tmp_path / "ScanObjectNN" / "h5_files" / variant_file("OBJ_BG", "train"))
    assert len(ScanObjectNN(tmp_path, "OBJ_BG", "train", npoints=P)) == S


def test_label_column_vector_and_fps_subsampling(tmp_path):
    data, _ = write_h5(tmp_path / variant_file("OBJ_ONLY", "test"), label=(np.arange(S) % 15)[:, None])
    ds = ScanObjectNN(tmp_path, "OBJ_ONLY", "test", npoints=16)
    pts = ds[0]["points"]
    assert pts.shape == (16, 3)
    assert np.array_equal(pts[0].numpy(), data[0, 0])  # FPS starts at point 0
    assert all(any(np.array_equal(p, q) for q in data[0]) for p in pts.numpy())


def test_transform_is_applied(root):
    ds = ScanObjectNN(root, "OBJ_BG", "train", npoints=P, transform=lambda p: p * 0)
    assert ds[0]["points"].abs().sum() == 0


def corrupt(tmp_path, kind):
    path = tmp_path / variant_file("OBJ_BG", "train")
    good = np.zeros((S, P, 3), np.float32)
    if kind == "no_label":
        path.parent.mkdir(parents=True)
        with h5py.File(path, "w") as f:
            f["data"] = good
    elif kind == "shape":
        write_h5(path, data=np.zeros((S, P, 4), np.float32))
    elif kind == "label_len":
        write_h5(path, label=np.zeros(S + 1, np.int64))
    elif kind == "float_label":
        write_h5(path, label=np.zeros(S, np.float32))
    elif kind == "label_range":
        write_h5(path, label=np.full(S, 15))
    elif kind == "mask":
        write_h5(path, mask=np.zeros((S, P + 1)))
    elif kind == "nan":
        bad = good.copy()
        bad[2, 5, 1] = np.nan
        write_h5(path, data=bad)
    elif kind == "truncated":
        write_h5(path)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "garbage":
        path.parent.mkdir(parents=True)
        path.write_bytes(b"not an hdf5 file at all")
    return path


@pytest.mark.parametrize(
    "kind,error,match",
    [
        ("no_label", KeyError, "h5 key 'label' not found"),
        ("shape", ValueError, r"'data' must have shape \(S, P, 3\)"),
        ("label_len", ValueError, "'label' must have shape"),
        ("float_label", ValueError, "must be integer"),
        ("label_range", ValueError, r"labels must lie in \[0, 15\)"),
        ("mask", ValueError, "'mask' must have shape"),
        ("nan", ValueError, r"non-finite value.*\[2, 5, 1\]"),
        ("truncated", ValueError, "truncated or corrupt"),
        ("garbage", ValueError, "truncated or corrupt"),
    ],
)
def test_corrupt_files_name_the_file(tmp_path, kind, error, match):
    path = corrupt(tmp_path, kind)
    with pytest.raises(error, match=match) as info:
        ScanObjectNN(tmp_path, "OBJ_BG", "train", npoints=P)
    assert str(path) in str(info.value) and "hkust-vgd.github.io/scanobjectnn" in str(info.value)


def test_missing_root_and_file(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="dataset root") as info:
        ScanObjectNN(tmp_path / "nowhere", "OBJ_BG", "train")
    assert "h5_files/main_split" in str(info.value)
    (root / "h5_files" / variant_file("PB_T50_RS", "test")).unlink()
    with pytest.raises(FileNotFoundError, match="test_objectdataset_augmentedrot_scale75.h5"):
        ScanObjectNN(root, "PB_T50_RS", "test", npoints=P)


@pytest.mark.parametrize(
    "kwargs,match",
    [({"variant": "OBJ"}, "variant='OBJ'"), ({"split": "val"}, "split='val'"), ({"npoints": 0}, "npoints"),
     ({"npoints": P + 1}, "fewer than npoints")],
)  # fmt: skip
def test_bad_arguments(root, kwargs, match):
    args = {"variant": "OBJ_BG", "split": "train", "npoints": P, **kwargs}
    with pytest.raises(ValueError, match=match):
        ScanObjectNN(root, **args)
