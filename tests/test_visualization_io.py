"""Point files, prediction files and the tools/visualize.py command line: reading and clear errors."""
import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from conftest import load_tool
from pointclora.visualization import io
from pointclora.visualization.app import Source

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLI = load_tool("visualize")
main = CLI.run  # the tool without its error-to-exit wrapper: bad input raises
RNG = np.random.RandomState(0)
POINTS = RNG.uniform(-1, 1, (64, 3)).astype(np.float32)
NORMALS = (POINTS / np.linalg.norm(POINTS, axis=1, keepdims=True)).astype(np.float32)
SEG = np.arange(64) % 3


def _write(tmp_path, fmt: str) -> str:
    path = str(tmp_path / f"cloud.{fmt}")
    if fmt == "txt":  # ShapeNetPart layout: x y z nx ny nz part
        np.savetxt(path, np.c_[POINTS, NORMALS, SEG], fmt="%.6f")
    elif fmt == "csv.txt":  # ModelNet40 layout: x,y,z,nx,ny,nz
        np.savetxt(path, np.c_[POINTS, NORMALS], fmt="%.6f", delimiter=",")
    elif fmt == "npy":
        np.save(path, np.stack([POINTS * 0, POINTS]))  # a stack: sample 1 is POINTS
    elif fmt == "h5":
        with h5py.File(path, "w") as f:
            f["data"], f["label"], f["pid"] = np.stack([POINTS * 0, POINTS]), np.array([[3], [5]]), np.stack([SEG, SEG])
    else:
        import open3d as o3d

        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(POINTS.astype(np.float64)))
        cloud.normals = o3d.utility.Vector3dVector(NORMALS.astype(np.float64))
        assert o3d.io.write_point_cloud(path, cloud)
    return path


@pytest.mark.parametrize("fmt", ["txt", "csv.txt", "npy", "h5", "ply", "pcd"])
def test_load_point_file_formats(tmp_path, fmt):
    sample = io.load_point_file(_write(tmp_path, fmt), index=1)
    assert sample["points"].shape == (64, 3)
    assert np.allclose(sample["points"], POINTS, atol=1e-5)
    if fmt not in ("npy", "h5"):
        assert np.allclose(sample["normals"], NORMALS, atol=1e-5)
    if fmt in ("txt", "h5"):
        assert sample["seg"].tolist() == SEG.tolist()
    if fmt == "h5":
        assert sample["label"] == 5


def test_load_point_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        io.load_point_file(str(tmp_path / "missing.ply"))
    bad = tmp_path / "bad.ply"
    bad.write_bytes(b"not a ply at all\n")
    with pytest.raises(ValueError, match="no points"):
        io.load_point_file(str(bad))
    np.save(tmp_path / "flat.npy", np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"flat.npy: expected a non-empty \(N, C>=3\)"):
        io.load_point_file(str(tmp_path / "flat.npy"))
    (tmp_path / "words.txt").write_text("a b c\n")
    with pytest.raises(ValueError, match="row 1: .a. is not a number"):
        io.load_point_file(str(tmp_path / "words.txt"))
    (tmp_path / "x.obj").write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="unsupported suffix"):
        io.load_point_file(str(tmp_path / "x.obj"))
    with h5py.File(tmp_path / "nodata.h5", "w") as f:
        f["points"] = np.zeros((1, 4, 3))
    with pytest.raises(KeyError, match="'data'"):
        io.load_point_file(str(tmp_path / "nodata.h5"))
    with pytest.raises(IndexError, match="index: 7"):
        io.load_point_file(_write(tmp_path, "h5"), index=7)


def _save_cls(path, **override):
    arrays = dict(label=np.array([0, 1, 2]), pred=np.array([0, 2, 2]), logits=RNG.randn(3, 3))
    arrays.update(override)
    return io.save_predictions(path, np.stack([POINTS] * 3), ["a", "b", "c"], **arrays)


def test_predictions_round_trip_and_validation(tmp_path):
    import torch

    path = _save_cls(str(tmp_path / "cls.npz"), label=torch.tensor([0, 1, 2]))
    data = io.load_predictions(path)
    assert data["class_names"] == ["a", "b", "c"] and data["pred"].tolist() == [0, 2, 2]
    seg_path = io.save_predictions(str(tmp_path / "seg.npz"), POINTS[None], ["Table"], seg=SEG[None],
                                   pred_seg=SEG[None][:, ::-1], category=[0], part_names=["t0", "t1", "t2"])
    assert io.load_predictions(seg_path)["part_names"] == ["t0", "t1", "t2"]
    with pytest.raises(ValueError, match="'pred' expected shape"):
        _save_cls(str(tmp_path / "x.npz"), pred=np.array([0, 1]))
    with pytest.raises(ValueError, match="'logits' expected shape"):
        _save_cls(str(tmp_path / "x.npz"), logits=np.zeros((3, 5)))
    np.savez(tmp_path / "nolabel.npz", points=np.zeros((1, 4, 3)), class_names=np.array(["a"]))
    with pytest.raises(KeyError, match="label"):
        io.load_predictions(str(tmp_path / "nolabel.npz"))
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable .npz"):
        io.load_predictions(str(tmp_path / "junk.npz"))


