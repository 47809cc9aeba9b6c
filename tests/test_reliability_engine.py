"""Faults and bad input of tools/train.py (issue 16): one line naming the culprit, the right exit
status, and nothing lost or half-written. Tiny models on tiny generated data (CPU, seconds)."""
import errno
import json
import os
import re
from pathlib import Path

import pytest
import torch

from conftest import TINY_CLS_MODEL as TINY, TINY_CLS_TRAIN as TRAIN  # the tiny model / train sections
from conftest import load_tool, single_thread, tiny_demo_data, write_tiny_scan_config
from pointclora.engine.logging import read_csv

REPO = Path(__file__).resolve().parents[1]
BASES = REPO / "configs" / "_base_"


CLI = load_tool("train")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ScanObjectNN", "ModelNet40"))


def scan_config(tmp_path: Path, data: Path, extra: str = "") -> Path:
    return write_tiny_scan_config(tmp_path / "cls.yaml", data, npoints=64, extra=extra)


def train(config: Path, out: Path, *extra: str) -> int:
    return CLI.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


def one_error_line(capsys) -> str:
    """The one line a failed run prints on stderr (tqdm's progress bars left out)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if line.strip() and not re.match(r"epoch \d+/\d+:", line)]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("throughput", "epoch_time_s")} for r in rows]


def temp_files(out: Path) -> list:
    return sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory, data):
    """An uninterrupted 2-epoch run."""
    tmp = tmp_path_factory.mktemp("straight")
    with single_thread():  # as in the tests (one_thread): float sums depend on the thread count
        assert train(scan_config(tmp, data), tmp / "out") == 0
    return tmp / "out"


# ----------------------------------------------------------------------------- kills, CSV, temp files
class Killed(BaseException):
    """Stands for a SIGKILL: nothing after it runs."""


def test_kill_between_checkpoint_and_csv_loses_no_rows(data, straight, tmp_path, monkeypatch):
    from pointclora.engine.logging import RunLogger

    config, out = scan_config(tmp_path, data), tmp_path / "out"
    real = RunLogger.log_epoch

    def killed_at_epoch_2(self, epoch, values):
        if epoch == 2:
            raise Killed()
        return real(self, epoch, values)

    monkeypatch.setattr(RunLogger, "log_epoch", killed_at_epoch_2)
    with pytest.raises(Killed):
        train(config, out)
    assert torch.load(out / "ckpt-last.pth", weights_only=False)["epoch"] == 2
    assert [r["epoch"] for r in read_csv(out / "metrics.csv")] == [1]  # the row of epoch 2 is not written
    monkeypatch.setattr(RunLogger, "log_epoch", real)
    (out / ".ckpt-last.pth.x1y2z3.tmp").write_bytes(b"half a checkpoint")  # left by an earlier kill
    assert train(config, out, "--resume") == 0
    assert _strip_timing(read_csv(out / "metrics.csv")) == _strip_timing(read_csv(straight / "metrics.csv"))
    assert temp_files(out) == []


def test_test_results_are_written_through_a_temporary_file(data, straight, tmp_path, monkeypatch):
    """A kill while --test writes test_results.json leaves the previous file whole."""
    config, out = scan_config(tmp_path, data), tmp_path / "out"
    args = ("--test", "--ckpts", str(straight / "ckpt-best.pth"))
    assert train(config, out, *args) == 0
    before = (out / "test_results.json").read_text()
    real = os.replace

    def killed_at_rename(src, dst):
        if Path(dst).name == "test_results.json":
            raise Killed()
        return real(src, dst)

    monkeypatch.setattr(os, "replace", killed_at_rename)
    with pytest.raises(Killed):
        train(config, out, *args, "--vote", "2")
    assert (out / "test_results.json").read_text() == before
    assert json.loads(before)["votes"] == 1


def test_resumed_csv_keeps_integer_epochs(data, tmp_path):
    config, out = scan_config(tmp_path, data), tmp_path / "out"
    assert train(config, out, "--max-epochs-this-run", "1") == 0
    assert train(config, out, "--resume") == 0
    lines = (out / "metrics.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines] == ["epoch", "1", "2"]


def test_ctrl_c_prints_one_line_and_exits_130(data, tmp_path, capsys, monkeypatch):
    from pointclora.engine.trainer import Trainer

    config, out = scan_config(tmp_path, data), tmp_path / "out"
    real = Trainer.train_one_epoch

    def interrupted_in_epoch_2(self, loader, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return real(self, loader, epoch)

    monkeypatch.setattr(Trainer, "train_one_epoch", interrupted_in_epoch_2)
    capsys.readouterr()
    assert train(config, out) == 130
    assert one_error_line(capsys) == "interrupted after epoch 1; continue with --resume"
    assert torch.load(out / "ckpt-last.pth", weights_only=False)["epoch"] == 1 and temp_files(out) == []
    monkeypatch.setattr(Trainer, "train_one_epoch", real)
    assert train(config, out, "--resume") == 0


def test_full_disk_names_the_file_and_keeps_the_previous_checkpoint(data, tmp_path, capsys, monkeypatch):
    config, out = scan_config(tmp_path, data), tmp_path / "out"
    assert train(config, out, "--max-epochs-this-run", "1") == 0
    before = {name: (out / name).read_bytes() for name in ("ckpt-last.pth", "ckpt-best.pth")}

    def full_disk(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert train(config, out, "--resume") == 1
    line = one_error_line(capsys)
    assert "No space left on device" in line and "intact" in line
    assert str(out / "ckpt-best.pth") in line or str(out / "ckpt-last.pth") in line
    assert {name: (out / name).read_bytes() for name in before} == before
    assert temp_files(out) == []


def test_output_dir_naming_a_file(data, tmp_path, capsys):
    (tmp_path / "taken").write_text("a file")
    assert train(scan_config(tmp_path, data), tmp_path / "taken") == 2
    line = one_error_line(capsys)
    assert "--output-dir" in line and str(tmp_path / "taken") in line


# ----------------------------------------------------------------------------- resume with changed config
def test_resume_with_changed_key_is_refused_then_applied_with_override(data, tmp_path, capsys):
    config, out = scan_config(tmp_path, data), tmp_path / "out"
    assert train(config, out, "--max-epochs-this-run", "1") == 0
    capsys.readouterr()
    assert train(config, out, "--resume", "--opts", "optimizer.lr=0.01") == 2
    line = one_error_line(capsys)
    assert "optimizer.lr" in line and "--resume-override" in line
    assert torch.load(out / "ckpt-last.pth", weights_only=False)["epoch"] == 1  # nothing trained
    assert train(config, out, "--resume", "--resume-override", "--opts", "optimizer.lr=0.01") == 0
    ckpt = torch.load(out / "ckpt-last.pth", weights_only=False)
    assert ckpt["config"]["optimizer"]["lr"] == 0.01 and ckpt["scheduler"]["base_lrs"] == [0.01, 0.01]
    assert "lr: 0.01" in (out / "config.yaml").read_text()
    results = json.loads((out / "results.json").read_text())
    assert results["resume_overrides"] == [{"after_epoch": 1, "changes": ["optimizer.lr: 0.002 -> 0.01"]}]


def test_resume_with_fewer_epochs_than_done_says_so(straight, data, tmp_path, capsys):
    config = scan_config(tmp_path, data)
    capsys.readouterr()
    assert train(config, straight, "--resume", "--opts", "train.epochs=1") == 2
    assert "train.epochs" in one_error_line(capsys)
    assert train(config, straight, "--resume", "--resume-override", "--opts", "train.epochs=1") == 2
    line = one_error_line(capsys)
    assert "2 epochs" in line and "train.epochs=1" in line


def test_resume_override_refuses_structural_keys(data, tmp_path, capsys):
    config, out = scan_config(tmp_path, data), tmp_path / "out"
    assert train(config, out, "--max-epochs-this-run", "1") == 0
    capsys.readouterr()
    assert train(config, out, "--resume", "--resume-override", "--opts", "train.batch_size=2") == 2
    assert "train.batch_size" in one_error_line(capsys)


# ----------------------------------------------------------------------------- config values
@pytest.mark.parametrize("opts, key", [
    (["optimizer.betas=[0.9]"], "optimizer.betas"),
    (["optimizer.betas=[0.9, 1.5]"], "optimizer.betas"),
    (["optimizer.lr=.nan"], "optimizer.lr"),
    (["optimizer.weight_decay=.inf"], "optimizer.weight_decay"),
])
def test_bad_config_values_name_the_key(data, tmp_path, capsys, opts, key):
    assert train(scan_config(tmp_path, data), tmp_path / "out", "--opts", *opts) == 2
    assert key in one_error_line(capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "0"])
def test_max_epochs_this_run_must_be_positive(data, tmp_path, capsys, value):
    assert train(scan_config(tmp_path, data), tmp_path / "out", "--max-epochs-this-run", value) == 2
    line = one_error_line(capsys)
    assert "--max-epochs-this-run" in line and value in line


@pytest.mark.parametrize("value", ["-3", "0"])
def test_profile_flops_points_must_be_positive(capsys, value):
    cli = load_tool("profile_flops")
    assert cli.main(["--config", "demo_clora.yaml", "--points", value]) == 2
    line = one_error_line(capsys)
    assert "--points" in line and value in line


# ----------------------------------------------------------------------------- configs that can never work
@pytest.mark.parametrize("opts, keys", [
    (["model.num_group=128"], ("model.num_group", "dataset.npoints")),
    (["model.group_size=100"], ("model.group_size", "dataset.npoints")),
])
def test_groups_larger_than_the_cloud_stop_before_training(data, tmp_path, capsys, opts, keys):
    assert train(scan_config(tmp_path, data), tmp_path / "out", "--opts", *opts) == 2
    line = one_error_line(capsys)
    assert all(k in line for k in keys)
    assert not (tmp_path / "out" / "ckpt-last.pth").exists()


def test_warmup_longer_than_training_stops_before_demo_data_is_generated(tmp_path, capsys):
    """The demo config cut to 1 epoch keeps its 2 warm-up epochs: refused while loading the config."""
    demo = tmp_path / "demo"
    assert train("demo_clora.yaml", tmp_path / "out", "--opts", "train.epochs=1",
                 f"dataset.root={demo}/ScanObjectNN", f"dataset.generate_demo={demo}") == 2
    line = one_error_line(capsys)
    assert "scheduler.warmup_epochs" in line and "train.epochs" in line and "demo_clora.yaml" in line
    assert not demo.exists() and not (tmp_path / "out").exists()


def test_classification_on_an_unlabelled_folder_stops_before_training(tmp_path, capsys):
    import numpy as np

    folder = tmp_path / "scans"
    folder.mkdir()
    for i in range(8):
        np.save(folder / f"s{i}.npy", np.random.default_rng(i).normal(size=(64, 3)).astype(np.float32))
    config = tmp_path / "cfg.yaml"
    config.write_text(f"""_base_: {BASES}/finetune.yaml
