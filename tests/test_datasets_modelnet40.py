"""ModelNet40 on tiny generated files in each format (txt, dat, h5), every error case,
the restricted unpickler, and the OFF mesh sampler on synthetic and real meshes."""
import os
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import cuda_ext
from conftest import assert_broken_dataset_named, break_file
from pointclora.datasets import ModelNet40
from pointclora.datasets.mesh_sampling import meshes_to_modelnet, off_to_points, read_off, sample_mesh
from pointclora.datasets.pointcloud_io import format_rows, safe_pickle_load

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
NAMES = ["airplane", "bathtub", "bed"]
N, PER_SPLIT = 96, {"train": 3, "test": 2}  # points per shape, shapes per class and split


def shape_points(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)) * [3.0, 1.0, 2.0] + 5.0  # off-centre, not unit: loader normalises
    nrm = rng.normal(size=(n, 3))
    return np.concatenate([xyz, nrm / np.linalg.norm(nrm, axis=1, keepdims=True)], 1).astype(np.float32)


def write_text_layout(folder: Path, n: int = N) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "modelnet40_shape_names.txt").write_text("".join(f"{c}\n" for c in NAMES))
    number = 0
    for split, count in PER_SPLIT.items():
        ids = []
        for cls in NAMES:
            for _ in range(count):
                number += 1
                shape_id = f"{cls}_{number:04d}"
                (folder / cls).mkdir(exist_ok=True)
                (folder / cls / f"{shape_id}.txt").write_text(format_rows(shape_points(number, n), "%.6f", ","))
                ids.append(shape_id)
        (folder / f"modelnet40_{split}.txt").write_text("\n".join(ids) + "\n")
    return folder


@pytest.fixture
def root(tmp_path):
    write_text_layout(tmp_path / "modelnet40_normal_resampled")
    return tmp_path


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("use_normals", [False, True])
def test_txt_items(root, split, use_normals):
    ds = ModelNet40(root, split, npoints=32, use_normals=use_normals, format="txt")
    assert len(ds) == PER_SPLIT[split] * len(NAMES) and ds.classes == NAMES
    item = ds[len(ds) - 1]
    assert item["points"].shape == (32, 6 if use_normals else 3) and item["points"].dtype == torch.float32
    assert item["label"].dtype == torch.int64 and item["label"].shape == () and int(item["label"]) == 2
    xyz = item["points"][:, :3]
    assert torch.allclose(xyz.norm(dim=1).max(), torch.tensor(1.0)) and xyz.mean(0).abs().max() < 1e-5


def test_txt_item_is_the_fps_sample(root):
    ds = ModelNet40(root, "train", npoints=16, use_normals=True, format="txt")
    raw = torch.from_numpy(np.loadtxt(ds.files[0], delimiter=",", dtype=np.float32))
    idx = cuda_ext.furthest_point_sample(raw[None, :, :3].contiguous(), 16)[0].long()
    assert torch.allclose(ds[0]["points"][:, 3:], raw[idx, 3:])


def test_dat_cache_is_built_once_and_matches_txt(root):
    folder = root / "modelnet40_normal_resampled"
    ds = ModelNet40(root, "test", npoints=24, use_normals=True, format="dat", cache_points=64)
    cache = folder / "modelnet40_test_64pts_fps.dat"
    assert cache.is_file() and not list(folder.glob(".*.tmp"))  # atomic: no temporary left
    points, labels = safe_pickle_load(cache, "ModelNet40")
    assert len(points) == 6 and points[0].shape == (64, 6) and points[0].dtype == np.float32
    assert labels[0].dtype == np.int32 and labels[0].shape == (1,)
    txt = ModelNet40(root, "test", npoints=24, use_normals=True, format="txt")
    for i in range(len(ds)):
        assert torch.equal(ds[i]["points"], txt[i]["points"]) and ds[i]["label"] == txt[i]["label"]
    mtime = cache.stat().st_mtime_ns
    auto = ModelNet40(root, "test", npoints=24, format="auto", cache_points=64)
    assert auto.format == "dat" and cache.stat().st_mtime_ns == mtime


def test_auto_picks_txt_without_cache_and_parent_or_folder_root(root):
    assert ModelNet40(root, "train", npoints=8).format == "txt"
    assert ModelNet40(root / "modelnet40_normal_resampled", "train", npoints=8).format == "txt"


