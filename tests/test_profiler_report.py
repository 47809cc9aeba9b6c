"""Profiles, point-op cost model, reports, latency and the CLI's error path."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pointclora.profiler import point_ops_cost
from pointclora.profiler.latency import measure_latency, time_fn
from pointclora.profiler.report import format_compare, format_result
from pointclora.profiler.summary import profile_model
from conftest import load_tool
from conftest import EXPECTED, G, N, TinyPointMAE, add_lora
from conftest import profiler_points as points

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def results():
    full = profile_model(TinyPointMAE(), (points(2),), name="tiny_full", groups=G)
    lora = profile_model(add_lora(TinyPointMAE(), 2), (points(2),), name="tiny_lora", groups=G,
                         mode="unmerged", per_module=True)
    return full, lora


def test_profile_is_per_sample_and_splits_the_total(results):
    full, lora = results
    assert full.macs == sum(EXPECTED.values()) and full.flops == 2 * full.macs
    assert full.thop_macs == EXPECTED["conv"] + EXPECTED["linear"]
    assert sum(full.categories.values()) == full.macs
    assert full.params["trainable"] == full.params["total"] == sum(p.numel() for p in TinyPointMAE().parameters())
    assert lora.params["trainable"] < lora.params["total"]
    assert lora.train_forward_macs == lora.macs and lora.train_backward_macs < full.train_backward_macs
    assert sum(lora.per_module.values()) == lora.macs
    assert lora.per_module["blocks.blocks.0.attn.qkv.lora_A"] == (G + 1) * 16 * 2


def test_point_ops_priced_from_algorithmic_counts(results):
    ops = {o["op"]: o for o in results[0].point_ops}
    assert ops["furthest_point_sample"]["flops"] == (G - 1) * N * 8
    assert ops["furthest_point_sample"]["comparisons"] == (G - 1) * N * 2
    assert ops["knn"]["flops"] == G * N * 8 and ops["knn"]["comparisons"] == G * N * 2  # log2(4) = 2
    assert ops["gather_operation"] == {"op": "gather_operation", "calls": 1, "flops": 0, "comparisons": 0,
                                       "elements_moved": 3 * G}
    assert results[0].point_ops_flops == (G - 1) * N * 8 + G * N * 8


def test_estimate_grouping_matches_point_mae_scanobjectnn_sizes():
    est = point_ops_cost.estimate_grouping(2048, 128, 32)  # Point-MAE's ScanObjectNN patching
    assert est["furthest_point_sample"].flops == 127 * 2048 * 8
    assert est["knn"].flops == 128 * 2048 * 8 and est["knn"].comparisons == 128 * 2048 * 5


@pytest.mark.parametrize("kwargs, key", [({"npoints": 0, "num_group": 1, "group_size": 1}, "npoints"),
                                         ({"npoints": 8, "num_group": 9, "group_size": 1}, "num_group")])
def test_estimate_grouping_rejects_bad_sizes(kwargs, key):
    with pytest.raises(ValueError, match=key):
        point_ops_cost.estimate_grouping(**kwargs)


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_reports_state_numbers_and_conventions(results, fmt):
    text = format_result(results[1], fmt)
    assert f"{results[1].flops / 1e9:.3f}" in text and f"{results[1].thop_macs / 1e9:.3f}" in text
    assert "thop-style" in text and "FLOPs = 2 x MACs" in text and "algorithmic" in text
    assert "adapters" in text and "blocks.blocks.0.attn.qkv.lora_A" in text
    if fmt == "markdown":
        assert "| quantity | value |" in text


def test_json_report_round_trips(results):
    d = json.loads(format_result(results[0], "json"))
    assert d["macs"] == results[0].macs and d["flops"] == 2 * d["macs"]
    assert d["train_flops"] == 2 * (d["train_forward_macs"] + d["train_backward_macs"])
    assert set(d["conventions"]) == {"ours", "thop", "train", "point_ops"}


def test_compare_has_one_row_per_profile(results):
    text = format_compare(list(results), "markdown")
    rows = [line for line in text.splitlines() if line.startswith("| tiny_")]
    assert [r.split(" | ")[0] for r in rows] == ["| tiny_full", "| tiny_lora"]
    with pytest.raises(ValueError, match="--format"):
        format_compare(list(results), "html")


def test_latency_reports_medians_throughput_and_peak_memory():
    model = add_lora(TinyPointMAE(), 2)
    out = measure_latency(model, (points(2),), warmup=1, iters=2)
    for phase in ("inference", "train_step"):
        assert out[phase]["median_ms"] > 0 and out[phase]["throughput"] > 0
        assert out[phase]["peak_memory_bytes"] > 0 and out[phase]["memory_kind"].startswith("process_peak_rss")


@pytest.mark.parametrize("kwargs, match", [({"warmup": -1, "iters": 1}, "warmup"), ({"warmup": 0, "iters": 0}, "iters")])
def test_time_fn_rejects_bad_counts(kwargs, match):
    with pytest.raises(ValueError, match=match):
        time_fn(lambda: None, torch.device("cpu"), **kwargs)


def test_latency_of_per_point_logits_with_extra_input():
    """Part-segmentation shape: model(points, category) -> (B, N, classes)."""
    class PerPoint(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.emb = torch.nn.Linear(3, 4), torch.nn.Embedding(2, 4)

        def forward(self, pts, category):  # (B, N, 3), (B,) -> (B, N, 4)
            return self.fc(pts) + self.emb(category).unsqueeze(1)

    out = measure_latency(PerPoint(), (points(2), torch.tensor([0, 1])), warmup=0, iters=1)
    assert out["train_step"]["throughput"] > 0


def test_training_step_needs_two_samples():
    with pytest.raises(ValueError, match="batch"):
        measure_latency(TinyPointMAE(), (points(1),), warmup=0, iters=1)


def test_cli_reports_a_missing_config_in_one_line():
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "profile_flops.py"), "--config", "no_such_config"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "no_such_config" in proc.stderr


TINY_OPTS = ["model.trans_dim=48", "model.encoder_dims=48", "model.depth=1", "model.num_heads=2",
             "model.num_group=8", "model.group_size=8", "dataset.npoints=64"]


def test_cli_compare_on_a_shipped_config(capsys):
    profile_flops = load_tool("profile_flops")
    argv = ["--format", "json", "--opts", *TINY_OPTS, "--compare", "demo_clora.yaml", "demo_clora.yaml:merged",
            "demo_clora.yaml+adapter.method=lora+adapter.rank=2+adapter.placement=null"]
    assert profile_flops.main(argv) == 0
    unmerged, merged, lora = json.loads(capsys.readouterr().out)
    assert (unmerged["mode"], merged["mode"], lora["mode"]) == ("unmerged", "merged", "unmerged")
    assert unmerged["points"] == 64 and unmerged["groups"] == 8
    assert merged["categories"]["adapters"] == 0 < unmerged["categories"]["adapters"]
    assert unmerged["macs"] == merged["macs"] + unmerged["categories"]["adapters"]
    assert lora["name"] == "demo_clora adapter.method=lora adapter.rank=2 adapter.placement=null"
    assert lora["params"]["adapter"] == 1 * 2 * (48 + 3 * 48)  # one qkv: A (2 x 48) + B (144 x 2)


def test_json_compare_is_a_list_even_for_one_profile(results):
    rows = json.loads(format_compare([results[0]], "json"))
    assert isinstance(rows, list) and rows[0]["name"] == "tiny_full"
