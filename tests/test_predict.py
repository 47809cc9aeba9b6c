"""tools/predict.py: a user's own files in every format, bad files, the three kinds of weights, part PLYs."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_tool
from pointclora.datasets.pointcloud_folder import read_points

REPO = Path(__file__).resolve().parents[1]
TINY = "trans_dim: 32, num_heads: 2, group_size: 8, num_group: 8, encoder_dims: 32, drop_path_rate: 0.0"
TRAIN = "{epochs: 1, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, amp: false}"


PREDICT, TRAIN_TOOL = load_tool("predict"), load_tool("train")


def write_formats(folder: Path, xyz: np.ndarray) -> list:
    """The same cloud as .npy, .txt (comma and space), ascii / binary .ply and .pcd."""
    folder.mkdir(parents=True, exist_ok=True)
    n = len(xyz)
    np.save(folder / "a.npy", xyz)
    np.savetxt(folder / "b.txt", np.concatenate([xyz, np.ones((n, 3))], 1), delimiter=",", fmt="%.8f")
    np.savetxt(folder / "c.txt", xyz, fmt="%.8f")
    head = "ply\nformat {}\nelement vertex {}\nproperty float x\nproperty float y\nproperty float z\nend_header\n"
    with open(folder / "d.ply", "w") as f:
        f.write(head.format("ascii 1.0", n))
        np.savetxt(f, xyz, fmt="%.8f")
    (folder / "e.ply").write_bytes(head.format("binary_little_endian 1.0", n).encode() + xyz.astype("<f4").tobytes())
    pcd = "VERSION .7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nCOUNT 1 1 1\nWIDTH {0}\nHEIGHT 1\nPOINTS {0}\nDATA {1}\n"
    with open(folder / "f.pcd", "w") as f:
        f.write(pcd.format(n, "ascii"))
        np.savetxt(f, xyz, fmt="%.8f")
    (folder / "g.pcd").write_bytes(pcd.format(n, "binary").encode() + xyz.astype("<f4").tobytes())
    return [folder / name for name in ("a.npy", "b.txt", "c.txt", "d.ply", "e.ply", "f.pcd", "g.pcd")]


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    """A 1-epoch CLoRA run from a saved backbone on tiny demo ScanObjectNN, and its --test predictions."""
    from pointclora.config import load_config
    from pointclora.datasets.demo import make_demo_data
    from pointclora.models import build_model

    root = tmp_path_factory.mktemp("pred")
    make_demo_data(root / "demo", seed=0, train_per_class=2, test_per_class=1, npoints=64, datasets=("ScanObjectNN",))
    cfg = root / "cls.yaml"
    cfg.write_text(f"""_base_: [{REPO}/configs/_base_/scanobjectnn.yaml, {REPO}/configs/_base_/adapter_clora.yaml]