model: {{{TINY}, cls_dim: 15}}
dataset: {{NAME: PointCloudFolder, root: {folder}, npoints: 64}}
train: {TRAIN}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""")
    assert train(config, tmp_path / "out") == 2
    line = one_error_line(capsys)
    assert "PointCloudFolder" in line and "label" in line


def test_generate_demo_only_fills_the_demo_folder(tmp_path, monkeypatch):
    from pointclora.datasets import demo
    from pointclora.engine.builders import build_datasets
    from pointclora.engine.distributed import DistInfo

    calls = []
    monkeypatch.setattr(demo, "make_demo_data", lambda root, seed=0: calls.append(root))
    cfg = {"NAME": "ScanObjectNN", "root": str(tmp_path / "dmeo" / "ScanObjectNN"), "variant": "OBJ_BG",
           "npoints": 64, "generate_demo": str(tmp_path / "demo")}
    with pytest.raises(FileNotFoundError, match="generate_demo"):
        build_datasets(cfg, DistInfo(), ["train"], "train")
    assert calls == [] and not (tmp_path / "demo").exists() and not (tmp_path / "dmeo").exists()


# ----------------------------------------------------------------------------- data errors during training
def modelnet_config(tmp_path: Path, data: Path, workers: int, extra: str = "") -> Path:
    path = tmp_path / f"mn{workers}.yaml"
    path.write_text(f"""_base_: {BASES}/modelnet40.yaml
