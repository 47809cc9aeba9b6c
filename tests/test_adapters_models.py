"""Adapters on the real backbones (tiny widths), plus the exact counts on full-size Point-MAE."""
import copy

import pytest
import torch
from torch import nn

from conftest import randomise_adapters, tiny_model_config
from pointclora.adapters import (
    AdapterConfig, AdapterLayer, CoToScheduler, adapter_layers, adapter_regularization, apply_adapters,
    count_parameters, get_adapter_config, load_adapter, merge_adapters, merge_and_unload, save_adapter,
    unmerge_adapters,
)  # fmt: skip
from pointclora.models import PointMAE, build_model
from pointclora.models.base import FrozenBNMixin

FULL = dict(NAME="PointMAE", trans_dim=384, depth=12, drop_path_rate=0.1, cls_dim=15, num_heads=6,
            group_size=32, num_group=128, encoder_dims=384)
SEG_TRAINABLE = ["label_conv", "propagation_0", "convs1", "convs2", "convs3", "bns1", "bns2"]
METHODS = [dict(method="lora"), dict(method="clora", placement="input"), dict(method="clora", placement="weight")]
IDS = ["lora", "clora-input", "clora-weight"]


def tiny(name="PointMAE", seed=0):
    torch.manual_seed(seed)
    return build_model(tiny_model_config(name)).eval()


