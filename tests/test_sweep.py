"""tools/sweep.py and tools/train.py --folds: the grid, resume of a killed sweep, the mean ± std reports."""
import csv
import json
import sys
from pathlib import Path

import pytest

from conftest import TINY_CLS_MODEL, load_tool
from pointclora import sweep
from pointclora.sweep import execute, grid, report

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config(tiny_cls_config):
    return tiny_cls_config


def test_parse_indices():
    assert grid.parse_indices("0-9", "--folds") == list(range(10))
    assert grid.parse_indices("0,3,5", "--folds") == [0, 3, 5]
    assert grid.parse_indices("0-2,7,2", "--folds") == [0, 1, 2, 7]
    for bad in ("a", "3-1", "-1", "1-"):
        with pytest.raises(ValueError, match="--folds"):
            grid.parse_indices(bad, "--folds")


def test_plan_folders_and_run_configs():
    runs = grid.plan([0, 1], ["full", "clora"], [2])
    assert [r.name for r in runs] == ["full/fold2/seed0", "full/fold2/seed1", "clora/fold2/seed0", "clora/fold2/seed1"]
    assert grid.Run(None, None, 3).name == "seed3" and grid.Run(None, None, 3).setting == "config"
    base = {"adapter": {"method": "clora", "trainable_modules": ["head_x"]}, "dataset": {"NAME": "X"}, "train": {}}
    full = grid.run_config(base, runs[1])
    assert full["adapter"] is None and full["dataset"]["fold"] == 2 and full["train"]["seed"] == 1
    lora = grid.run_config(base, grid.Run("lora", None, 0))
    assert lora["adapter"]["method"] == "lora" and lora["adapter"]["trainable_modules"] == ["head_x"]
    assert grid.run_config(base, grid.Run("clora_coto", None, 0))["adapter"]["coto"] is True
    assert base["adapter"]["method"] == "clora"  # the base config is not modified


def test_two_seed_sweep_tables_and_skip_on_rerun(tmp_path, config, capsys):
    out = tmp_path / "sweep"
    argv = ["--config", str(config), "--seeds", "0", "1", "--methods", "full,clora", "--out", str(out),
            "--device", "cpu", "--in-process", "--opts", "train.epochs=1"]
    assert load_tool("sweep").main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "sweep.json").read_text())
    assert [s["setting"] for s in data["settings"]] == ["full", "clora"]
    for s in data["settings"]:
        stat = s["protocols"][report.BEST_TEST]["oa"]
        assert s["runs"] == 2 and len(stat["values"]) == 2 and s["seeds"] == [0, 1]
        assert stat["mean"] == pytest.approx(sum(stat["values"]) / 2)
        assert stat["std"] == pytest.approx(abs(stat["values"][0] - stat["values"][1]) / 2 ** 0.5)
        last = s["protocols"][report.LAST]["oa"]["values"]
        assert all(lv <= bv + 1e-9 for lv, bv in zip(last, stat["values"]))  # best test epoch >= last epoch
        assert s["gflops"] > 0 and s["wall_s"]["mean"] > 0
    full, clora = data["settings"]
    assert clora["trainable"] < full["trainable"]
    text = (out / "sweep.md").read_text()
    assert "| full fine-tuning | 2 |" in text and "| CLoRA r=8 p=4 (input) | 2 |" in text
    assert "best test epoch (public protocol): OA (%)" in text and "test @ last epoch: OA (%)" in text
    assert "±" in text and text in printed
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["name"] for r in rows] == ["full/seed0", "full/seed1", "clora/seed0", "clora/seed1"]
    assert float(rows[0][f"{report.BEST_TEST}/oa"]) == full["protocols"][report.BEST_TEST]["oa"]["values"][0]
    assert (out / "sweep.png").stat().st_size > 1000
    results = {p: p.stat().st_mtime_ns for p in out.rglob("results.json")}
    assert len(results) == 4
    assert load_tool("sweep").main(argv) == 0  # again: every run is skipped, the reports are rebuilt
    assert capsys.readouterr().out.count("skipping ") == 4
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results.json")} == results
    assert json.loads((out / "sweep.json").read_text())["settings"] == data["settings"]


def test_killed_run_resumes_and_finished_ones_are_skipped(tmp_path, config):
    out = tmp_path / "sweep"
    train = load_tool("train")
    # seed 0 finished (1 epoch: the sweep keeps it, with a warning), seed 1 killed after its first epoch
    assert train.main(["--config", str(config), "--output-dir", str(out / "seed0"), "--device", "cpu", "--seed", "0",
                       "--opts", "train.epochs=1"]) == 0
    assert train.main(["--config", str(config), "--output-dir", str(out / "seed1"), "--device", "cpu", "--seed", "1",
                       "--max-epochs-this-run", "1"]) == 0
    lines = []
    summary = sweep.run_sweep(str(config), out, seeds=[0, 1], device="cpu", in_process=True, log=lines.append)
    assert lines[0] == f"skipping seed0: finished ({out / 'seed0' / 'results.json'})"
    assert lines[1].startswith("warning: seed0 finished with another config (train.epochs: 1 -> 2)")
    assert lines[2].startswith("resuming seed1") and lines[3].startswith("finished seed1")
    assert "resuming after epoch 1" in (out / "seed1.log").read_text()
    from pointclora.engine.logging import read_csv

    assert [r["epoch"] for r in read_csv(out / "seed1" / "metrics.csv")] == [1, 2]
    assert summary["settings"][0]["runs"] == 2 and not summary["failed"]