def test_reads_a_point_mae_style_pickle(root):
    """A cache pickled with protocol 2/3 (as the public .dat files) loads."""
    folder = root / "modelnet40_normal_resampled"
    pts = [shape_points(i, 40) for i in range(6)]
    labels = [np.array([i % 3], dtype=np.int32) for i in range(6)]
    with open(folder / "modelnet40_test_40pts_fps.dat", "wb") as f:
        pickle.dump([pts, labels], f, protocol=2)
    ds = ModelNet40(root, "test", npoints=40, format="dat", cache_points=40)
    assert [int(ds[i]["label"]) for i in range(6)] == [0, 1, 2, 0, 1, 2]


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@pytest.mark.parametrize(
    "payload,match",
    [
        ("evil", "refusing to load global 'posix.mkdir'"),
        ("truncated", "truncated"),
        ("wrong_structure", "expected a pickled"),
        ("wrong_count", "holds 1 shapes"),
        ("wrong_shape", r"expected a \(>= 8, 6\) array"),
        ("nan", "non-finite"),
    ],
)
def test_bad_dat_files(root, tmp_path, payload, match):
    cache = root / "modelnet40_normal_resampled" / "modelnet40_test_8pts_fps.dat"
    marker = tmp_path / "pwned"
    good = [[shape_points(i, 8) for i in range(6)], [np.array([0], np.int32)] * 6]
    if payload == "nan":
        good[0][3][2, 1] = np.nan
    objects = {
        "evil": [[Evil(str(marker))], [0]], "wrong_structure": {"points": 1}, "wrong_count": [good[0][:1], [0]],
        "wrong_shape": [[np.zeros((8, 3), np.float32)] * 6, [0] * 6], "nan": good, "truncated": good,
    }  # fmt: skip
    data = pickle.dumps(objects[payload], protocol=4)
    cache.write_bytes(data[: len(data) // 2] if payload == "truncated" else data)
    with pytest.raises(ValueError, match=match) as info:
        ModelNet40(root, "test", npoints=8, format="dat", cache_points=8)
    assert str(cache) in str(info.value)
    assert not marker.exists()  # the pickle's code never ran


def write_h5_layout(folder: Path, normals: bool = True):
    folder.mkdir(parents=True)
    for split, parts in (("train", 2), ("test", 1)):
        for k in range(parts):
            with h5py.File(folder / f"ply_data_{split}{k}.h5", "w") as f:
                f["data"] = np.stack([shape_points(10 * k + i)[:, :3] for i in range(4)])
                f["label"] = np.array([[k], [1], [2], [0]], dtype=np.uint8)
                if normals:
                    f["normal"] = np.stack([shape_points(10 * k + i)[:, 3:] for i in range(4)])


def test_h5_format(tmp_path):
    write_h5_layout(tmp_path / "modelnet40_ply_hdf5_2048")
    ds = ModelNet40(tmp_path, "train", npoints=32, use_normals=True, format="auto")
    assert ds.format == "h5" and len(ds) == 8 and ds.classes[0] == "airplane" and len(ds.classes) == 40
    assert [int(ds[i]["label"]) for i in (0, 4)] == [0, 1]
    assert ds[0]["points"].shape == (32, 6)
    expected = shape_points(0)[:32, 3:]
    assert np.allclose(ds[0]["points"][:, 3:].numpy(), expected)  # first npoints rows, normals kept


def test_h5_missing_normal_key(tmp_path):
    write_h5_layout(tmp_path / "modelnet40_ply_hdf5_2048", normals=False)
    assert ModelNet40(tmp_path, "test", npoints=8, format="h5")[0]["points"].shape == (8, 3)
    with pytest.raises(KeyError, match="h5 key 'normal' not found"):
        ModelNet40(tmp_path, "test", npoints=8, use_normals=True, format="h5")


SHAPE = "bathtub/bathtub_0004.txt"
BREAKS = {  # kind -> (file under modelnet40_normal_resampled/, its new text (None: deleted), error, message)
    "split_file": ("modelnet40_train.txt", None, FileNotFoundError, "train split file not found"),
    "shape_file": (SHAPE, None, FileNotFoundError, "point file not found"),
    "non_numeric": (SHAPE, "0.1,0.2,0.3,0,0,1\n0.1,abc,0.3,0,0,1\n", ValueError, "row 2: 'abc' is not a number"),
    "columns": (SHAPE, "0.1,0.2,0.3\n" * 20, ValueError, "expected 6 values per row, found 3"),
    "nan": (SHAPE, "0.1,0.2,0.3,0,0,1\n" * 20 + "nan,0.2,0.3,0,0,1\n", ValueError, "row 21: non-finite"),
    "empty": (SHAPE, "", ValueError, "empty point file"),
    "few_points": (SHAPE, "0.1,0.2,0.3,0,0,1\n" * 3, ValueError, "fewer than npoints=8"),
    "unknown_class": ("modelnet40_train.txt", "chair_0001\n", ValueError, "class 'chair' not in modelnet40_shape_names.txt"),
}


@pytest.mark.parametrize("kind", list(BREAKS))
def test_broken_text_layout(root, kind):
    relative, text, error, match = BREAKS[kind]
    path = break_file(root / "modelnet40_normal_resampled", relative, text)
    assert_broken_dataset_named(lambda: ModelNet40(root, "train", npoints=8, format="txt"), path, error, match,
                                "modelnet40_normal_resampled.zip")


def test_missing_root_and_bad_arguments(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="dataset root"):
        ModelNet40(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="modelnet40_shape_names.txt or"):
        ModelNet40(tmp_path / "modelnet40_normal_resampled" / "airplane", "train")
    with pytest.raises(FileNotFoundError, match="ply_data_train"):
        ModelNet40(root, "train", format="h5")
    for kwargs, match in [({"split": "val"}, "split='val'"), ({"format": "npy"}, "format='npy'"), ({"npoints": -1}, "npoints")]:
        with pytest.raises(ValueError, match=match):
            ModelNet40(root, **{"split": "train", **kwargs})


# ------------------------------------------------------------------ OFF meshes
CUBE = "8 12 0\n" + "".join(f"{x} {y} {z}\n" for x in (0, 2) for y in (0, 2) for z in (0, 2)) + "".join(
    f"3 {a} {b} {c}\n" for a, b, c in [(0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5), (0, 4, 5), (0, 5, 1),
                                        (2, 3, 7), (2, 7, 6), (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3)]
)  # fmt: skip


@pytest.mark.parametrize("header", ["OFF\n", "OFF"])
def test_off_both_header_styles(tmp_path, header):
    path = tmp_path / "cube.off"
    path.write_text(header + CUBE)
    vertices, triangles = read_off(path)
    assert vertices.shape == (8, 3) and triangles.shape == (12, 3)
    pts = off_to_points(path, 500, seed=0)
    assert pts.shape == (500, 6) and pts.dtype == np.float32
    on_face = np.isclose(pts[:, :3], 0).any(1) | np.isclose(pts[:, :3], 2).any(1)
    assert on_face.all() and np.allclose(np.abs(pts[:, 3:]).sum(1), 1)  # axis-aligned unit normals


def test_sample_mesh_is_area_weighted_and_skips_degenerate():
    vertices = np.array([[0, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 0], [3, 0, 0], [0, 3, 0], [5, 5, 5]], float)
    triangles = np.array([[0, 1, 2], [3, 4, 5], [6, 6, 6]])  # areas 0.5 (at z=1), 4.5 (z=0), 0
    pts, nrm = sample_mesh(vertices, triangles, 20000, np.random.default_rng(0))
    assert abs((pts[:, 2] == 1).mean() - 0.1) < 0.01
    assert not np.isclose(pts, 5).all(1).any() and np.allclose(np.abs(nrm[:, 2]), 1)


@pytest.mark.parametrize(
    "text,match",
    [("PLY\n", "not an OFF file"), ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "file is shorter"),
     ("OFF\n3 1 0\n0 0 0\n1 0 x\n0 1 0\n3 0 1 2\n", "bad OFF header or row"),
     ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "out of range"),
     ("OFF\n3 1 0\n0 0 0\n0 0 0\n0 0 0\n3 0 1 2\n", "zero total surface area")],
)  # fmt: skip
def test_bad_off_files(tmp_path, text, match):
    path = tmp_path / "bad.off"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        off_to_points(path, 10)
    assert str(path) in str(info.value)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real sample data folder {REAL} is absent")
def test_real_meshes_through_sampler_and_loader(tmp_path):
    meshes = {split: [] for split in ("train", "test")}
    for path in sorted(REAL.glob("modelnet/*/*/*/*.off")):
        meshes[path.parent.name].append((path.parent.parent.name, path))
    assert sum(len(v) for v in meshes.values()) == 8
    out = meshes_to_modelnet(meshes, tmp_path / "modelnet40_normal_resampled", npoints=1500, seed=0)
    assert (out / "desk" / "desk_0201.txt").is_file()
    ds = ModelNet40(tmp_path, "test", npoints=64, use_normals=True, format="txt")
    assert len(ds) == 4
    names = [ds.classes[int(ds[i]["label"])] for i in range(4)]
    assert sorted(names) == ["desk", "monitor", "sofa", "table"]
    for i in range(4):
        pts = ds[i]["points"]
        assert pts.shape == (64, 6) and torch.isfinite(pts).all()
        assert torch.allclose(pts[:, 3:].norm(dim=1), torch.ones(64), atol=1e-4)
        assert pts[:, :3].norm(dim=1).max() <= 1.0 + 1e-5
