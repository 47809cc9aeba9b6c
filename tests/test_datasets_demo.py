"""The demo generator (deterministic, fast, read by the real loaders), build_dataset,
and DataLoaders with 2 workers over every dataset."""
import filecmp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pointclora.datasets import ModelNet40, ScanObjectNN, ShapeNetPart, build_dataset
from pointclora.datasets.demo import demo_classes, make_demo_data
from pointclora.datasets.demo_shapes import BUILDERS, make_shape

REPO = Path(__file__).resolve().parents[1]
SMALL = dict(train_per_class=2, test_per_class=1, val_per_class=1, npoints=128)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    start = time.perf_counter()
    make_demo_data(root, seed=0, **SMALL)
    return root, time.perf_counter() - start


def test_generation_is_fast_and_deterministic(demo, tmp_path):
    root, seconds = demo
    assert seconds < 10
    make_demo_data(tmp_path, seed=0, **SMALL)
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    assert len(files) > 50 and files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(root, tmp_path, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors


def test_another_seed_gives_other_shapes(demo, tmp_path):
    make_demo_data(tmp_path, seed=1, datasets=["ScanObjectNN"], **SMALL)
    a = ScanObjectNN(demo[0], "OBJ_BG", "test", npoints=128)
    b = ScanObjectNN(tmp_path, "OBJ_BG", "test", npoints=128)
    assert not torch.equal(a[0]["points"], b[0]["points"]) and torch.equal(a[0]["label"], b[0]["label"])


@pytest.mark.parametrize("variant", ["OBJ_BG", "OBJ_ONLY", "PB_T50_RS"])
def test_scanobjectnn_variants(demo, variant):
    ds = ScanObjectNN(demo[0], variant, "train", npoints=128)
    names = demo_classes("ScanObjectNN")
    assert len(ds) == 2 * len(names)
    assert sorted({ds.classes[int(ds[i]["label"])] for i in range(len(ds))}) == sorted(names)
    assert (ds.mask == -1).any() == (variant != "OBJ_ONLY")  # background points only with BG
    assert np.abs(ds.points).max() <= 1.0 + 1e-5


def test_variants_differ_for_the_same_object(demo):
    pts = {v: ScanObjectNN(demo[0], v, "test", npoints=128)[0]["points"] for v in ("OBJ_BG", "OBJ_ONLY", "PB_T50_RS")}
    assert not torch.equal(pts["OBJ_BG"], pts["OBJ_ONLY"]) and not torch.equal(pts["OBJ_BG"], pts["PB_T50_RS"])


def test_modelnet40_and_shapenetpart(demo):
    mn = ModelNet40(demo[0], "test", npoints=64, use_normals=True)
    assert mn.format == "txt" and len(mn) == len(demo_classes("ModelNet40")) and len(mn.classes) == 40
    assert {mn.classes[int(mn[i]["label"])] for i in range(len(mn))} == set(demo_classes("ModelNet40"))
    sp = ShapeNetPart(demo[0], "trainval", npoints=64)
    assert len(sp) == 3 * len(demo_classes("ShapeNetPart"))
    for i in range(len(sp)):
        item = sp[i]
        category = sp.classes[int(item["category"])]
        assert set(item["seg"].tolist()) <= set(sp.seg_classes[category])


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_every_shape_kind_has_its_parts(kind):
    pts, nrm, part = make_shape(kind, 1024, np.random.default_rng(0), occlusion=0.0)
    assert pts.shape == (1024, 3) and np.allclose(np.linalg.norm(nrm, axis=1), 1, atol=1e-5)
    assert np.linalg.norm(pts, axis=1).max() < 1.05
    assert part.min() == 0 and len(np.unique(part)) == part.max() + 1  # every part id present


@pytest.mark.parametrize("kwargs,match", [({"npoints": 0}, "npoints"), ({"val_per_class": -1}, "val_per_class"),
                                          ({"datasets": ["S3DIS"]}, "unknown")])  # fmt: skip
def test_bad_generator_arguments(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_demo_data(tmp_path, **kwargs)


def test_cli(tmp_path):
    out = tmp_path / "cli"
    cmd = [sys.executable, str(REPO / "tools/make_demo_data.py"), "--out", str(out), "--seed", "0", "--train-per-class", "1",
           "--test-per-class", "1", "--val-per-class", "0", "--npoints", "32", "--datasets", "ScanObjectNN"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "wrote ScanObjectNN demo data" in result.stdout
    assert (out / "ScanObjectNN/h5_files/main_split_nobg/test_objectdataset.h5").is_file()


# ------------------------------------------------------------------ build_dataset
def configs(root):
    return {
        "ScanObjectNN": {"NAME": "ScanObjectNN", "root": str(root), "variant": "PB_T50_RS", "npoints": 96,
                         "train_transforms": ["fps_sample", "scale_translate"]},
        "ModelNet40": {"NAME": "ModelNet40", "root": str(root), "npoints": 32, "fps_pool": 40,
                       "train_transforms": ["fps_sample", "scale_translate"]},
        "ShapeNetPart": {"NAME": "ShapeNetPart", "root": str(root), "npoints": 64, "use_normals": True,
                         "train_transforms": ["dropout", "jitter", "rotate_up"]},
    }  # fmt: skip


@pytest.mark.parametrize("name", ["ScanObjectNN", "ModelNet40", "ShapeNetPart"])
def test_build_dataset_applies_train_transforms_only_to_train(demo, name):
    cfg = configs(demo[0])[name]
    train, test = build_dataset(cfg, "train"), build_dataset(cfg, "test")
    assert type(train).__name__ == name and train.transform is not None and test.transform is None
    npoints = cfg["npoints"]
    assert train[0]["points"].shape[0] == npoints == test[0]["points"].shape[0]
    if name == "ModelNet40":
        assert train.npoints == 40  # loads the FPS pool, fps_sample returns npoints


@pytest.mark.parametrize(
    "cfg,error,match",
    [({"root": "x"}, KeyError, "needs a 'NAME'"), ({"NAME": "S3DIS"}, KeyError, "known datasets: \\['ModelNet40'"),
     ({"NAME": "ModelNet40", "variant": "OBJ_BG"}, KeyError, "unknown key\\(s\\) \\['variant'\\]; known keys"),
     ({"NAME": "ModelNet40", "train_transforms": ["mixup"]}, KeyError, "unknown transform 'mixup'"),
     ({"NAME": "ModelNet40", "npoints": 64, "fps_pool": 32, "train_transforms": ["fps_sample"]}, ValueError, "fps_pool")],
)  # fmt: skip
def test_build_dataset_errors(demo, cfg, error, match):
    with pytest.raises(error, match=match):
        build_dataset({"root": str(demo[0]), **cfg}, "train")


@pytest.mark.parametrize("name", ["ScanObjectNN", "ModelNet40", "ShapeNetPart"])
def test_dataloader_two_workers_reproducible(demo, name):
    ds = build_dataset(configs(demo[0])[name], "train")

    def run(seed):
        loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2, generator=torch.Generator().manual_seed(seed))
        return [batch for batch in loader]

    first, again, other = run(0), run(0), run(1)
    assert sum(len(b["points"]) for b in first) == len(ds)
    keys = {"ScanObjectNN": "label", "ModelNet40": "label", "ShapeNetPart": "category"}
    assert first[0][keys[name]].dtype == torch.int64 and first[0]["points"].dtype == torch.float32
    assert all(torch.equal(a["points"], b["points"]) for a, b in zip(first, again))
    assert not all(torch.equal(a["points"], b["points"]) for a, b in zip(first, other))
