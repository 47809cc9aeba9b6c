"""Few-shot ModelNet40: folds in the public pickle layout, the restricted unpickler, tools/make_fewshot.py."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_tool
from pointclora.datasets import DATASETS, ModelNet40, ModelNetFewShot, build_dataset
from pointclora.datasets.common import pc_normalize
from pointclora.datasets.modelnet40 import CLASSES
from pointclora.datasets.modelnet_fewshot import fold_path, fold_rng, sample_fold
from pointclora.engine.tasks import build_task

REPO = Path(__file__).resolve().parents[1]


def write_public_fold(root: Path, way=2, shot=3, fold=0, points=64, seed=0) -> Path:
    """A fold as the public generate_few_shot_data.py writes it: plain pickle.dump of numpy arrays,
    labels 0..way-1 and original np.int32 labels (label[0] of the .dat cache)."""
    rng = np.random.default_rng(seed)
    originals = [7, 33][:way]  # car, table
    data = {}
    for split, count in (("train", shot), ("test", 2)):
        items = []
        for label, orig in enumerate(originals):
            for _ in range(count):
                cloud = np.concatenate([rng.normal(size=(points, 3)) * 3 + 5, rng.normal(size=(points, 3))], 1)
                items.append((cloud.astype(np.float32), label, np.array([orig], dtype=np.int32)[0]))
        data[split] = items
    path = root / f"{way}way_{shot}shot" / f"{fold}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f)  # default protocol, as the public script
    return path


def test_public_fold_reads_with_the_public_normalisation(tmp_path):
    path = write_public_fold(tmp_path / "ModelNetFewshot")
    raw = pickle.loads(path.read_bytes())
    for root in (tmp_path, tmp_path / "ModelNetFewshot"):  # the parent or the folder itself
        ds = ModelNetFewShot(root, split="train", way=2, shot=3, fold=0, npoints=16)
        assert len(ds) == 6 and ds.classes == ["car", "table"]
    item = ds[4]
    expected = pc_normalize(raw["train"][4][0][:, :3])[:16]  # normalised over all 64 points, then the first 16
    assert item["points"].shape == (16, 3) and item["points"].dtype == torch.float32
    assert np.allclose(item["points"].numpy(), expected, atol=1e-6)
    assert int(item["label"]) == raw["train"][4][1] == 1
    assert ds.original_labels.tolist() == [7, 7, 7, 33, 33, 33]
    test = ModelNetFewShot(tmp_path, split="test", way=2, shot=3, fold=0, npoints=64, use_normals=True)
    assert len(test) == 4 and test[0]["points"].shape == (64, 6)
    assert np.array_equal(test[0]["points"][:, 3:].numpy(), raw["test"][0][0][:, 3:])  # normals untouched


def test_build_dataset_and_the_40_way_head_of_the_public_recipe(tmp_path):
    write_public_fold(tmp_path)
    cfg = {"NAME": "ModelNetFewShot", "root": str(tmp_path), "way": 2, "shot": 3, "fold": 0, "npoints": 32,
           "fps_pool": 48, "train_transforms": ["fps_sample", "scale_translate"]}
    train = build_dataset(cfg, "train")
    assert "ModelNetFewShot" in DATASETS and train[0]["points"].shape == (32, 3)
    assert build_task({"NAME": "PointMAE", "cls_dim": 40}, train).num_classes == 40  # Point-MAE: cls_dim 40
    assert build_task({"NAME": "PointMAE", "cls_dim": 2}, train).num_classes == 2
    with pytest.raises(ValueError, match="cls_dim=1 but dataset ModelNetFewShot has 2 classes"):
        build_task({"NAME": "PointMAE", "cls_dim": 1}, train)


class _Evil:
    def __init__(self, sentinel):
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('ran')",))


def test_malicious_fold_pickle_is_refused_without_running_code(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "5way_10shot" / "0.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"train": [(_Evil(sentinel), 0, 0)], "test": []}))
    with pytest.raises(ValueError, match=r"0\.pkl.*refusing to load global 'builtins.exec'"):
        ModelNetFewShot(tmp_path, way=5, shot=10, fold=0)
    assert not sentinel.exists()


@pytest.mark.parametrize("obj, message", [
    ({"train": []}, r"expected a pickled dict \{'train'"),
    ({"train": [(np.zeros((8, 6), np.float32), 5, 0)], "test": []}, r"train item 0: label must be an integer in \[0, 2\)"),
    ({"train": [(np.zeros((8, 4), np.float32), 0, 0)], "test": []}, r"points must be an \(N, 6\) or \(N, 3\) array"),
    ({"train": [(np.full((8, 6), np.nan, np.float32), 0, 0)], "test": []}, "non-finite"),
    ({"train": [(np.zeros((8, 6), np.float32), 0, 1), (np.zeros((8, 6), np.float32), 0, 2)], "test": []},
     "label 0 stands for two ModelNet40 classes"),
])  # fmt: skip
def test_malformed_fold_names_the_file_and_the_problem(tmp_path, obj, message):
    path = tmp_path / "2way_1shot" / "3.pkl"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match=message) as err:
        ModelNetFewShot(tmp_path, way=2, shot=1, fold=3, npoints=8)
    assert str(path) in str(err.value)


def test_missing_fold_and_too_few_points(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"5way_10shot/4\.pkl.*5-way 10-shot fold 4"):
        fold_path(tmp_path, 5, 10, 4)
    write_public_fold(tmp_path, points=16)
    with pytest.raises(ValueError, match="train item 0 has 16 points, fewer than npoints=32"):
        ModelNetFewShot(tmp_path, way=2, shot=3, npoints=32)


def test_sample_fold_is_seeded_disjoint_and_checks_class_sizes():
    train = np.repeat([0, 3, 5, 9], 6)  # 4 classes, 6 training shapes each
    test = np.repeat([0, 3, 5, 9], 3)
    a = sample_fold(train, test, 3, 4, 2, fold_rng(0, 3, 4, 0), CLASSES)
    assert a == sample_fold(train, test, 3, 4, 2, fold_rng(0, 3, 4, 0), CLASSES)
    assert a != sample_fold(train, test, 3, 4, 2, fold_rng(0, 3, 4, 1), CLASSES)
    for split, per_class, labels in (("train", 4, train), ("test", 2, test)):
        idx = [i for i, _, _ in a[split]]
        assert len(idx) == len(set(idx)) == 3 * per_class
        assert all(labels[i] == orig for i, _, orig in a[split])  # the stored original label is the shape's
        assert sorted({label for _, label, _ in a[split]}) == [0, 1, 2]
    with pytest.raises(ValueError, match="class 'airplane' has 3 test shapes, fewer than test_per_class=4"):
        sample_fold(train, test, 4, 4, 4, fold_rng(0, 4, 4, 0), CLASSES)
    with pytest.raises(ValueError, match="shot=7"):
        sample_fold(train, test, 4, 7, 2, fold_rng(0, 4, 7, 0), CLASSES)
    with pytest.raises(ValueError, match="way=5: the training split has shapes of only 4 classes"):
        sample_fold(train, test, 5, 1, 1, fold_rng(0, 5, 1, 0), CLASSES)


@pytest.fixture(scope="module")
def demo_modelnet(tmp_path_factory):
    from pointclora.datasets.demo import make_demo_data

    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, seed=0, train_per_class=6, test_per_class=3, npoints=64, datasets=("ModelNet40",))
    return root


def test_make_fewshot_round_trip(tmp_path, demo_modelnet, capsys):
    tool = load_tool("make_fewshot")
    out = tmp_path / "ModelNetFewshot"
    argv = ["--modelnet", str(demo_modelnet), "--out", str(out), "--ways", "3", "--shots", "2", "4",
            "--folds", "0-1", "--test-per-class", "3", "--points", "48", "--seed", "5"]
    assert tool.main(argv) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pkl"))
    assert files == ["3way_2shot/0.pkl", "3way_2shot/1.pkl", "3way_4shot/0.pkl", "3way_4shot/1.pkl"]
    source = {s: ModelNet40(demo_modelnet, split=s, npoints=48, format="txt") for s in ("train", "test")}
    index = {s: {src.raw_points(i)[:, :3].tobytes(): i for i in range(len(src))} for s, src in source.items()}
    for split, per_class in (("train", 4), ("test", 3)):
        ds = ModelNetFewShot(out, split=split, way=3, shot=4, fold=1, npoints=48, use_normals=True)
        assert len(ds) == 3 * per_class and np.bincount(ds.labels).tolist() == [per_class] * 3
        for k, (points, label, orig) in enumerate(ds.items):  # each item is a source shape, FPS-ordered
            i = index[split][points[:, :3].tobytes()]
            assert source[split].labels[i] == orig and ds.classes[label] == CLASSES[orig]
            assert np.array_equal(points, source[split].raw_points(i))
    first = (out / "3way_4shot" / "1.pkl").read_bytes()
    assert tool.main(argv) == 0 and (out / "3way_4shot" / "1.pkl").read_bytes() == first  # seeded
    assert tool.main(argv[:-1] + ["6"]) == 0 and (out / "3way_4shot" / "1.pkl").read_bytes() != first


@pytest.mark.parametrize("extra, message", [
    (["--ways", "9"], "way=9: the training split has shapes of only 8 classes"),
    (["--shots", "7"], "class '.*' has 6 train shapes, fewer than shot=7"),
    (["--test-per-class", "4"], "has 3 test shapes, fewer than test_per_class=4"),
    (["--points", "100"], "--points 100 is more than the shapes have: .*has 64 points"),
    (["--folds", "3-1"], "--folds: expected non-negative increasing ranges"),
])  # fmt: skip
def test_make_fewshot_errors_are_one_line(tmp_path, demo_modelnet, capsys, extra, message):
    argv = ["--modelnet", str(demo_modelnet), "--out", str(tmp_path / "fs"), "--ways", "3", "--shots", "2",
            "--folds", "0", "--test-per-class", "3", "--points", "48"]
    assert load_tool("make_fewshot").main(argv + extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    import re

    assert re.search(message, err)
    assert not (tmp_path / "fs").exists()  # nothing half-written