@pytest.mark.parametrize("view, extra", [("cloud", []), ("patches", ["--num-group", "8", "--group-size", "8"]),
                                         ("partseg", [])])
def test_cli_renders_a_file(tmp_path, capsys, view, extra):
    out = str(tmp_path / f"{view}.png")
    assert main(["--file", _write(tmp_path, "txt"), "--view", view, "--out", out, "--size", "96",
                 "--backend", "numpy"] + extra) == 0
    assert os.path.getsize(out) > 1000 and "renderer: numpy fallback" in capsys.readouterr().out


def test_cli_grid_of_confidently_wrong(tmp_path, capsys):
    path = _save_cls(str(tmp_path / "p.npz"), probs=np.array([[0.9, 0.05, 0.05], [0.1, 0.2, 0.7], [0.0, 0.0, 1.0]]))
    out = str(tmp_path / "grid.png")
    assert main(["--predictions", path, "--view", "grid", "--out", out, "--size", "96", "--backend", "numpy"]) == 0
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(ValueError, match="--class: unknown class 'zebra'"):
        main(["--predictions", path, "--view", "grid", "--class", "zebra", "--out", out, "--backend", "numpy"])


def test_cli_without_display_and_out_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["--file", _write(tmp_path, "npy")]) == 2
    assert "no display found" in capsys.readouterr().err


def test_cli_partseg_without_labels_names_the_problem(tmp_path):
    with pytest.raises(ValueError, match="has no part labels"):
        main(["--file", _write(tmp_path, "ply"), "--view", "partseg", "--out", str(tmp_path / "x.png")])


def test_tool_reports_unreadable_file(tmp_path):
    bad = tmp_path / "bad.pcd"
    bad.write_text("garbage\n")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "visualize.py"), "--file", str(bad),
                           "--out", str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "bad.pcd: no points could be read" in proc.stderr


class _FakeDataset(list):
    classes = ["a", "b"]


def test_engine_prediction_layout_takes_points_from_the_dataset(tmp_path):
    np.savez(tmp_path / "cls.npz", label=np.array([0, 1]), pred=np.array([1, 1]))
    dataset = _FakeDataset([{"points": POINTS}, {"points": POINTS * 2}])
    data = io.load_predictions(str(tmp_path / "cls.npz"), dataset)
    assert data["class_names"] == ["a", "b"] and np.allclose(data["points"][1], POINTS * 2)
    with pytest.raises(KeyError, match="--config"):
        io.load_predictions(str(tmp_path / "cls.npz"))
    np.savez(tmp_path / "seg.npz", label=SEG[None], pred=SEG[None], category=np.array([0]))
    seg = io.load_predictions(str(tmp_path / "seg.npz"), _FakeDataset([{"points": POINTS}]))
    assert seg["seg"].shape == (1, 64) and "label" not in seg
    with pytest.raises(ValueError, match="holds 1 samples but the dataset split has 2"):
        io.load_predictions(str(tmp_path / "seg.npz"), dataset)


def test_config_samples_are_the_engines_evaluation_samples(tmp_path):
    # ShapeNetPart draws points with replacement: the viewer must use the engine's fixed per-index seed,
    # else a bare prediction file's labels would be drawn on other points than the model saw
    import torch

    from pointclora.config import load_config
    from pointclora.datasets.demo import make_demo_data
    from pointclora.engine.builders import build_datasets
    from pointclora.engine.distributed import DistInfo

    make_demo_data(tmp_path / "demo", seed=0, train_per_class=1, test_per_class=1, val_per_class=1, npoints=128)
    root = tmp_path / "demo"
    config = tmp_path / "seg.yaml"
    config.write_text(f"_base_: {ROOT}/configs/shapenetpart_full.yaml\ndataset: {{root: {root}, npoints: 48}}\n")
    source = Source(CLI.parse_args(["--config", str(config), "--index", "1"]))
    first, again = source.sample(1), source.sample(1)
    assert np.array_equal(first["points"], again["points"]) and np.array_equal(first["seg"], again["seg"])
    info = DistInfo(device=torch.device("cpu"))
    engine = build_datasets(load_config(str(config))["dataset"], info, ["test"], "trainval")["test"][1]
    assert np.array_equal(first["points"], engine["points"].numpy()) and np.array_equal(first["seg"], engine["seg"].numpy())
