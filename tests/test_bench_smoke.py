"""Tiny-size smoke runs of bench/train_step.py and bench/method_study.py, plus bench/common.py helpers."""
import copy
import json

import pytest
import torch

from bench import common, method_study, train_step  # the checkout's root is on sys.path (conftest)

TINY = {"trans_dim": 48, "encoder_dims": 48, "depth": 2, "num_heads": 4, "num_group": 8, "group_size": 8}


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ common
def test_time_alternating_rotates_the_order_and_counts_calls():
    calls = []
    fns = {n: (lambda n=n: calls.append(n)) for n in "abc"}
    times = common.time_alternating(fns, torch.device("cpu"), warmup=1, reps=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for ts in times.values() for t in ts)


@pytest.mark.parametrize("warmup,reps", [(-1, 2), (0, 0)])
def test_time_alternating_rejects_bad_counts(warmup, reps):
    with pytest.raises(ValueError, match="warmup/reps"):
        common.time_alternating({"a": lambda: None}, torch.device("cpu"), warmup, reps)


def test_statistics_and_table():
    assert common.median([3.0, 1.0, 2.0]) == 2.0
    assert common.mean_std([1.0, 3.0]) == (2.0, pytest.approx(2 ** 0.5))
    assert common.mean_std([5.0]) == (5.0, 0.0)
    assert common.markdown_table(["a", "b"], [[1, "x"]]) == "| a | b |\n|---|---|\n| 1 | x |\n"
    with pytest.raises(ValueError, match="rows: every row needs 2 cells"):
        common.markdown_table(["a", "b"], [[1]])
    with pytest.raises(ValueError, match="values"):
        common.median([])


def test_machine_header_names_command_commit_machine_torch_date():
    text = common.machine_header("python bench/x.py --y", "Title")
    assert text.startswith("# Title\n")
    for needle in ("`python bench/x.py --y`", "commit: ", "cores", "GPU: ", torch.__version__, "date: 20"):
        assert needle in text


def test_peak_rss_grows_with_a_large_allocation():
    if common.rss_bytes() is None:
        pytest.skip("no /proc/self/status on this OS")
    common.reset_peak_rss()
    before = common.rss_bytes("VmHWM")
    block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    assert common.rss_bytes("VmHWM") - before > 32 * 2**20
    del block


# ------------------------------------------------------------------ train_step
@pytest.fixture(scope="module")
def variants():
    torch.set_num_threads(1)
    return {m: train_step.build_variant(m, torch.device("cpu"), TINY) for m in train_step.METHODS}


def test_train_step_table_has_every_method_and_sane_numbers(variants):
    data = train_step.make_batch(2, 128, variants["full"].model.cls_dim, "cpu")
    times = train_step.time_train_steps(variants, data, "cpu", warmup=1, reps=2)
    table = train_step.step_table(times, variants, None)
    for method in train_step.METHODS:
        assert train_step.LABELS[method] in table
        assert all(0 < t < 10_000 for t in times[method])
    assert "| 1.00 |" in table  # full fine-tuning against itself
    full = variants["full"].params["trainable"]
    assert all(variants[m].params["trainable"] < full for m in train_step.METHODS if m != "full")
    # linear probing trains the head only; CLoRA and CLoRA+CoTo have the same parameters
    assert variants["linear"].params["trainable"] == variants["linear"].params["head"]
    assert variants["clora"].params == variants["clora_coto"].params
    coto = variants["clora_coto"].trainer.coto
    assert coto.probability == pytest.approx(0.5, abs=1e-6)


def test_frozen_backbone_gets_no_gradient(variants):
    data = train_step.make_batch(2, 128, variants["lora"].model.cls_dim, "cpu")
    v = variants["lora"]
    v.trainer.optimizer.zero_grad(set_to_none=True)
    loss = train_step.train_step(v, data)
    assert loss == loss  # not NaN
    frozen = [n for n, p in v.model.named_parameters() if not p.requires_grad]
    assert frozen and all(dict(v.model.named_parameters())[n].grad is None for n in frozen)


def test_inference_merged_matches_unmerged(variants):
    train_step.make_adapters_nonzero(variants)
    models = train_step.inference_models(variants)
    assert len(models) == 5
    points = train_step.make_batch(2, 128, 15, "cpu")["points"]
    diffs = train_step.merged_max_diff(models, points)
    assert set(diffs) == {train_step.LABELS["lora"], train_step.LABELS["clora"]}
    assert all(d < 1e-4 for d in diffs.values())
    times = train_step.time_inference(models, points, "cpu", warmup=0, reps=1)
    text = train_step.inference_table(times, diffs)
    assert text.count(", merged |") == 2
    for model in models.values():
        model.train()