model: {{{TINY}}}
dataset: {{root: {data}, npoints: 64, fps_pool: null, train_transforms: [scale_translate]{extra}}}
train: {{epochs: 1, batch_size: 4, val_batch_size: 8, num_workers: {workers}, pin_memory: false, amp: false}}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""")
    return path


@pytest.fixture
def bad_data(data, tmp_path):
    """A copy of the demo ModelNet40 whose first training shape has a short row 3."""
    import shutil

    root = tmp_path / "mn"
    shutil.copytree(data / "modelnet40_normal_resampled", root / "modelnet40_normal_resampled")
    folder = root / "modelnet40_normal_resampled"
    first = (folder / "modelnet40_train.txt").read_text().split()[0]
    bad = folder / first.rsplit("_", 1)[0] / f"{first}.txt"
    lines = bad.read_text().splitlines()
    lines[2] = "0.1,0.2"
    bad.write_text("\n".join(lines) + "\n")
    return root, bad


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_file_mid_epoch_is_one_line_and_exit_2(bad_data, tmp_path, capsys, workers):
    root, bad = bad_data
    out = tmp_path / "out"
    assert train(modelnet_config(tmp_path, root, workers), out) == 2
    line = one_error_line(capsys)
    assert str(bad) in line and "row 3" in line
    assert not (out / "ckpt-last.pth").exists() and not (out / "results.json").exists()
    assert not (out / "metrics.csv").exists() and temp_files(out) == []


def test_on_bad_file_skip_counts_and_lists_the_file(bad_data, tmp_path, capsys):
    root, bad = bad_data
    out = tmp_path / "out"
    assert train(modelnet_config(tmp_path, root, 0, ", on_bad_file: skip"), out) == 0
    results = json.loads((out / "results.json").read_text())
    assert [entry["file"] for entry in results["skipped_files"]] == [str(bad)]
    assert "row 3" in results["skipped_files"][0]["error"]
    assert f"skipped 1 bad file" in capsys.readouterr().out


def test_on_bad_file_must_be_error_or_skip(data, tmp_path, capsys):
    assert train(modelnet_config(tmp_path, data, 0, ", on_bad_file: ignore"), tmp_path / "out") == 2
    assert "dataset.on_bad_file" in one_error_line(capsys)


# ----------------------------------------------------------------------------- tools/pretrain.py: the same rules
PRE = load_tool("pretrain")
PRE_MODEL = ("NAME: PointMAEPretrain, trans_dim: 32, encoder_dims: 32, depth: 2, num_heads: 2, drop_path_rate: 0.0, "
             "group_size: 8, num_group: 8, mask_ratio: 0.6, decoder_depth: 1, decoder_num_heads: 2")


def pretrain_config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "pre.yaml"
    path.write_text(f"""_base_: {BASES}/pretrain.yaml
