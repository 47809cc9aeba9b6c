"""The model-variant methods (DAPT, PointGST, IDPT) through the shared plumbing: config, build from a
backbone and from the official NAME, freezing, counts, adapter files, BatchNorm rule, merging."""
import copy

import pytest
import torch

from conftest import REPO, load_tool, randomise_trainable, tiny_demo_data
from pointclora.adapters import (AdapterConfig, adapter_state_dict, apply_adapters, count_parameters, load_adapter,
                                 merge_adapters, merge_and_unload, read_adapter_config, save_adapter)
from pointclora.models import build_model, load_pretrained

TINY = dict(trans_dim=32, depth=2, drop_path_rate=0.1, cls_dim=5, num_heads=2, group_size=8, num_group=16,
            encoder_dims=32)
FULL = dict(trans_dim=384, depth=12, cls_dim=15, num_heads=6, group_size=32, num_group=128, encoder_dims=384)
# method -> (adapter section, official NAME, official model keys, full-size (trainable, total) of the official code)
METHODS = {
    "dapt": (dict(method="dapt", rank=4), "PointTransformer_DAPT",
             dict(rank=64, drop_adapter_rate=0.2, class_token="use", prompt_token="mean", patch_token="max",
                  drop_rate=0.0, drop_path_rate=0.3), (1_087_771, 22_912_795)),
    "pointgst": (dict(method="pointgst", rank=4, local=8), "PointTransformer_PGST",
                 dict(rank=36, local=32, drop_path_rate=0.1), (622_831, 22_447_855)),
    # IDPT's official NAME is plain PointTransformer: its prompt keys select it; tiny: 16 groups, so k=8
    "idpt": (dict(method="idpt", prompt_layer=1, prompt_k=8), "PointTransformer",
             dict(prompt_layer=11, prompt_module="dgcnn", cls_type="all", drop_path_rate=0.1), (1_696_783, 23_522_191)),
}
TINY_OFFICIAL = {"dapt": dict(rank=4), "pointgst": dict(rank=4, local=8),  # tiny values of the official keys
                 "idpt": dict(prompt_layer=1, prompt_k=8)}
# the official freezing rule of each repository (tools/builder.py, optimizer part dapt / adapt)
OFFICIAL_RULE = {"dapt": lambda n: "cls" in n or "tfts" in n or "Adapter" in n,
                 "pointgst": lambda n: "adapt" in n or "cls" in n, "idpt": lambda n: "cls" in n}


def backbone(seed=0):
    torch.manual_seed(seed)
    return build_model(dict(NAME="PointMAE", **TINY)).eval()


def points(seed=1, b=3, n=64):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def adapted(method, seed=0, **extra):
    section = dict(METHODS[method][0], **extra)
    return apply_adapters(backbone(seed), AdapterConfig.from_dict(section))


@pytest.mark.parametrize("method", METHODS)
def test_full_size_counts_equal_the_official_code(method):
    section, name, keys, (trainable, total) = METHODS[method]
    with torch.device("meta"):
        official = build_model(dict(NAME=name, **FULL, **keys))
    official = apply_adapters(official, AdapterConfig.from_dict({"method": method}))
    counts = count_parameters(official)
    assert (counts["trainable"], counts["total"]) == (trainable, total)
    rule = sorted(n for n, _ in official.named_parameters() if OFFICIAL_RULE[method](n))
    assert sorted(n for n, p in official.named_parameters() if p.requires_grad) == rule
    assert counts["adapter"] + counts["head"] == trainable


@pytest.mark.parametrize("method", METHODS)
def test_variant_is_built_from_a_copy_of_the_backbone(method):
    base = backbone()
    before = copy.deepcopy(base.state_dict())
    model = apply_adapters(base, AdapterConfig.from_dict(METHODS[method][0]))
    assert model is not base and model.METHOD == method
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())  # backbone untouched
    state = model.state_dict()
    same = [k for k, v in before.items() if k in state and v.shape == state[k].shape]
    assert all(torch.equal(before[k], state[k]) for k in same)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in before and "cls" not in n)
    assert all(getattr(model.adapter_config, k) == v for k, v in METHODS[method][0].items())