def points(seed=1, b=2, n=64):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["PointMAE", "PointBERT"])
@pytest.mark.parametrize("cfg", METHODS, ids=IDS)
def test_tiny_backbones_init_merge_unload_reload(name, cfg, tmp_path):
    base = tiny(name)
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(rank=4, num_bases=2, **cfg))
    x = points()
    torch.testing.assert_close(model(x), base(x), atol=1e-5, rtol=0)  # Q = 0 / B = 0: the backbone
    names = sorted(n for n, _ in adapter_layers(model))
    expected = ["attn.qkv"] if cfg["method"] == "lora" else ["attn.qkv", "mlp.fc1"]
    assert names == [f"blocks.blocks.{i}.{t}" for i in range(2) for t in expected]

    randomise_adapters(model, std=0.2)
    ref = model(x)
    assert (ref - base(x)).abs().max() > 1e-3
    torch.testing.assert_close(merge_adapters(model)(x), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(unmerge_adapters(model)(x), ref, atol=1e-5, rtol=0)
    path = tmp_path / "adapter.safetensors"
    save_adapter(model, str(path))
    torch.testing.assert_close(load_adapter(copy.deepcopy(base), str(path))(x), ref, atol=1e-5, rtol=0)
    plain = merge_and_unload(model)
    assert not any(isinstance(m, AdapterLayer) for m in plain.modules())
    assert type(plain.blocks.blocks[0].attn.qkv) is nn.Linear
    assert set(plain.state_dict()) == set(base.state_dict())
    torch.testing.assert_close(plain(x), ref, atol=1e-5, rtol=0)


def test_point_mae_training_step_trains_only_adapters_and_head():
    model = apply_adapters(tiny(), AdapterConfig(rank=4, num_bases=2, sade_weight=0.1)).train()
    randomise_adapters(model, std=0.2)
    frozen = {n: p.clone() for n, p in model.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = model.loss(model(points(b=4)), torch.tensor([0, 1, 2, 3])) + adapter_regularization(model)
    loss.backward()
    opt.step()
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
    assert model.blocks.blocks[1].mlp.fc1.clora_Q.grad.abs().sum() > 0


def test_coto_groups_point_mae_blocks():
    model = apply_adapters(tiny(), AdapterConfig(method="lora", target_modules=["attn.qkv", "attn.proj"]))
    sched = CoToScheduler(model, total_steps=8, p_start=0.0)
    assert sched.group_names == ["blocks.blocks.0", "blocks.blocks.1"]
    assert sched.active_fraction == 0.5  # p = 0: exactly one of the two blocks
    for _ in range(6):
        sched.step()
    assert sched.probability == 1.0 and sched.active_fraction == 1.0


def test_part_segmentation_with_its_own_head(tmp_path):
    torch.manual_seed(0)
    base = build_model(tiny_model_config("PointMAEPartSeg", num_categories=4)).eval()
    with pytest.raises(ValueError, match="'cls_head_finetune' matches no parameter"):
        apply_adapters(copy.deepcopy(base), AdapterConfig())  # classification defaults do not fit
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(rank=4, num_bases=2, trainable_modules=SEG_TRAINABLE))
    randomise_adapters(model, std=0.2)
    x, cat = points(n=32), torch.tensor([0, 3])
    ref = model(x, cat)
    path = tmp_path / "seg.safetensors"
    save_adapter(model, str(path))
    torch.testing.assert_close(load_adapter(copy.deepcopy(base), str(path))(x, cat), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(merge_and_unload(model)(x, cat), ref, atol=1e-5, rtol=0)


def test_full_size_point_mae_counts():
    """The README table: Point-MAE (trans_dim 384, depth 12, 15 classes)."""
    backbone = build_model(FULL)
    full = count_parameters(backbone)
    probe = count_parameters(apply_adapters(copy.deepcopy(backbone), AdapterConfig(method="none")))
    lora = count_parameters(apply_adapters(copy.deepcopy(backbone), AdapterConfig(method="lora", rank=8)))
    clora = count_parameters(apply_adapters(copy.deepcopy(backbone), AdapterConfig(rank=8, num_bases=4)))
    assert full["trainable"] == full["total"]
    head = probe["trainable"]
    assert lora["adapter"] == 12 * 8 * (384 + 3 * 384)  # r (d_in + d_out) per qkv
    assert clora["adapter"] == 4 * (2 * 384 * 8 + 24 * 8 * 8) == 30720  # p (2 d r + m r^2), m = 24
    assert lora["trainable"] == head + lora["adapter"] and clora["trainable"] == head + clora["adapter"]
    assert clora["total"] == full["total"] + clora["adapter"]


class ProjectionTargets(PointMAE):
    """A model that declares other default adapter targets than the shared ones."""

    ADAPTER_TARGETS = {"clora": ("attn.proj",), "lora": ("mlp.fc2",)}


def projection_model() -> PointMAE:
    kwargs = {k: v for k, v in tiny_model_config().items() if k != "NAME"}
    return ProjectionTargets(**kwargs)


@pytest.mark.parametrize("method, suffix", [("clora", "attn.proj"), ("lora", "mlp.fc2")])
def test_unset_targets_are_the_models_own(method, suffix):
    model = apply_adapters(projection_model(), AdapterConfig(method=method))
    names = [n for n, _ in adapter_layers(model)]
    assert names == [f"blocks.blocks.{i}.{suffix}" for i in range(2)]
    assert get_adapter_config(model).target_modules == [suffix]


def test_explicit_targets_win_over_the_models_and_the_default_is_the_base_declaration():
    explicit = apply_adapters(projection_model(), AdapterConfig(target_modules=["attn.qkv", "mlp.fc1"]))
    assert sorted(n for n, _ in adapter_layers(explicit)) == [
        f"blocks.blocks.{i}.{t}" for i in range(2) for t in ("attn.qkv", "mlp.fc1")]
    plain = apply_adapters(build_model(tiny_model_config()), AdapterConfig(method="lora"))
    assert [n for n, _ in adapter_layers(plain)] == ["blocks.blocks.0.attn.qkv", "blocks.blocks.1.attn.qkv"]
    assert AdapterConfig().target_modules == list(FrozenBNMixin.ADAPTER_TARGETS["clora"])
    assert AdapterConfig(method="lora").target_modules == list(PointMAE.ADAPTER_TARGETS["lora"])


def test_a_method_variant_is_built_from_exactly_its_backbone_class():
    """A PointMAE subclass may compute something DAPT's variant would not carry over: refused."""
    with pytest.raises(ValueError, match=r"Point-MAE backbone \(NAME: PointMAE\), got ProjectionTargets"):
        apply_adapters(projection_model(), AdapterConfig.from_dict({"method": "dapt"}))
