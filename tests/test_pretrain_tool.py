"""tools/pretrain.py end to end on tiny data: outputs and loss, transfer of its checkpoint into the
classification and part-segmentation models, exact resume, a folder of point files, bad input."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_same_model_state, load_tool, tiny_demo_data
from pointclora.datasets.pointcloud_folder import PointCloudFolder, read_points
from pointclora.engine.logging import read_csv
from pointclora.models import build_model, load_pretrained

REPO = Path(__file__).resolve().parents[1]
TINY = "NAME: PointMAEPretrain, trans_dim: 32, encoder_dims: 32, depth: 3, num_heads: 2, drop_path_rate: 0.0, " \
       "group_size: 8, num_group: 8, mask_ratio: 0.6, decoder_depth: 1, decoder_num_heads: 2"
TRAIN = "{epochs: 2, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, seed: 3}"
CONFIG = f"""_base_: {REPO}/configs/_base_/pretrain.yaml
model: {{{TINY}}}
dataset: {{DATASET}}
train: {TRAIN}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
"""
DECODER_PREFIXES = ("MAE_decoder.", "mask_token", "decoder_pos_embed.", "increase_dim.")


CLI = load_tool("pretrain")


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ScanObjectNN",), val_per_class=8)


def make_config(tmp_path: Path, dataset: str) -> Path:
    path = tmp_path / "pretrain.yaml"
    path.write_text(CONFIG.replace("{DATASET}", dataset))
    return path


def scan_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    return make_config(tmp_path, f"{{NAME: ScanObjectNN, root: {data}/ScanObjectNN, variant: OBJ_BG, npoints: 64, "
                                 f"train_transforms: [scale_translate]{extra}}}")


def pretrain(config: Path, out: Path, *extra: str) -> int:
    return CLI.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """A finished 2-epoch run (with a validation split), shared by the tests below."""
    tmp = tmp_path_factory.mktemp("straight")
    assert pretrain(scan_config(tmp, data, ", val_split: test"), tmp / "out") == 0
    return tmp / "out"


def test_two_epochs_write_checkpoints_logs_and_loss_decreases(straight):
    for name in ("ckpt-last.pth", "pretrain.pth", "config.yaml", "metrics.csv", "curves.png", "results.json"):
        assert (straight / name).is_file(), name
    assert any((straight / "tb").iterdir())
    rows = read_csv(straight / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train/loss"] < rows[0]["train/loss"]
    assert all(math.isfinite(r["val/loss"]) for r in rows)
    results = json.loads((straight / "results.json").read_text())
    assert results["final_loss"] == rows[1]["train/loss"] and results["best"]["split"] == "val"
    assert results["best"]["loss"] == min(r["val/loss"] for r in rows)


def test_checkpoint_is_official_layout(straight):
    ckpt = torch.load(straight / "pretrain.pth", map_location="cpu", weights_only=True)  # no pickled code
    assert set(ckpt) == {"base_model", "epoch", "metrics"} and ckpt["epoch"] == 2
    keys = ckpt["base_model"].keys()
    for prefix in ("MAE_encoder.encoder.", "MAE_encoder.blocks.", "MAE_decoder.", "mask_token",
                   "decoder_pos_embed.", "increase_dim."):
        assert any(k.startswith(prefix) for k in keys), prefix
    last = torch.load(straight / "ckpt-last.pth", map_location="cpu", weights_only=False)
    assert all(torch.equal(last["model"][k], v) for k, v in ckpt["base_model"].items())


@pytest.mark.parametrize("name,missing_expected", [
    ("PointMAE", {"cls_token", "cls_pos"}),
    ("PointMAEPartSeg", set()),
])
def test_checkpoint_loads_into_downstream_models(straight, name, missing_expected):
    cfg = dict(NAME=name, trans_dim=32, encoder_dims=32, depth=3, num_heads=2, drop_path_rate=0.0, group_size=8,
               num_group=8, cls_dim=5 if name == "PointMAE" else 50)
    model = build_model(cfg)
    missing, unexpected = load_pretrained(model, str(straight / "pretrain.pth"))
    assert unexpected and all(k.startswith(DECODER_PREFIXES) for k in unexpected)
    # every encoder tensor of the checkpoint landed in the model; only the task head stays fresh
    state = torch.load(straight / "pretrain.pth", weights_only=True)["base_model"]
    own = model.state_dict()
    for key, value in state.items():
        if key.startswith("MAE_encoder."):
            assert torch.equal(own[key[len("MAE_encoder."):]], value), key
    assert missing_expected <= set(missing)
    encoder_keys = {k[len("MAE_encoder."):] for k in state if k.startswith("MAE_encoder.")}
    assert not encoder_keys & set(missing)


def test_train_cli_fine_tunes_from_it(straight, data, tmp_path, capsys):
    train_cli = load_tool("train")
    config = tmp_path / "cls.yaml"
    config.write_text(f"""_base_: {REPO}/configs/_base_/scanobjectnn.yaml
