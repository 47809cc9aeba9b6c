"""Issue 16 outside the training loop: the adapter API, tools/visualize.py and optional packages.
Each failure names its file or argument; a failed load changes nothing."""
import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import randomise_adapters, tiny_model_config
from pointclora.adapters import AdapterConfig, adapter_layers, apply_adapters, load_adapter, merge_adapters, save_adapter
from pointclora.models import build_model

REPO = Path(__file__).resolve().parents[1]


def make_model(classes: int = 5):
    torch.manual_seed(0)
    return build_model(tiny_model_config("PointMAE", cls_dim=classes)).eval()


def adapted(**cfg):
    return apply_adapters(make_model(), AdapterConfig(**cfg))


def points():
    return torch.randn(3, 64, 3, generator=torch.Generator().manual_seed(1))


# ----------------------------------------------------------------------------- adapter API
def test_save_adapter_names_the_target_not_the_temp_file(tmp_path, monkeypatch):
    import tempfile

    model = adapted(method="lora")
    target = tmp_path / "a.safetensors"

    def refused(prefix, suffix, dir):
        name = os.path.join(dir, f"{prefix}abc{suffix}")
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OSError) as info:
        save_adapter(model, str(target))
    assert str(target) in str(info.value) and ".tmp" not in str(info.value) and "Permission denied" in str(info.value)
    monkeypatch.undo()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError, match=f"cannot write '{tmp_path / 'afile' / 'a.safetensors'}'"):
        save_adapter(model, str(tmp_path / "afile" / "a.safetensors"))


@pytest.mark.parametrize("damage", ["random", "truncated"])
def test_load_adapter_on_a_bad_file_names_it(tmp_path, damage):
    path = tmp_path / "a.safetensors"
    save_adapter(adapted(method="lora"), str(path))
    data = path.read_bytes()
    path.write_bytes(os.urandom(256) if damage == "random" else data[: len(data) // 2])
    model = make_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=f"{path} is not a readable safetensors adapter file"):
        load_adapter(model, str(path))
    assert adapter_layers(model) == [] and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_failed_load_adapter_changes_nothing(tmp_path):
    path = tmp_path / "a.safetensors"
    save_adapter(adapted(method="lora"), str(path))
    model = make_model(classes=7)  # the file's head has 5 classes
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(model, str(path))
    assert adapter_layers(model) == [] and not hasattr(model, "adapter_config")
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert state.keys() == model.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    loaded = load_adapter(make_model(), str(path))  # and a model that fits still loads
    assert len(adapter_layers(loaded)) > 0


def test_training_a_merged_model_warns():
    model = adapted(method="lora")
    randomise_adapters(model)
    merge_adapters(model)
    model.train()
    with pytest.warns(UserWarning, match="unmerge_adapters"):
        model(points()).sum().backward()
    model.eval()
    with torch.no_grad():
        model(points())  # inference with merged adapters: no warning needed


# ----------------------------------------------------------------------------- tools/visualize.py
def _visualize(*args, env=None):
    return subprocess.run([sys.executable, str(REPO / "tools" / "visualize.py"), *args], capture_output=True,
                          text=True, timeout=240, env=env)


def _predictions(path: Path, label, class_names=("a", "b", "c")):
    from pointclora import io

    pts = np.random.default_rng(0).normal(size=(len(label), 32, 3)).astype(np.float32)
    np.savez(path, points=pts, class_names=np.asarray(class_names), label=np.asarray(label),
             pred=np.zeros(len(label), dtype=np.int64))
    return io


def test_prediction_label_outside_the_classes_is_an_error(tmp_path):
    io = _predictions(tmp_path / "p.npz", [0, 99])
    with pytest.raises(ValueError, match=r"'label' holds 99 at index \[1\], outside the 3 names of 'class_names'"):
        io.load_predictions(str(tmp_path / "p.npz"))


def test_predictions_of_another_dataset_are_refused(tmp_path):
    io = _predictions(tmp_path / "p.npz", [0, 1])

    class Scan(list):
        classes = ["bag", "bin", "box"]

    with pytest.raises(ValueError, match="pass the config the predictions were made with"):
        io.load_predictions(str(tmp_path / "p.npz"), Scan([{}, {}]))
    with pytest.raises(ValueError, match="holds 2 samples but the --config dataset split has 3"):
        io.load_predictions(str(tmp_path / "p.npz"), type("Same", (list,), {"classes": ["a", "b", "c"]})([{}] * 3))


def test_unwritable_out_is_one_line(tmp_path):
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    (tmp_path / "afile").write_text("x")
    proc = _visualize("--file", str(tmp_path / "cloud.npy"), "--out", str(tmp_path / "afile" / "x.png"),
                      "--backend", "numpy")
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1 and "--out" in err[0] and "is a file, not a folder" in err[0]


def test_open3d_render_prints_no_runtime_dir_message(tmp_path, capfd, monkeypatch):
    pytest.importorskip("open3d")
    from conftest import load_tool
    from pointclora.visualization.render import open3d_offscreen_available

    visualize = load_tool("visualize")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    if not open3d_offscreen_available()[0]:
        pytest.skip("no GL context for open3d offscreen on this machine")
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32))
    assert visualize.main(["--file", str(tmp_path / "cloud.npy"), "--out", str(tmp_path / "x.png"),
                           "--backend", "open3d"]) == 0
    assert (tmp_path / "x.png").is_file()
    err = capfd.readouterr().err  # the GL stack writes to file descriptor 2 directly
    assert "XDG_RUNTIME_DIR" not in err, err