def test_failed_run_is_reported_and_the_rest_go_on(tmp_path, config):
    lines = []
    summary = sweep.run_sweep(str(config), tmp_path / "s", seeds=[0], methods=["full"], device="cpu",
                              opts=["train.batch_size=1000"], in_process=True, log=lines.append)
    assert summary["failed"] == {"full/seed0": 2} and summary["settings"] == []
    assert any(ln.startswith("FAILED full/seed0 (exit 2): error: ") and "batch_size=1000" in ln for ln in lines)
    assert "## Failed runs" in (tmp_path / "s" / "sweep.md").read_text()


def test_subprocess_slots_one_run_per_gpu(tmp_path, monkeypatch):
    """The scheduler with a stand-in for tools/train.py: two GPUs, four runs, two at a time."""
    fake = tmp_path / "fake_train.py"
    fake.write_text("import json, os, sys, time\n"
                    "out = sys.argv[sys.argv.index('--output-dir') + 1]\n"
                    "os.makedirs(out, exist_ok=True)\n"
                    "open(os.path.join(out, 'gpu'), 'w').write(os.environ.get('CUDA_VISIBLE_DEVICES', ''))\n"
                    "time.sleep(0.5)\n"
                    "json.dump({}, open(os.path.join(out, 'results.json'), 'w'))\n")
    monkeypatch.setattr(execute, "TRAIN_TOOL", fake)
    monkeypatch.setattr(execute, "visible_gpus", lambda: ["4", "6"])
    envs = execute.worker_envs(parallel=1)
    assert envs == [{"CUDA_VISIBLE_DEVICES": "4"}, {"CUDA_VISIBLE_DEVICES": "6"}]
    jobs = [execute.make_job(f"seed{i}", tmp_path / "c.yaml", tmp_path / f"seed{i}", "cuda", None) for i in range(4)]
    lines = []
    status = execute.execute(jobs, envs, log=lines.append)
    assert status == {f"seed{i}": 0 for i in range(4)}
    gpus = [(tmp_path / f"seed{i}" / "gpu").read_text() for i in range(4)]
    assert sorted(gpus) == ["4", "4", "6", "6"] and gpus[:2] in (["4", "6"], ["6", "4"])
    assert all(json.loads((tmp_path / f"seed{i}" / "sweep_run.json").read_text())["wall_s"] > 0.4 for i in range(4))
    monkeypatch.setattr(execute, "visible_gpus", lambda: [])
    assert execute.worker_envs(parallel=2, threads=1) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 2


@pytest.mark.parametrize("extra, message", [
    (["--folds", "0-1"], "--folds: dataset ScanObjectNN has no folds"),
    (["--methods", "full,dora"], "--methods: unknown method 'dora'"),
    (["--seeds", "1", "1"], "--seeds: expected distinct values"),
    (["--opts", "train.epochs=0"], "train.epochs"),
])  # fmt: skip
def test_sweep_bad_input_is_one_line(tmp_path, config, capsys, extra, message):
    argv = ["--config", str(config), "--out", str(tmp_path / "s"), "--in-process", *extra]
    assert load_tool("sweep").main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_train_folds_reports_mean_and_std(tmp_path, capsys):
    from pointclora.datasets.demo import make_demo_data

    make_demo_data(tmp_path / "demo", seed=0, train_per_class=4, test_per_class=2, npoints=48, datasets=("ModelNet40",))
    assert load_tool("make_fewshot").main(["--modelnet", str(tmp_path / "demo"), "--out", str(tmp_path / "fs"), "--ways", "2",
                                       "--shots", "4", "--folds", "0-1", "--test-per-class", "2", "--points", "48"]) == 0
    cfg = tmp_path / "fs.yaml"
    cfg.write_text(f"""_base_: {REPO}/configs/fewshot_clora.yaml
model: {{{TINY_CLS_MODEL}}}
dataset: {{root: {tmp_path / 'fs'}, way: 2, shot: 4, npoints: 32, fps_pool: 40}}
train: {{epochs: 1, batch_size: 4, num_workers: 0, pin_memory: false, amp: false}}
scheduler: {{warmup_epochs: 0}}
""")
    train = load_tool("train")
    argv = ["--config", str(cfg), "--output-dir", str(tmp_path / "runs"), "--device", "cpu", "--folds", "0-1"]
    assert train.main(argv) == 0
    text = capsys.readouterr().out
    data = json.loads((tmp_path / "runs" / "sweep.json").read_text())
    (setting,) = data["settings"]
    assert setting["folds"] == [0, 1] and setting["runs"] == 2
    assert f"| clora (as configured) | 2 | {setting['trainable']:,} |" in text
    assert (tmp_path / "runs" / "fold1" / "seed0" / "results.json").is_file()
    assert train.main(argv + ["--test"]) == 2
    assert "--folds cannot be combined with --test" in capsys.readouterr().err