model: {{trans_dim: 32, encoder_dims: 32, depth: 3, num_heads: 2, drop_path_rate: 0.0, group_size: 8, num_group: 8}}
dataset: {{root: {data}/ScanObjectNN, npoints: 64, train_transforms: []}}
train: {{epochs: 1, batch_size: 7, num_workers: 0, pin_memory: false, amp: false}}
scheduler: {{warmup_epochs: 0}}
adapter: {{method: clora, rank: 4, num_bases: 2}}
""")
    code = train_cli.main(["--config", str(config), "--output-dir", str(tmp_path / "ft"), "--device", "cpu",
                           "--ckpts", str(straight / "pretrain.pth")])
    assert code == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("loaded pre-trained weights"))
    state = torch.load(straight / "pretrain.pth", weights_only=True)["base_model"]
    decoder = sum(k.startswith(DECODER_PREFIXES) for k in state)
    assert "missing 18 ['cls_token', 'cls_pos', 'cls_head_finetune." in line  # the head only
    assert line.endswith(f"unexpected {decoder}")


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("throughput", "epoch_time_s")} for r in rows]


def test_resume_equals_straight_run(straight, data, tmp_path):
    config = scan_config(tmp_path, data, ", val_split: test")
    out = tmp_path / "out"
    assert pretrain(config, out, "--max-epochs-this-run", "1") == 0  # the "kill" after epoch 1
    assert torch.load(out / "ckpt-last.pth", weights_only=False)["epoch"] == 1
    assert not (out / "results.json").exists()
    assert pretrain(config, out, "--resume") == 0
    assert_same_model_state(straight / "ckpt-last.pth", out / "ckpt-last.pth")
    a = torch.load(straight / "ckpt-last.pth", weights_only=False)
    b = torch.load(out / "ckpt-last.pth", weights_only=False)
    assert all(torch.equal(x, y) for x, y in zip(a["optimizer"]["state"][0].values(), b["optimizer"]["state"][0].values()))
    assert _strip_timing(read_csv(straight / "metrics.csv")) == _strip_timing(read_csv(out / "metrics.csv"))


def _write(path: Path, xyz: np.ndarray) -> None:
    """Writes xyz (N, 3) in the format of path's suffix (ply/pcd: ascii or binary by the stem)."""
    binary = "bin" in path.stem
    if path.suffix == ".npy":
        np.save(path, xyz)
    elif path.suffix == ".txt":
        np.savetxt(path, np.concatenate([xyz, np.ones_like(xyz)], 1), fmt="%.6f", delimiter=",")
    elif path.suffix == ".ply":
        fmt = "binary_little_endian" if binary else "ascii"
        head = (f"ply\nformat {fmt} 1.0\ncomment test\nelement vertex {len(xyz)}\nproperty float x\nproperty float y\n"
                f"property float z\nproperty uchar red\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n")
        table = np.zeros(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1")])
        table["x"], table["y"], table["z"] = xyz.T
        body = table.tobytes() if binary else "".join(f"{a:.6f} {b:.6f} {c:.6f} 7\n" for a, b, c in xyz).encode()
        path.write_bytes(head.encode() + body)
    else:
        head = (f"# .PCD v0.7\nVERSION 0.7\nFIELDS x y z intensity\nSIZE 4 4 4 4\nTYPE F F F F\nCOUNT 1 1 1 1\n"
                f"WIDTH {len(xyz)}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {len(xyz)}\n"
                f"DATA {'binary' if binary else 'ascii'}\n")
        table = np.concatenate([xyz, np.full((len(xyz), 1), 0.5)], 1).astype("<f4")
        body = table.tobytes() if binary else "".join(" ".join(f"{v:.6f}" for v in r) + "\n" for r in table).encode()
        path.write_bytes(head.encode() + body)


@pytest.mark.parametrize("name", ["a.npy", "a.txt", "a.ply", "a_bin.ply", "a.pcd", "a_bin.pcd"])
def test_point_file_readers(tmp_path, name):
    xyz = np.random.default_rng(0).normal(size=(37, 3)).astype(np.float32)
    _write(tmp_path / name, xyz)
    np.testing.assert_allclose(read_points(tmp_path / name), xyz, atol=1e-6)


def test_folder_of_point_files_pretrains(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.npy", "b.txt", "sub/c.npy", "sub/d.txt", "e.ply", "f_bin.pcd", "g.npy", "h.txt"]):
        _write(folder / name, rng.normal(size=(96 if i else 40, 3)).astype(np.float32))  # a.npy: fewer than npoints
    (folder / "notes.md").write_text("not a point file")
    dataset = PointCloudFolder(folder, npoints=64)
    assert len(dataset) == 8 and dataset[0]["points"].shape == (64, 3)
    assert dataset[1]["points"].norm(dim=1).max().item() == pytest.approx(1.0, abs=1e-5)  # unit sphere
    config = make_config(tmp_path, f"{{NAME: PointCloudFolder, root: {folder}, npoints: 64}}")
    assert pretrain(config, tmp_path / "out", "--opts", "train.epochs=1") == 0
    rows = read_csv(tmp_path / "out" / "metrics.csv")
    assert len(rows) == 1 and math.isfinite(rows[0]["train/loss"])


def test_file_list_selects_the_split(tmp_path):
    for name in ("x.npy", "y.npy", "z.npy"):
        np.save(tmp_path / name, np.random.default_rng(0).normal(size=(80, 3)).astype(np.float32))
    (tmp_path / "train.txt").write_text("x.npy\nz.npy\n")
    (tmp_path / "test.txt").write_text("y.npy\n")
    lists = str(tmp_path / "{split}.txt")
    assert [p.name for p in PointCloudFolder(tmp_path, "train", 64, lists).files] == ["x.npy", "z.npy"]
    assert [p.name for p in PointCloudFolder(tmp_path, "test", 64, lists).files] == ["y.npy"]
    (tmp_path / "val.txt").write_text("missing.npy\n")
    with pytest.raises(FileNotFoundError, match="missing.npy"):
        PointCloudFolder(tmp_path, "val", 64, lists)


@pytest.mark.parametrize("dataset,opts,message", [
    ("{NAME: PointCloudFolder, root: /nonexistent/scans, npoints: 64}", [], "/nonexistent/scans"),
    ("{NAME: PointCloudFolder, root: EMPTY, npoints: 64}", [], "no point files"),
    ("{NAME: ScanObjectNN, root: DATA/ScanObjectNN, npoints: 64}", ["model.NAME=PointMAE"], "model config for PointMAE"),
    ("{NAME: ScanObjectNN, root: DATA/ScanObjectNN, npoints: 64}", ["train.batch_size=64"], "train.batch_size=64"),
])
def test_bad_input_stops_before_training(data, tmp_path, capsys, dataset, opts, message):
    (tmp_path / "empty").mkdir()
    config = make_config(tmp_path, dataset.replace("EMPTY", str(tmp_path / "empty")).replace("DATA", str(data)))
    assert pretrain(config, tmp_path / "out", *(["--opts", *opts] if opts else [])) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "ckpt-last.pth").exists()


def test_resume_without_checkpoint_is_refused(data, tmp_path, capsys):
    assert pretrain(scan_config(tmp_path, data), tmp_path / "out", "--resume") == 2
    assert "--resume: no checkpoint" in capsys.readouterr().err


def test_torchrun_two_gloo_processes(data, tmp_path):
    """2 ranks pre-train one run: one set of files, one summary, world size 2 recorded."""
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tools" / "pretrain.py"), "--config", str(scan_config(tmp_path, data)), "--output-dir", str(out),
           "--device", "cpu", "--opts", "train.epochs=1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("==== pre-training summary ====") == 1
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and math.isfinite(results["final_loss"])
    assert torch.load(out / "pretrain.pth", weights_only=True)["epoch"] == 1
