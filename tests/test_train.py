"""tools/train.py end to end on tiny generated data: classification and part segmentation, full
fine-tuning and CLoRA+CoTo, exact resume, --test, bad input, DDP with 2 gloo processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_tool, tiny_demo_data
from pointclora.engine.logging import read_csv

REPO = Path(__file__).resolve().parents[1]
BASES = REPO / "configs" / "_base_"
TINY = "trans_dim: 32, num_heads: 2, group_size: 8, num_group: 8, encoder_dims: 32"
TRAIN = "{epochs: 2, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, amp: false}"
CONFIGS = {
    "cls": f"""_base_: {BASES}/scanobjectnn.yaml
model: {{{TINY}, depth: 2, drop_path_rate: 0.1}}
dataset: {{root: {{data}}/ScanObjectNN, npoints: 64, train_transforms: [scale_translate]}}
train: {TRAIN}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""",
    "seg": f"""_base_: {BASES}/shapenetpart.yaml
model: {{{TINY}, depth: 3, drop_path_rate: 0.1}}
dataset: {{root: {{data}}, npoints: 64}}
train: {TRAIN}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""",
}
ADAPTERS = {
    "full": "",
    "clora_coto": "adapter: {method: clora, rank: 4, num_bases: 2, coto: true, coto_p_start: 0.5}\n",
}
SEG_HEAD = "[label_conv, propagation_0, convs1, convs2, convs3, bns1, bns2]"


CLI = load_tool("train")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ScanObjectNN", "ShapeNetPart"))


def make_config(tmp_path: Path, data: Path, task: str, adapter: str) -> Path:
    text = CONFIGS[task].replace("{data}", str(data)) + ADAPTERS[adapter]
    if adapter != "full" and task == "seg":
        text = text.rstrip("}\n") + f", trainable_modules: {SEG_HEAD}}}\n"
    path = tmp_path / f"{task}_{adapter}.yaml"
    path.write_text(text)
    return path


def train(config: Path, out: Path, *extra: str) -> int:
    return CLI.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data):
    """Cache of finished 2-epoch runs keyed by (task, adapter), shared by the tests below."""
    cache = {}

    def get(task: str, adapter: str) -> Path:
        if (task, adapter) not in cache:
            tmp = tmp_path_factory.mktemp(f"{task}_{adapter}")
            assert train(make_config(tmp, data, task, adapter), tmp / "out") == 0
            cache[(task, adapter)] = tmp / "out"
        return cache[(task, adapter)]

    return get


@pytest.mark.parametrize("task", ["cls", "seg"])
@pytest.mark.parametrize("adapter", ["full", "clora_coto"])
def test_fit_writes_outputs_and_loss_goes_down(runs, task, adapter):
    out = runs(task, adapter)
    for name in ("ckpt-best.pth", "ckpt-last.pth", "config.yaml", "metrics.csv", "curves.png", "results.json"):
        assert (out / name).is_file(), name
    assert any((out / "tb").iterdir())
    assert (out / "adapter-best.safetensors").is_file() == (adapter != "full")
    rows = read_csv(out / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[1]["train/loss"] < rows[0]["train/loss"]
    results = json.loads((out / "results.json").read_text())
    assert results["selected_on"] == "test" and results["best_val"]["split"] == "test"
    key = "val/oa" if task == "cls" else "val/ins_miou"
    assert results["best_val"][key.split("/")[1]] == max(r[key] for r in rows)
    params = results["parameters"]
    assert (params["trainable"] < params["total"]) == (adapter != "full")
    if adapter == "clora_coto":
        assert 0 < rows[0]["coto/active_fraction"] <= 1 and params["adapter"] > 0


def same(a, b) -> bool:
    """Exact, recursive equality of nested dicts / lists / tensors / numbers."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        return torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def _strip_timing(rows):
    return [{k: v for k, v in r.items() if k not in ("throughput", "epoch_time_s")} for r in rows]


@pytest.mark.parametrize("task", ["cls"])
def test_resume_after_kill_equals_straight_run(runs, data, tmp_path, task):
    straight = runs(task, "clora_coto")
    config = make_config(tmp_path, data, task, "clora_coto")
    out = tmp_path / "out"
    assert train(config, out, "--max-epochs-this-run", "1") == 0  # the "kill" after epoch 1
    assert torch.load(out / "ckpt-last.pth", weights_only=False)["epoch"] == 1
    assert not (out / "results.json").exists()
    assert train(config, out, "--resume") == 0
    a = torch.load(straight / "ckpt-last.pth", weights_only=False)
    b = torch.load(out / "ckpt-last.pth", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["best"] == b["best"] and same(a["coto"], b["coto"]) and same(a["optimizer"], b["optimizer"])
    assert same(a["scheduler"], b["scheduler"]) and same(a["rng"][0]["torch"], b["rng"][0]["torch"])
    assert _strip_timing(read_csv(straight / "metrics.csv")) == _strip_timing(read_csv(out / "metrics.csv"))


@pytest.mark.parametrize("task", ["cls", "seg"])
def test_test_mode_reproduces_stored_best(runs, data, tmp_path, task):
    out = runs(task, "clora_coto")
    config = make_config(tmp_path, data, task, "clora_coto")
    assert train(config, out, "--test", "--save-predictions") == 0
    result = json.loads((out / "test_results.json").read_text())
    best = torch.load(out / "ckpt-best.pth", weights_only=False)["best"]
    for key, value in result["metrics"].items():
        assert value == best[key], key
    preds = np.load(out / "predictions.npz")
    label, pred = ("label", "pred") if task == "cls" else ("seg", "pred_seg")
    assert len(preds[pred]) == len(preds[label]) == len(preds["points"]) > 0 and len(preds["class_names"]) > 0
    if task == "cls":
        assert result["metrics"]["oa"] == pytest.approx(100 * (preds["pred"] == preds["label"]).mean())
    assert train(config, out, "--test", "--vote", "3") == 0
    voted = json.loads((out / "test_results.json").read_text())
    assert voted["votes"] == 3 and all(0 <= v <= 100 for v in voted["metrics"].values())


@pytest.mark.parametrize(
    "change, message",
    [
        ("dataset.root=/nonexistent/scan", "/nonexistent/scan"),
        ("model.NAME=PointNope", "PointNope"),
        ("adapter.method=dora", "method"),
        ("ckpts=/nonexistent/pretrain.pth", "/nonexistent/pretrain.pth"),
        ("model.cls_dim=10", "cls_dim"),
        ("train.batch_size=64", "train.batch_size"),
        ("dataset.NAME=ScanNet", "ScanNet"),
    ],
)
def test_bad_input_stops_before_training(data, tmp_path, capsys, change, message):
    config = make_config(tmp_path, data, "cls", "full")
    assert train(config, tmp_path / "out", "--opts", change) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]
    assert not (tmp_path / "out" / "ckpt-last.pth").exists()