# ----------------------------------------------------------------------------- optional packages
def test_training_without_tensorboard_says_what_is_skipped(tmp_path, monkeypatch, capsys):
    from pointclora.engine.logging import RunLogger

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import raises ImportError
    log = RunLogger(tmp_path)
    log.log_epoch(1, {"train/loss": 1.0})
    log.close()
    out = capsys.readouterr().out
    assert "tensorboard is not installed" in out and "pip install tensorboard" in out
    assert (tmp_path / "metrics.csv").is_file() and not (tmp_path / "tb").exists()


def test_checkout_tools_find_datasets_without_an_editable_install():
    """tools/*.py put the checkout first on sys.path; beside a plain `pip install .` (no editable finder:
    `-S` skips the .pth files) pointclora.datasets must still resolve to the checkout's datasets/."""
    paths = [p for p in sys.path if "site-packages" in p or "dist-packages" in p]
    code = (f"import sys; sys.path[:0] = [{str(REPO)!r}] + {paths!r}; "
            "import pointclora.datasets.common as c; print(c.__file__)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == str(REPO / "datasets" / "common.py")


def test_setup_ships_every_config_as_package_data(monkeypatch):
    """`pip install .` (not editable) installs configs/ as pointclora/configs: setup.py's package_data
    patterns must match every shipped YAML file, _base_/ included."""
    import fnmatch
    import runpy

    import setuptools

    seen = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.setattr(sys, "argv", ["setup.py", "--name"])
    runpy.run_path(str(REPO / "setup.py"), run_name="__main__")
    assert "pointclora.configs" in seen["packages"]
    folder = REPO / seen["package_dir"]["pointclora.configs"]
    patterns = seen["package_data"]["pointclora.configs"]
    shipped = sorted(str(p.relative_to(folder)) for p in folder.rglob("*.yaml"))
    assert shipped and folder == REPO / "configs"
    assert [f for f in shipped if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []


def test_config_loader_finds_the_installed_configs(tmp_path):
    """In a plain install pointclora/config.py sits beside pointclora/configs (no checkout configs/):
    a bare name, with its _base_ files, resolves there."""
    import importlib.util
    import shutil

    package = tmp_path / "site-packages" / "pointclora"
    package.mkdir(parents=True)
    shutil.copy(REPO / "pointclora" / "config.py", package / "config.py")
    shutil.copytree(REPO / "configs", package / "configs")
    spec = importlib.util.spec_from_file_location("pointclora._installed_config", package / "config.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.resolve_config_path("demo_clora.yaml") == package / "configs" / "demo_clora.yaml"
    assert module.load_config("demo_clora")["model"]["NAME"] == "PointMAE"