@pytest.mark.parametrize("method", METHODS)
def test_official_name_and_checkpoint_load_strictly(method, tmp_path):
    section, name, keys, _ = METHODS[method]
    tiny_keys = dict(TINY, **dict(keys, **TINY_OFFICIAL[method]))
    official = build_model(dict(NAME=name, **tiny_keys))
    randomise_trainable(apply_adapters(official, AdapterConfig.from_dict({"method": method}))).eval()
    x = points()
    ref = official(x)
    for prefix in ("", "module."):
        path = tmp_path / f"official{prefix}.pth"
        torch.save({"base_model": {prefix + k: v for k, v in official.state_dict().items()}}, path)
        fresh = build_model(dict(NAME=name, **tiny_keys))
        assert load_pretrained(fresh, str(path), strict=True) == ([], [])
        torch.testing.assert_close(fresh.eval()(x), ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", METHODS)
def test_adapter_file_round_trip_with_updated_bn_statistics(method, tmp_path):
    model = randomise_trainable(adapted(method)).train()
    assert all(m.training for m in model.encoder.modules())  # official: BatchNorm keeps updating
    with torch.no_grad():
        model(points(b=4))  # moves the encoder's running statistics
    model.eval()
    x = points()
    ref = model(x)
    path = tmp_path / "adapter.safetensors"
    save_adapter(model, str(path))
    assert read_adapter_config(str(path)) == model.adapter_config
    saved = adapter_state_dict(model)
    assert "encoder.first_conv.1.running_mean" in saved
    assert not any(k.endswith("qkv.weight") for k in saved)
    loaded = load_adapter(backbone(), str(path)).eval()
    torch.testing.assert_close(loaded(x), ref, atol=1e-6, rtol=0)
    other = adapted(method)  # already adapted, adapters at their init: the file replaces them
    torch.testing.assert_close(load_adapter(other, str(path)).eval()(x), ref, atol=1e-6, rtol=0)
    assert path.stat().st_size < sum(p.numel() for p in model.parameters()) * 4 / 3


@pytest.mark.parametrize("method", METHODS)
def test_frozen_bn_switch(method):
    model = adapted(method, freeze_bn_stats=True).train()
    assert not model.encoder.first_conv[1].training
    saved = adapter_state_dict(model)
    assert not any(k.startswith("encoder.") for k in saved)


@pytest.mark.parametrize("method", METHODS)
def test_not_mergeable_says_why(method):
    model = adapted(method)
    for fn in (merge_adapters, merge_and_unload):
        with pytest.raises(ValueError, match="cannot be merged"):
            fn(model)


@pytest.mark.parametrize("method", METHODS)
def test_training_step_moves_only_trainable_tensors(method):
    model = randomise_trainable(adapted(method)).train()
    params = dict(model.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    opt = torch.optim.SGD([p for p in params.values() if p.requires_grad], lr=0.1)
    loss = model.loss(model(points(b=4)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    moved = {n for n, p in params.items() if not torch.equal(p, before[n])}
    assert moved and moved <= {n for n, p in params.items() if p.requires_grad}
    assert any("cls_head" not in n for n in moved)


@pytest.mark.parametrize("section, message", [
    (dict(method="dapt", rank=0), "DAPTConfig.rank"),
    (dict(method="dapt", drop_adapter_rate=1.0), "DAPTConfig.drop_adapter_rate"),
    (dict(method="dapt", prompt_token="avg"), "DAPTConfig.prompt_token"),
    (dict(method="dapt", class_token="None", prompt_token="None", patch_token="None"), "all 'None'"),
    (dict(method="dapt", coto=True), "CoTo does not apply to dapt"),
    (dict(method="dapt", target_modules=["attn.qkv"]), "unknown adapter config key"),
    (dict(method="dapt", freeze_bn_stats="yes"), "DAPTConfig.freeze_bn_stats"),
])
def test_config_errors_name_the_field(section, message):
    with pytest.raises(ValueError, match=message):
        AdapterConfig.from_dict(section)


def test_method_config_cannot_be_an_adapterconfig():
    with pytest.raises(ValueError, match="DAPTConfig"):
        AdapterConfig(method="dapt")


def test_config_value_must_match_a_model_built_with_official_keys():
    official = build_model(dict(NAME="PointTransformer_DAPT", **TINY, rank=4))
    with pytest.raises(ValueError, match="DAPTConfig.rank=8 but the model was built with rank=4"):
        apply_adapters(official, AdapterConfig.from_dict({"method": "dapt", "rank": 8}))
    assert apply_adapters(official, AdapterConfig.from_dict({"method": "dapt"})).adapter_config.rank == 4


def test_dapt_shapes_and_prompts():
    model = randomise_trainable(adapted("dapt")).eval()
    x = points()
    tokens = model.forward_tokens(x)
    assert tokens.shape == (3, 1 + TINY["depth"] + TINY["num_group"], TINY["trans_dim"])
    assert model.forward_features(x).shape == (3, 3 * TINY["trans_dim"])
    assert model(x).shape == (3, TINY["cls_dim"])
    only_cls = adapted("dapt", prompt_token="None", patch_token="None").eval()
    assert only_cls.cls_head_finetune[0].in_features == TINY["trans_dim"]
    assert only_cls(x).shape == (3, TINY["cls_dim"])


@pytest.mark.parametrize("section, message", [
    (dict(method="pointgst", rank=0), "PointGSTConfig.rank"),
    (dict(method="pointgst", local=-1), "PointGSTConfig.local"),
    (dict(method="pointgst", basis="exact"), "PointGSTConfig.basis"),
    (dict(method="pointgst", num_bases=2), "unknown adapter config key"),
])
def test_pointgst_config_errors_name_the_field(section, message):
    with pytest.raises(ValueError, match=message):
        AdapterConfig.from_dict(section)


def test_pointgst_local_must_divide_the_groups():
    with pytest.raises(ValueError, match="local=5 must divide num_group=16"):
        adapted("pointgst", local=5)


def test_pointgst_starts_as_the_backbone_and_has_shapes():
    base = backbone()
    model = apply_adapters(copy.deepcopy(base), AdapterConfig.from_dict(METHODS["pointgst"][0])).eval()
    x = points()
    torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)  # up = 0 at init
    _, center = model.group_divider(x)
    u, sub_u, (order, inverse) = model.spectral_inputs(center)
    assert u.shape == (3, 16, 16) and sub_u.shape == (3, 2, 8, 8)
    assert torch.equal(order.gather(1, inverse), torch.arange(16).expand(3, 16))
    assert (randomise_trainable(model)(x) - base(x)).abs().max() > 1e-3


def test_pointgst_coto_switches_whole_adapters():
    from pointclora.adapters import CoToScheduler

    model = randomise_trainable(adapted("pointgst")).train()
    coto = CoToScheduler(model, total_steps=10, p_start=0.0)
    assert coto.group_names == ["blocks.blocks.0", "blocks.blocks.1"]
    for block in model.blocks.blocks:
        block.gft_adapter.coto_active = False
    model.blocks.blocks[1].gft_adapter.coto_active = True
    model.loss(model(points(b=4)), torch.tensor([0, 1, 2, 3])).backward()
    assert model.blocks.blocks[0].gft_adapter.up.weight.grad is None
    assert model.blocks.blocks[1].gft_adapter.up.weight.grad.abs().sum() > 0


def test_zorder_keys_by_hand():
    from pointclora.adapters.pointgst import zorder_keys

    # (x, y, z) * 100 truncated = (1, 2, 3); y takes bit 3i+2, x bit 3i+1, z bit 3i
    assert zorder_keys(torch.tensor([[[0.015, 0.025, 0.035]]])).tolist() == [[2 + 1 + 32 + 8]]
    # y = -1: all 16 two's-complement bits set
    assert zorder_keys(torch.tensor([[[0.0, -0.015, 0.0]]])).item() == sum(1 << (3 * i + 2) for i in range(16))


@pytest.mark.parametrize("basis", ["official", "stable"])
def test_graph_basis_is_orthonormal(basis):
    from pointclora.adapters import graph_basis

    xyz = torch.rand(2, 40, 3, generator=torch.Generator().manual_seed(0))
    u = graph_basis(xyz, basis)
    assert u.shape == (2, 40, 40) and u.dtype == torch.float32
    torch.testing.assert_close(u.transpose(1, 2) @ u, torch.eye(40).expand(2, 40, 40), atol=1e-4, rtol=0)


def test_stable_basis_ignores_batch_dtype_and_sign():
    from pointclora.adapters import graph_basis

    xyz = torch.rand(3, 64, 3, generator=torch.Generator().manual_seed(0))
    alone = graph_basis(xyz[:1], "stable")
    torch.testing.assert_close(graph_basis(xyz, "stable")[:1], alone, atol=1e-6, rtol=0)
    torch.testing.assert_close(graph_basis(xyz[:1].double(), "stable").float(), alone, atol=1e-6, rtol=0)
    peak = alone.gather(1, alone.abs().argmax(dim=1, keepdim=True))
    assert (peak > 0).all()


def test_small_sets_official_and_stable_agree_up_to_sign():
    """Below 26 points cdist is exact and one cloud's scale is the batch's: the same Laplacian."""
    from pointclora.adapters import graph_basis

    xyz = torch.rand(1, 16, 3, generator=torch.Generator().manual_seed(0))
    overlap = (graph_basis(xyz, "official").transpose(1, 2) @ graph_basis(xyz, "stable")).abs()
    torch.testing.assert_close(overlap.diagonal(dim1=1, dim2=2), torch.ones(1, 16), atol=1e-3, rtol=0)


def test_dapt_rejects_other_backbones():
    torch.manual_seed(0)
    bert = build_model(dict(NAME="PointBERT", **dict(TINY, encoder_dims=16)))
    with pytest.raises(ValueError, match="Point-MAE backbone"):
        apply_adapters(bert, AdapterConfig.from_dict({"method": "dapt"}))


# ----------------------------------------------------------------------------- the tools, end to end
@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return tiny_demo_data(tmp_path_factory, ("ScanObjectNN",))


TOOL_ADAPTERS = {"dapt": "{method: dapt, rank: 4}", "pointgst": "{method: pointgst, rank: 4, local: 8}",
                 "idpt": "{method: idpt, prompt_layer: 1, prompt_k: 8}"}


def _tool_config(tmp_path, method: str, demo, epochs: int, drop_path_rate: float, extra: str = ""):
    """A tiny ScanObjectNN config of `method` on the demo data, for the tools."""
    config = tmp_path / f"{method}.yaml"
    config.write_text(f"""_base_: [{REPO}/configs/_base_/scanobjectnn.yaml, {REPO}/configs/_base_/adapter_{method}.yaml]
model: {{trans_dim: 32, num_heads: 2, group_size: 8, num_group: 16, encoder_dims: 32, depth: 2,
         drop_path_rate: {drop_path_rate}}}
dataset: {{root: {demo}/ScanObjectNN, npoints: 64, train_transforms: [scale_translate]}}
train: {{epochs: {epochs}, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, amp: false}}
scheduler: {{warmup_epochs: 0}}
adapter: {TOOL_ADAPTERS[method]}
{extra}""")
    return config


@pytest.mark.parametrize("method", TOOL_ADAPTERS)
def test_train_test_profile_through_the_tools(method, demo, tmp_path, capsys):
    import json

    config = _tool_config(tmp_path, method, demo, epochs=2, drop_path_rate=0.1, extra="optimizer: {lr: 2.0e-3}\n")
    train = load_tool("train")
    out = tmp_path / "out"
    assert train.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["parameters"]["adapter"] > 0
    assert (out / "adapter-best.safetensors").is_file()
    assert train.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", "--test",
                       "--ckpts", str(out / "ckpt-best.pth")]) == 0
    tested = json.loads((out / "test_results.json").read_text())
    assert tested["metrics"]["oa"] == pytest.approx(results["test"]["oa"])
    # a released fine-tuned checkpoint: {'base_model': state dict with 'module.' prefixes}
    state = torch.load(out / "ckpt-best.pth", weights_only=False)["model"]
    torch.save({"base_model": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "official.pth")
    assert train.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", "--test",
                       "--ckpts", str(tmp_path / "official.pth")]) == 0
    assert json.loads((out / "test_results.json").read_text())["metrics"] == tested["metrics"]
    profile = load_tool("profile_flops")
    capsys.readouterr()
    assert profile.main(["--compare", f"{config}:merged", "--format", "json"]) == 0
    text = capsys.readouterr().out
    assert "not mergeable" in text