def test_pretrained_backbone_is_loaded_and_stays_frozen(data, tmp_path, capsys):
    """--ckpts with an official-layout Point-MAE pre-training checkpoint ({'base_model': ...},
    MAE_encoder.* keys): the backbone starts from it, and CLoRA leaves it (and its BN stats) unchanged."""
    from pointclora.models import build_model

    torch.manual_seed(1)
    pre = build_model({"NAME": "PointMAEPretrain", "trans_dim": 32, "depth": 2, "num_heads": 2, "group_size": 8,
                       "num_group": 8, "encoder_dims": 32, "drop_path_rate": 0.0, "decoder_depth": 1,
                       "decoder_num_heads": 2})
    torch.save({"base_model": pre.state_dict()}, tmp_path / "pretrain.pth")
    config = make_config(tmp_path, data, "cls", "clora_coto")
    out = tmp_path / "out"
    assert train(config, out, "--ckpts", str(tmp_path / "pretrain.pth"), "--opts", "train.epochs=1") == 0
    assert "loaded pre-trained weights" in capsys.readouterr().out
    tuned = torch.load(out / "ckpt-best.pth", weights_only=False)["model"]
    for key in ("encoder.first_conv.0.weight", "encoder.first_conv.1.running_mean", "pos_embed.0.weight"):
        assert torch.equal(tuned[key], pre.state_dict()["MAE_encoder." + key]), key


def test_missing_demo_data_is_generated_first(tmp_path, monkeypatch):
    """dataset.generate_demo: the demo data is written there when the dataset root is missing."""
    from pointclora.datasets import demo
    from pointclora.engine.builders import build_datasets
    from pointclora.engine.distributed import DistInfo

    real = demo.make_demo_data
    monkeypatch.setattr(demo, "make_demo_data", lambda root, seed=0: real(
        root, seed, train_per_class=1, test_per_class=1, npoints=64, datasets=("ScanObjectNN",)))
    cfg = {"NAME": "ScanObjectNN", "root": str(tmp_path / "demo" / "ScanObjectNN"), "variant": "OBJ_BG",
           "npoints": 64, "generate_demo": str(tmp_path / "demo")}
    dsets = build_datasets(cfg, DistInfo(), ["train", "test"], "train")
    assert len(dsets["train"]) == len(dsets["test"]) == 7
    assert (tmp_path / "demo" / "demo_info.json").is_file()
    with pytest.raises(FileNotFoundError):
        build_datasets({**cfg, "root": str(tmp_path / "elsewhere"), "generate_demo": None}, DistInfo(), ["train"])


def test_checkpoint_that_does_not_fit_is_refused(data, tmp_path, capsys):
    wrong = tmp_path / "wrong.pth"
    torch.save({"model": {"foo.weight": torch.zeros(2)}}, wrong)
    config = make_config(tmp_path, data, "cls", "full")
    assert train(config, tmp_path / "out", "--ckpts", str(wrong)) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "wrong.pth" in err
    assert train(config, tmp_path / "out2", "--resume") == 2
    assert "--resume" in capsys.readouterr().err


def test_ddp_two_gloo_processes_match_one_process(runs, data, tmp_path):
    """2 ranks train and write one set of files; evaluating the checkpoint with 2 ranks gives
    exactly the single-process metrics (unpadded shards, summed confusion matrices)."""
    config = make_config(tmp_path, data, "cls", "clora_coto")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
            str(REPO / "tools" / "train.py"), "--config", str(config), "--output-dir", str(out), "--device", "cpu",
            "--opts", "train.epochs=1"]
    proc = subprocess.run(base, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and proc.stdout.count("==== summary ====") == 1
    proc = subprocess.run(base + ["--test"], env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads((out / "test_results.json").read_text())
    assert two["world_size"] == 2
    assert train(config, out, "--test", "--opts", "train.epochs=1") == 0
    one = json.loads((out / "test_results.json").read_text())
    assert one["world_size"] == 1 and one["metrics"] == two["metrics"]
    best = torch.load(out / "ckpt-best.pth", weights_only=False)["best"]
    assert all(one["metrics"][k] == best[k] for k in one["metrics"])
