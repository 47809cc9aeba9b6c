"""ShapeNetPart on tiny generated files, every split and error case, and the real Cap shapes."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_broken_dataset_named, break_file
from pointclora.datasets import NUM_CATEGORIES, NUM_PARTS, SEG_CLASSES, ShapeNetPart
from pointclora.datasets.pointcloud_io import format_rows
from pointclora.datasets.shapenetpart import CATEGORIES, FOLDER, SYNSETS

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
USED = ["Airplane", "Mug"]
COUNTS = {"train": 3, "val": 1, "test": 2}


def shape_table(seed: int, category: str, n: int = 50) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = SEG_CLASSES[category]
    xyz = rng.normal(size=(n, 3)) * 2 + 1
    nrm = rng.normal(size=(n, 3))
    part = np.asarray(parts)[np.arange(n) % len(parts)]
    return np.concatenate([xyz, nrm, part[:, None]], 1)


def write_layout(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "synsetoffset2category.txt").write_text("".join(f"{c}\t{SYNSETS[c]}\n" for c in CATEGORIES))
    lists = {split: [] for split in COUNTS}
    seed = 0
    for category in USED:
        (folder / SYNSETS[category]).mkdir()
        for split, count in COUNTS.items():
            for i in range(count):
                token, seed = f"{split}{category.lower()}{i:02d}", seed + 1
                table = shape_table(seed, category)
                (folder / SYNSETS[category] / f"{token}.txt").write_text(format_rows(table, "%.6f", " "))
                lists[split].append(f"shape_data/{SYNSETS[category]}/{token}")
    (folder / "train_test_split").mkdir()
    for split, entries in lists.items():
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries[::-1]))
    return folder


@pytest.fixture
def root(tmp_path):
    write_layout(tmp_path / FOLDER)
    return tmp_path


def test_constants():
    assert NUM_CATEGORIES == 16 == len(SEG_CLASSES) and NUM_PARTS == 50
    assert sorted(p for parts in SEG_CLASSES.values() for p in parts) == list(range(50))
    assert SEG_CLASSES["Chair"] == [12, 13, 14, 15] and SYNSETS["Cap"] == "02954340"


@pytest.mark.parametrize("split,count", [("train", 3), ("val", 1), ("trainval", 4), ("test", 2)])
@pytest.mark.parametrize("use_normals", [False, True])
def test_splits_and_items(root, split, count, use_normals):
    ds = ShapeNetPart(root, split, npoints=128, use_normals=use_normals)
    assert len(ds) == count * len(USED)
    categories = [c for c, _ in ds.datapath]
    assert categories == sorted(categories, key=CATEGORIES.index)  # category order, as the public code
    item = ds[len(ds) - 1]
    assert item["points"].shape == (128, 6 if use_normals else 3) and item["points"].dtype == torch.float32
    assert item["category"].dtype == torch.int64 and int(item["category"]) == CATEGORIES.index("Mug")
    assert item["seg"].shape == (128,) and item["seg"].dtype == torch.int64
    assert set(item["seg"].tolist()) <= set(SEG_CLASSES["Mug"])
    assert item["points"][:, :3].norm(dim=1).max() <= 1 + 1e-5


def test_sampling_with_replacement_keeps_point_label_pairs(root):
    ds = ShapeNetPart(root, "test", npoints=300, use_normals=True, sample_seed=0)
    table = np.loadtxt(ds.datapath[0][1]).astype(np.float32)
    item = ds[0]
    normals, seg = table[:, 3:6], table[:, 6]
    for p, s in zip(item["points"][:20].numpy(), item["seg"][:20].numpy()):
        row = np.flatnonzero(np.all(np.isclose(normals, p[3:]), axis=1))[0]
        assert seg[row] == s
    assert len(set(map(tuple, item["points"].numpy().tolist()))) <= 50  # 300 draws out of 50 rows


def test_sample_seed_and_global_rng(root):
    a = ShapeNetPart(root, "test", npoints=64, sample_seed=1)
    assert torch.equal(a[0]["seg"], a[0]["seg"]) and not torch.equal(a[0]["points"], a[1]["points"])
    b = ShapeNetPart(root, "test", npoints=64)
    torch.manual_seed(5)
    first = b[0]["points"]
    torch.manual_seed(5)
    assert torch.equal(first, b[0]["points"])


def test_parent_or_folder_root(root):
    assert len(ShapeNetPart(root / FOLDER, "train", npoints=8)) == 6


MUG = f"{SYNSETS['Mug']}/trainmug00.txt"
SPLIT = "train_test_split/shuffled_train_file_list.json"
BREAKS = {  # kind -> (file under the dataset folder, its new text (None: deleted), error, message)
    "category_file": ("synsetoffset2category.txt", None, FileNotFoundError, "synsetoffset2category.txt"),
    "category_line": ("synsetoffset2category.txt", "Airplane 02691156 extra\n", ValueError, "expected '<Category> <synset>'"),
    "unknown_category": ("synsetoffset2category.txt", "Spaceship\t99999999\n", ValueError, "unknown category 'Spaceship'"),
    "split_file": (SPLIT, None, FileNotFoundError, "train split file not found"),
    "split_json": (SPLIT, "[\"shape_data/03797390/x\",", ValueError, "not valid JSON"),
    "split_entry": (SPLIT, json.dumps(["03797390_trainmug00"]), ValueError, "expected 'shape_data/<synset>/<token>'"),
    "unlisted_synset": (SPLIT, json.dumps(["shape_data/12345678/abc"]), ValueError, "synset '12345678' is not listed"),
    "shape_file": (MUG, None, FileNotFoundError, "Mug shape listed in the train split"),
    "non_numeric": (MUG, "0 0 0 0 0 1 36\n0 0 zero 0 0 1 36\n", ValueError, "row 2: .zero. is not a number"),
    "columns": (MUG, "0 0 0 0 0 1\n" * 5, ValueError, "expected 7 values per row, found 6"),
    "nan": (MUG, "0 0 0 0 0 1 36\nnan 0 0 0 0 1 36\n", ValueError, "non-finite"),
    "part_range": (MUG, "0 0 0 0 0 1 36\n1 0 0 0 0 1 12\n", ValueError, r"part ids must be integers in \[36, 37\] for Mug"),
}


@pytest.mark.parametrize("kind", list(BREAKS))
def test_broken_layout(root, kind):
    relative, text, error, match = BREAKS[kind]
    path = break_file(root / FOLDER, relative, text)
    assert_broken_dataset_named(lambda: ShapeNetPart(root, "train", npoints=8), path, error, match,
                                "shapenetcore_partanno_segmentation_benchmark_v0_normal.zip")


def test_missing_root_and_bad_arguments(tmp_path, root):
    with pytest.raises(FileNotFoundError, match="dataset root"):
        ShapeNetPart(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match="split='training'"):
        ShapeNetPart(root, "training")
    with pytest.raises(ValueError, match="npoints"):
        ShapeNetPart(root, "train", npoints=0)


@pytest.mark.skipif(not REAL.is_dir(), reason=f"real sample data folder {REAL} is absent")
def test_real_cap_shapes(tmp_path):
    folder = tmp_path / FOLDER
    (folder / "train_test_split").mkdir(parents=True)
    (folder / "synsetoffset2category.txt").write_text("".join(f"{c}\t{SYNSETS[c]}\n" for c in CATEGORIES))
    (folder / SYNSETS["Cap"]).mkdir()
    lists = {"train": [], "val": [], "test": []}
    for path in sorted((REAL / "shapenetpart_cap").glob("cap_*.txt")):
        (folder / SYNSETS["Cap"] / path.name).symlink_to(path)  # read in place, never copied
        lists[path.stem.split("_")[1]].append(f"shape_data/{SYNSETS['Cap']}/{path.stem}")
    for split, entries in lists.items():
        (folder / "train_test_split" / f"shuffled_{split}_file_list.json").write_text(json.dumps(entries))
    ds = ShapeNetPart(tmp_path, "test", npoints=2048, use_normals=True, sample_seed=0)
    assert len(ds) == 11 and len(ShapeNetPart(tmp_path, "val", npoints=16)) == 5
    for i in range(len(ds)):
        item = ds[i]
        assert int(item["category"]) == CATEGORIES.index("Cap") == 2
        assert set(item["seg"].tolist()) == {6, 7}
        assert item["points"].shape == (2048, 6) and torch.isfinite(item["points"]).all()
        assert 0.9 < item["points"][:, :3].norm(dim=1).max() <= 1 + 1e-5  # resampled from the unit sphere
        unit = (item["points"][:, 3:].norm(dim=1) - 1).abs() < 1e-2
        assert unit.float().mean() > 0.9  # the release has a few zero normals: passed through as stored