@pytest.mark.parametrize("method", ["dapt"])
def test_predict_with_adapter_file_or_fine_tuned_weights(method, demo, tmp_path):
    """tools/predict.py: backbone + adapter file and a bare fine-tuned state dict give the checkpoint's answer."""
    import json

    import numpy as np

    from pointclora.config import load_config

    config = _tool_config(tmp_path, method, demo, epochs=1, drop_path_rate=0.0)
    torch.manual_seed(3)
    state = build_model(load_config(config)["model"]).state_dict()
    torch.save({k: v for k, v in state.items() if not k.startswith("cls_head")}, tmp_path / "backbone.pth")
    out = tmp_path / "run"
    assert load_tool("train").main(["--config", str(config), "--output-dir", str(out), "--device", "cpu",
                                     "--ckpts", str(tmp_path / "backbone.pth")]) == 0
    trained = torch.load(out / "ckpt-best.pth", weights_only=False)["model"]
    torch.save({"base_model": {f"module.{k}": v for k, v in trained.items()}}, tmp_path / "finetuned.pth")
    np.save(tmp_path / "cloud.npy", np.random.default_rng(0).standard_normal((128, 3)).astype("float32"))
    predict = load_tool("predict")
    tops = {}
    for name, ckpts in [("ckpt", [out / "ckpt-best.pth"]), ("finetuned", [tmp_path / "finetuned.pth"]),
                        ("adapter", [tmp_path / "backbone.pth", out / "adapter-best.safetensors"])]:
        assert predict.main(["--config", str(config), "--device", "cpu", "--files", str(tmp_path / "cloud.npy"),
                             "--ckpts", *map(str, ckpts), "--out", str(tmp_path / f"{name}.json")]) == 0, name
        tops[name] = json.loads((tmp_path / f"{name}.json").read_text())["files"][0]["top"]
    assert tops["finetuned"] == tops["ckpt"] and tops["adapter"] == tops["ckpt"]


@pytest.mark.parametrize("method", METHODS)
def test_shipped_config_builds_the_official_counts(method):
    """pointclora.build_model_from_config on configs/scanobjectnn_<method>.yaml: the official counts."""
    import pointclora

    model = pointclora.build_model_from_config(f"scanobjectnn_{method}.yaml")
    counts = count_parameters(model)
    assert (counts["trainable"], counts["total"]) == METHODS[method][3]
    assert model.METHOD == method and model.adapter_config.method == method
