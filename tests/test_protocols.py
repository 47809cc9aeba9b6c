"""dataset.val_fraction: the class-stratified held-out split, and every number labelled by protocol."""
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, load_tool, tiny_demo_data
from pointclora.engine.distributed import DistInfo
from pointclora.engine.logging import read_csv
from pointclora.datasets.heldout import HELDOUT, stratified_split
from pointclora.engine.protocols import BEST_TEST, BEST_VAL, LAST

TINY = "trans_dim: 32, num_heads: 2, group_size: 8, num_group: 8, encoder_dims: 32, depth: 2, drop_path_rate: 0.0"


def test_stratified_split_is_deterministic_disjoint_and_per_class():
    labels = np.array([0] * 10 + [1] * 5 + [2] * 1 + [3] * 2)
    train, val = stratified_split(labels, 0.2, seed=0)
    assert np.bincount(labels[val], minlength=4).tolist() == [2, 1, 0, 1]  # round(0.2 n), >= 1, never all
    assert sorted(train.tolist() + val.tolist()) == list(range(len(labels))) and not set(train) & set(val)
    again, other = stratified_split(labels, 0.2, seed=0)[1], stratified_split(labels, 0.2, seed=1)[1]
    assert again.tolist() == val.tolist() and other.tolist() != val.tolist()
    assert 15 in train  # the class of one shape stays in training


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ScanObjectNN", "ShapeNetPart"), train_per_class=4, npoints=64)


def test_heldout_split_is_carved_from_train_and_read_as_evaluation(demo):
    from pointclora.datasets import build_dataset
    from pointclora.engine.builders import build_datasets, splits

    cfg = {"NAME": "ScanObjectNN", "root": str(demo / "ScanObjectNN"), "variant": "OBJ_BG", "npoints": 32,
           "train_transforms": ["scale_translate"], "val_split": "test", "val_fraction": 0.25, "val_seed": 3}
    assert splits(cfg) == ("train", HELDOUT, "test")  # val_fraction replaces val_split
    dsets = build_datasets(cfg, DistInfo(), list(splits(cfg)), "train")
    full = build_dataset({k: cfg[k] for k in ("NAME", "root", "variant", "npoints")}, "train")
    fit, held = dsets["train"], dsets[HELDOUT]
    assert len(fit) + len(held) == len(full) == 28 and not set(fit.indices) & set(held.indices)
    assert np.unique(held.labels, return_counts=True)[1].tolist() == [1] * 7  # 1 of the 4 of each class
    assert held.classes == full.classes
    for i, base in enumerate(held.indices):  # no augmentation: the shape as the test split would read it
        assert np.array_equal(held[i]["points"].numpy(), full[base]["points"].numpy())
    seg = {"NAME": "ShapeNetPart", "root": str(demo), "npoints": 32, "val_fraction": 0.5}
    parts = build_datasets(seg, DistInfo(), list(splits(seg)), "trainval")
    cats = [parts[HELDOUT].datapath[i][0] for i in parts[HELDOUT].indices]
    from collections import Counter

    assert Counter(cats) == {c: 3 for c in ("Airplane", "Chair", "Lamp", "Mug", "Table")}  # 0.5 x 5 per category


def _config(tmp_path: Path, demo: Path, extra: str = "") -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(f"""_base_: {REPO}/configs/_base_/scanobjectnn.yaml
model: {{{TINY}}}
dataset: {{root: {demo}/ScanObjectNN, npoints: 32, train_transforms: [scale_translate]{extra}}}
train: {{epochs: 3, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, amp: false}}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""")
    return path


def test_val_fraction_run_labels_every_number_by_protocol(tmp_path, demo, capsys):
    cfg = _config(tmp_path, demo, ", val_fraction: 0.25")
    out = tmp_path / "run"
    assert load_tool("train").main(["--config", str(cfg), "--output-dir", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    rows = read_csv(out / "metrics.csv")
    assert res["selected_on"] == HELDOUT and res["heldout"] == {"val_fraction": 0.25, "val_seed": 0,
                                                               "of_split": "train", "size": 7}
    p = res["protocols"]
    assert p[BEST_VAL]["epoch"] == res["best_epoch"] == max(rows, key=lambda r: r["val/oa"])["epoch"]
    assert p[BEST_VAL]["oa"] == pytest.approx(res["test"]["oa"])
    best_row = [r for r in rows if r["epoch"] == res["best_epoch"]][0]
    assert p[BEST_VAL]["oa"] == pytest.approx(best_row["test/oa"])  # the same weights, evaluated again
    assert p[LAST] == {"epoch": 3, "oa": rows[-1]["test/oa"], "macc": rows[-1]["test/macc"]}
    assert p[BEST_TEST]["oa"] == max(r["test/oa"] for r in rows)
    for label, values in p.items():
        assert label in [r for r in rows if r["epoch"] == values["epoch"]][0]["protocol"]
        assert f"{label} (epoch {values['epoch']}): overall accuracy {values['oa']:.2f} %" in printed
    assert "best epoch" in printed and f"selected on split '{HELDOUT}' (7 shapes, 25 % of 'train' per class" in printed


def test_without_val_fraction_the_summary_adds_the_last_epoch(tmp_path, demo, capsys):
    out = tmp_path / "run"
    assert load_tool("train").main(["--config", str(_config(tmp_path, demo)), "--output-dir", str(out),
                                "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    rows = read_csv(out / "metrics.csv")
    assert res["selected_on"] == "test" and set(res["protocols"]) == {LAST, BEST_TEST}
    assert "test/oa" not in rows[0]  # the validation split is the test split: nothing is evaluated twice
    assert res["protocols"][LAST]["oa"] == rows[-1]["val/oa"] and res["protocols"][BEST_TEST]["oa"] == res["test"]["oa"]
    assert f"test @ last epoch (epoch 3): overall accuracy {rows[-1]['val/oa']:.2f} %" in printed
    assert "as in the public protocol" in printed


@pytest.mark.parametrize("value", ["1.5", "0", "true"])
def test_bad_val_fraction_is_one_line(tmp_path, demo, capsys, value):
    argv = ["--config", str(_config(tmp_path, demo)), "--output-dir", str(tmp_path / "r"), "--device", "cpu",
            "--opts", f"dataset.val_fraction={value}"]
    assert load_tool("train").main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "dataset.val_fraction" in err and err.count("\n") == 1
