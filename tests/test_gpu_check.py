"""scripts/gpu_check.sh: its CPU dry run passes, a failed stage is recorded and the next still
runs; bench/train_step.py's attention x precision table (both used by the one-shot GPU run)."""
import os
import subprocess
import sys

import pytest
import torch

from bench import train_step  # the checkout's root is on sys.path (conftest)
from conftest import REPO as ROOT


def run_check(tmp_path, *args):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def summary_rows(tmp_path):
    lines = (tmp_path / "summary.md").read_text().splitlines()
    return {cells[1].strip(): cells[2].strip() for cells in (line.split("|") for line in lines)
            if len(cells) > 4 and cells[1].strip() not in ("stage", "---")}


def test_cpu_dry_run_passes(tmp_path):
    res = run_check(tmp_path, "--device", "cpu", "--small", "--stages", "env,build,assert,compare,edge")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert summary_rows(tmp_path) == {s: "pass" for s in ("env", "build", "assert", "compare", "edge")}
    checks = (tmp_path / "checks.md").read_text()
    assert "## CPU kernels vs reference" in checks and "## Edge cases on cpu" in checks
    assert "| FAIL |" not in checks and checks.count("| pass |") >= 40
    for name in ("FPS", "kNN", "ball query", "three-NN", "Chamfer grad xyz2", "gather (backward", "group (forward"):
        assert f"| {name}" in checks
    assert "overall: PASS" in (tmp_path / "summary.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checks.md", "env.txt", "gpu_check.log", "summary.md"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the failure path where there is no GPU")
def test_a_failed_stage_is_recorded_and_the_next_still_runs(tmp_path):
    res = run_check(tmp_path, "--device", "cuda", "--stages", "env,assert,edge")
    assert res.returncode == 1
    assert summary_rows(tmp_path) == {"env": "pass", "assert": "FAIL (exit 1)", "edge": "FAIL (exit 2)"}
    log = (tmp_path / "gpu_check.log").read_text()
    assert "cuda_ext._C was built without CUDA" in log and "torch sees no CUDA device" in log
    assert "overall: FAIL" in (tmp_path / "summary.md").read_text()


def test_bad_arguments_are_one_line(tmp_path):
    res = run_check(tmp_path, "--device", "tpu")
    assert res.returncode == 2 and res.stderr.strip() == "gpu_check.sh: --device must be cuda or cpu, got 'tpu'"


def test_train_step_attention_precision_table(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "ts.md"
    tiny = '{"trans_dim": 32, "encoder_dims": 32, "depth": 1, "num_heads": 2, "num_group": 8, "group_size": 8}'
    assert train_step.main(["--methods", "full", "clora", "--attention", "explicit", "sdpa", "--precision", "fp32",
                            "bf16", "--reps", "1", "--warmup", "0", "--no-memory", "--batch", "2", "--npoints", "64",
                            "--model-opts", tiny, "--out", str(out)]) == 0
    text = out.read_text()
    assert "## Attention and precision" in text and "attention explicit, fp32" in text
    table = text.split("## Attention and precision")[1]
    rows = [line for line in table.splitlines() if line.startswith("| full") or line.startswith("| CLoRA")]
    assert len(rows) == 8  # 2 methods x {explicit, sdpa} x {fp32, bf16}
    assert rows[0].split("|")[2:4] == [" explicit ", " fp32 "] and rows[0].split("|")[6].strip() == "1.00"
    with pytest.raises(SystemExit):
        train_step.parse_args(["--compare-methods", "lora", "--methods", "full"])


def test_train_step_append_keeps_the_earlier_report(tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / "ts.md"
    out.write_text("# Training step: CPU\n\nthe earlier run\n")
    tiny = '{"trans_dim": 32, "encoder_dims": 32, "depth": 1, "num_heads": 2, "num_group": 8, "group_size": 8}'
    assert train_step.main(["--methods", "full", "--attention", "explicit", "sdpa", "--reps", "1", "--warmup", "0",
                            "--no-memory", "--no-inference", "--batch", "2", "--npoints", "64", "--model-opts", tiny,
                            "--append", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Training step: CPU\n\nthe earlier run\n\n## Training step: CPU\n")
    assert "Inference latency" not in text and text.count("| full fine-tuning | sdpa | fp32 |") == 1