model: {{{TINY}, depth: 2}}
dataset: {{root: {root}/demo/ScanObjectNN, npoints: 32}}
train: {TRAIN}
scheduler: {{warmup_epochs: 0}}
""")
    torch.manual_seed(3)
    state = build_model(load_config(cfg)["model"]).state_dict()  # a backbone file has no task head
    torch.save({k: v for k, v in state.items() if not k.startswith("cls_head_finetune")}, root / "backbone.pth")
    out = root / "run"
    base = ["--config", str(cfg), "--output-dir", str(out), "--device", "cpu"]
    assert TRAIN_TOOL.main(base + ["--ckpts", str(root / "backbone.pth")]) == 0
    assert TRAIN_TOOL.main(base + ["--test", "--save-predictions"]) == 0
    return {"root": root, "cfg": cfg, "out": out, "preds": np.load(out / "predictions.npz")}


def _raw_test_shape(root: Path) -> np.ndarray:
    from pointclora.datasets import ScanObjectNN

    return ScanObjectNN(root / "demo" / "ScanObjectNN", variant="PB_T50_RS", split="test", npoints=64).points[0]


def test_every_format_gives_the_evaluation_prediction_and_bad_files_go_on(cls_run, tmp_path, capsys):
    files = write_formats(tmp_path / "in", _raw_test_shape(cls_run["root"]))
    (tmp_path / "in" / "bad.ply").write_text("not a ply\n")
    np.save(tmp_path / "in" / "few.npy", np.zeros((5, 3), np.float32))
    argv = ["--ckpts", str(cls_run["out"] / "ckpt-best.pth"), "--device", "cpu", "--out", str(tmp_path / "p.json"),
            "--files", str(files[0]), str(tmp_path / "in" / "bad.ply"), *map(str, files[1:]),
            str(tmp_path / "in" / "few.npy"), str(tmp_path / "nope.npy")]
    assert PREDICT.main(argv) == 1
    captured = capsys.readouterr()
    errors = [ln for ln in captured.err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 3 and "bad.ply: not a PLY file" in errors[0]
    assert "few.npy: has 5 points, fewer than dataset.npoints=32" in errors[1] and "nope.npy" in errors[2]
    data = json.loads((tmp_path / "p.json").read_text())
    assert [Path(e["file"]).name for e in data["files"]] == ["a.npy", "bad.ply", "b.txt", "c.txt", "d.ply", "e.ply",
                                                             "f.pcd", "g.pcd", "few.npy", "nope.npy"]
    expected = cls_run["preds"]["probs"][0]  # tools/train.py --test on the same shape
    names = [str(n) for n in cls_run["preds"]["class_names"]]
    for entry in [e for e in data["files"] if "top" in e]:
        top = entry["top"]
        assert len(top) == 5 and top == sorted(top, key=lambda t: -t["prob"])
        assert [t["index"] for t in top] == list(np.argsort(-expected)[:5])
        assert np.allclose([t["prob"] for t in top], np.sort(expected)[::-1][:5], atol=1e-5)
        assert [t["class"] for t in top] == [names[t["index"]] for t in top]
        assert f"{entry['file']}: {top[0]['class']} {100 * top[0]['prob']:.1f} %" in captured.out


def test_adapter_file_with_its_backbone_equals_the_checkpoint(cls_run, tmp_path, capsys):
    (path,) = write_formats(tmp_path, _raw_test_shape(cls_run["root"]))[:1]
    common = ["--config", str(cls_run["cfg"]), "--device", "cpu", "--files", str(path), "--vote", "3"]
    outs = {}
    for name, ckpts in [("ckpt", [cls_run["out"] / "ckpt-best.pth"]),
                        ("adapter", [cls_run["root"] / "backbone.pth", cls_run["out"] / "adapter-best.safetensors"])]:
        assert PREDICT.main(common + ["--ckpts", *map(str, ckpts), "--out", str(tmp_path / f"{name}.json")]) == 0
        outs[name] = json.loads((tmp_path / f"{name}.json").read_text())["files"][0]["top"]
    assert outs["ckpt"] == outs["adapter"]
    assert PREDICT.main(common + ["--ckpts", str(cls_run["out"] / "adapter-best.safetensors")]) == 2
    assert "needs the backbone it was trained on" in capsys.readouterr().err
    assert PREDICT.main(common + ["--ckpts", str(cls_run["root"] / "backbone.pth")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --ckpts: ") and "come from no file" in err and "cls_head_finetune" in err


def test_plain_fine_tuned_weights_predict_like_the_checkpoint(cls_run, tmp_path):
    """A full state dict (here: the checkpoint's adapters merged into the weights) needs no adapter file."""
    from pointclora.adapters import merge_and_unload
    from pointclora.engine import predict as P

    (path,) = write_formats(tmp_path, _raw_test_shape(cls_run["root"]))[:1]
    ckpt = P.training_checkpoint([str(cls_run["out"] / "ckpt-best.pth")])
    merged = merge_and_unload(P.load_model(ckpt["config"], [str(cls_run["out"] / "ckpt-best.pth")], ckpt))
    torch.save(merged.state_dict(), tmp_path / "merged.pth")
    tops = []
    for ckpts in ([cls_run["out"] / "ckpt-best.pth"], [tmp_path / "merged.pth"]):
        out = tmp_path / f"{len(tops)}.json"
        argv = ["--config", str(cls_run["cfg"]), "--device", "cpu", "--files", str(path), "--out", str(out)]
        assert PREDICT.main(argv + ["--ckpts", *map(str, ckpts)]) == 0
        tops.append(json.loads(out.read_text())["files"][0]["top"])
    assert [t["index"] for t in tops[0]] == [t["index"] for t in tops[1]]
    assert np.allclose([t["prob"] for t in tops[0]], [t["prob"] for t in tops[1]], atol=1e-5)


@pytest.mark.parametrize("extra, message", [
    (["--vote", "0"], "--vote / --top: expected >= 1"),
    (["--category", "Chair"], "--category: only for part segmentation models"),
    (["--ckpts", "missing.pth"], "checkpoint file not found"),
])  # fmt: skip
def test_bad_arguments_stop_before_any_file(cls_run, tmp_path, capsys, extra, message):
    argv = ["--ckpts", str(cls_run["out"] / "ckpt-best.pth"), "--files", "x.npy", "--device", "cpu", *extra]
    assert PREDICT.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_part_segmentation_writes_a_ply_with_parts_and_colours(tmp_path, capsys):
    from pointclora.datasets import SEG_CLASSES, ShapeNetPart
    from pointclora.datasets.demo import make_demo_data

    make_demo_data(tmp_path / "demo", seed=0, train_per_class=1, test_per_class=1, val_per_class=0, npoints=96,
                   datasets=("ShapeNetPart",))
    cfg = tmp_path / "seg.yaml"
    cfg.write_text(f"""_base_: {REPO}/configs/_base_/shapenetpart.yaml
model: {{{TINY}, depth: 3}}
dataset: {{root: {tmp_path}/demo, npoints: 64}}
train: {TRAIN}
scheduler: {{warmup_epochs: 0}}
""")
    assert TRAIN_TOOL.main(["--config", str(cfg), "--output-dir", str(tmp_path / "run"), "--device", "cpu"]) == 0
    ds = ShapeNetPart(tmp_path / "demo", split="test", npoints=64)
    index = [c for c, _ in ds.datapath].index("Mug")
    src = ds.datapath[index][1]
    xyz = np.loadtxt(src)[:, :3].astype(np.float32)
    np.save(tmp_path / "mug.npy", xyz)
    argv = ["--ckpts", str(tmp_path / "run" / "ckpt-best.pth"), "--files", str(tmp_path / "mug.npy"), "--category",
            "mug", "--out-dir", str(tmp_path / "parts"), "--device", "cpu", "--out", str(tmp_path / "seg.json")]
    assert PREDICT.main(argv) == 0
    ply = tmp_path / "parts" / "mug_parts.ply"
    assert np.allclose(read_points(ply), xyz)  # every point of the file, in its own frame
    header, body = ply.read_bytes().split(b"end_header\n", 1)
    assert b"property int part" in header and b"property uchar red" in header
    rows = np.frombuffer(body, dtype=[("xyz", "<f4", 3), ("part", "<i4"), ("rgb", "u1", 3)])
    assert len(rows) == len(xyz) and set(rows["part"]) <= set(SEG_CLASSES["Mug"])
    same = rows["part"][:, None] == rows["part"][None, :]
    assert (same == (rows["rgb"][:, None] == rows["rgb"][None, :]).all(-1)).all()  # one colour per part
    entry = json.loads((tmp_path / "seg.json").read_text())["files"][0]
    assert entry["category"] == "Mug" and sum(entry["parts"].values()) == len(xyz)
    assert PREDICT.main(argv[:4] + ["--device", "cpu"]) == 2
    assert "--category: part segmentation needs one of" in capsys.readouterr().err