model: {{{PRE_MODEL}}}
dataset: {{NAME: ScanObjectNN, root: {data}/ScanObjectNN, variant: OBJ_BG, npoints: 64}}
train: {{epochs: 2, batch_size: 4, num_workers: 0, pin_memory: false}}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""")
    return path


def pretrain(config: Path, out: Path, *extra: str) -> int:
    return PRE.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


def test_pretrain_kill_resume_ctrl_c_and_changed_config(data, tmp_path, capsys, monkeypatch):
    from pointclora.engine.logging import RunLogger
    from pointclora.engine.trainer import Trainer as PretrainTrainer  # the one trainer of every task

    config = pretrain_config(tmp_path, data)
    straight = tmp_path / "straight"
    assert pretrain(config, straight) == 0
    out = tmp_path / "out"
    real_log, real_epoch = RunLogger.log_epoch, PretrainTrainer.train_one_epoch

    def killed_at_epoch_1(self, epoch, values):
        raise Killed()

    monkeypatch.setattr(RunLogger, "log_epoch", killed_at_epoch_1)
    with pytest.raises(Killed):
        pretrain(config, out)
    monkeypatch.setattr(RunLogger, "log_epoch", real_log)
    assert not (out / "metrics.csv").exists()
    capsys.readouterr()
    assert pretrain(config, out, "--resume", "--opts", "optimizer.lr=0.01") == 2
    assert "optimizer.lr" in one_error_line(capsys)

    def interrupted(self, loader, epoch):
        raise KeyboardInterrupt

    monkeypatch.setattr(PretrainTrainer, "train_one_epoch", interrupted)
    assert pretrain(config, out, "--resume") == 130
    assert one_error_line(capsys) == "interrupted after epoch 1; continue with --resume"
    monkeypatch.setattr(PretrainTrainer, "train_one_epoch", real_epoch)
    assert pretrain(config, out, "--resume") == 0
    assert _strip_timing(read_csv(out / "metrics.csv")) == _strip_timing(read_csv(straight / "metrics.csv"))