def test_memory_probe_in_a_subprocess():
    mem = train_step.measure_memory(["linear"], "cpu", batch=2, steps=1, model_overrides=TINY, npoints=128)
    m = mem["linear"]
    assert m["kind"].startswith("cpu_peak_rss")
    assert m["peak_bytes"] >= m["baseline_bytes"] > 50 * 2**20  # torch + model are resident
    assert m["growth_bytes"] == m["peak_bytes"] - m["baseline_bytes"]


@pytest.mark.parametrize("argv,message", [(["--batch", "1"], "--batch"), (["--methods", "lora"], "'full' is needed"),
                                          (["--model-opts", "{x"], "--model-opts")])
def test_train_step_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        train_step.parse_args(argv)
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ method_study
def test_method_study_smoke(tmp_path):
    from pointclora.datasets.demo import make_demo_data

    # 4 train / 2 test shapes per class: every run is one optimizer step per epoch
    data = make_demo_data(tmp_path / "demo", train_per_class=4, test_per_class=2, val_per_class=0, npoints=256,
                          datasets=("ScanObjectNN",))
    out = tmp_path / "study"
    results = tmp_path / "method_study.md"
    dataset = {"root": str(data / "ScanObjectNN"), "npoints": 128}
    args = method_study.parse_args([
        "--epochs", "1", "--seeds", "0", "--pretrain-epochs", "1", "--parallel", "0", "--out", str(out),
        "--results", str(results), "--model-opts", '{"trans_dim": 48, "encoder_dims": 48, "depth": 2, '
        '"num_group": 8, "group_size": 8}', "--dataset-opts", json.dumps(dataset)])
    text = method_study.run(args)
    for method in method_study.METHODS:
        assert method_study.LABELS[method] in text
        run = method_study.read_run(method_study.run_dir(out, "PB_T50_RS", method, 0))
        assert 0.0 <= run["best_oa"] <= 100.0 and run["last_oa"] <= run["best_oa"] + 1e-9
        assert run["train_time_s"] > 0
    assert "pre-trained by this study" in text
    assert "- load average at start: " in text and "- load average at the end: " in text
    assert "Peer sections fitted to the demo model (tools/sweep.py's rule): idpt: adapter.prompt_layer 11 -> 1" in text
    assert "pruned" in text and "merged adapter" in text and "OBJ_ONLY" in text
    assert results.with_suffix(".png").stat().st_size > 1000


def test_pruning_and_merging_functions():
    from pointclora.adapters import AdapterConfig, apply_adapters
    from pointclora.models import build_model

    cfg = {"NAME": "PointMAE", "cls_dim": 7, "drop_path_rate": 0.0, **TINY}
    torch.manual_seed(0)
    base = build_model(cfg).eval()
    models = []
    for seed in (1, 2):
        m = apply_adapters(copy.deepcopy(base), AdapterConfig(method="clora", seed=seed, sade_weight=0.0))
        with torch.no_grad():
            for name, p in m.named_parameters():
                if "clora_Q" in name:
                    p.normal_(std=0.05)
        models.append(m.eval())
    points = torch.rand(2, 128, 3)
    # merging a model with itself gives the model; merging two averages their weight updates
    same = method_study.merge_two(models[0], models[0], keep_head_of=models[0])
    with torch.no_grad():
        assert torch.allclose(same(points), models[0](points), atol=1e-5)
        merged = method_study.merge_two(models[0], models[1], keep_head_of=models[1])
        name = "blocks.blocks.0.attn.qkv"
        wa = models[0].get_submodule(name).merged_weight()
        wb = models[1].get_submodule(name).merged_weight()
        assert torch.allclose(merged.get_submodule(name).weight, (wa + wb) / 2, atol=1e-6)
    pruned = method_study.prune_every_other_block(models[0])
    assert pruned == ["blocks.blocks.1"]
    assert models[0].get_submodule("blocks.blocks.1.attn.qkv").disabled
    assert not models[0].get_submodule("blocks.blocks.0.attn.qkv").disabled


@pytest.mark.parametrize("argv,message", [(["--epochs", "0"], "--epochs"), (["--seeds", "1", "1"], "distinct"),
                                          (["--dataset-opts", "[oops"], "--dataset-opts")])
def test_method_study_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        method_study.parse_args(argv)
    assert message in capsys.readouterr().err


def test_unknown_method_is_named():
    with pytest.raises(ValueError, match="method: expected one of"):
        method_study.adapter_section("dora")
    with pytest.raises(ValueError, match="method: expected one of"):
        train_step.method_config("dora")
