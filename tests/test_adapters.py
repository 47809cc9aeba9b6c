"""Adapters on a tiny transformer named like Point-MAE (blocks.blocks.{i}.attn.qkv, mlp.fc1, cls_head_finetune)."""
import copy
import math

import pytest
import torch
from torch import nn

from conftest import randomise_adapters
from pointclora.adapters import (
    AdapterConfig, AdapterLayer, CLoRABank, CLoRALinear, LoRALinear, adapter_layers, adapter_regularization,
    adapter_state_dict, adapters_disabled, apply_adapters, count_parameters, load_adapter, merge_adapters,
    merge_and_unload, read_adapter_config, sade_bank, sade_direct, sade_loss, save_adapter, unmerge_adapters,
)  # fmt: skip

METHODS = [
    dict(method="lora"),
    dict(method="clora", placement="input"),
    dict(method="clora", placement="weight"),
]
IDS = ["lora", "clora-input", "clora-weight"]


class Attention(nn.Module):
    def __init__(self, dim, heads=2):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):  # (B, N, C)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (B, H, N, c)
        attn = (q @ k.transpose(-2, -1) / math.sqrt(c // self.heads)).softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, mlp_ratio):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim)
        self.norm2, self.mlp = nn.LayerNorm(dim), Mlp(dim, dim * mlp_ratio)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, dim, depth, mlp_ratio):
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, mlp_ratio) for _ in range(depth)])

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return x


class TinyPointMAE(nn.Module):
    """Point-MAE naming on a tiny scale; input (B, N, 3) points, output (B, classes) logits."""

    def __init__(self, dim=8, depth=2, classes=5, mlp_ratio=2):
        super().__init__()
        self.encoder = nn.Linear(3, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.cls_pos = nn.Parameter(torch.randn(1, 1, dim))
        self.blocks = Encoder(dim, depth, mlp_ratio)
        self.norm = nn.LayerNorm(dim)
        self.cls_head_finetune = nn.Sequential(
            nn.Linear(2 * dim, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, classes)
        )

    def forward(self, pts):
        x = self.encoder(pts)  # (B, N, C)
        x = torch.cat([self.cls_token.expand(len(x), -1, -1) + self.cls_pos, x], dim=1)  # (B, 1+N, C)
        x = self.norm(self.blocks(x))
        return self.cls_head_finetune(torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1))


def make_model(seed=0, **kw):
    torch.manual_seed(seed)
    model = TinyPointMAE(**kw)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so the head's buffers matter
        model.cls_head_finetune[1].running_mean.uniform_(-1, 1)
        model.cls_head_finetune[1].running_var.uniform_(0.5, 2)
    return model.eval()


def points(seed=1, b=3, n=6):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def adapted(seed=0, **cfg):
    return apply_adapters(make_model(seed), AdapterConfig(**cfg))


# ---------------------------------------------------------------------------------------- config


def test_config_defaults_are_clora_input_on_qkv_and_fc1():
    cfg = AdapterConfig()
    assert (cfg.method, cfg.rank, cfg.num_bases, cfg.placement) == ("clora", 8, 4, "input")
    assert cfg.target_modules == ["attn.qkv", "mlp.fc1"]
    assert AdapterConfig(method="lora").target_modules == ["attn.qkv"]
    assert AdapterConfig(method="lora").placement == "weight"
    assert AdapterConfig(method="lora", rank=4, alpha=8).lora_scaling == 2.0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        (dict(method="dora"), "method"),
        (dict(rank=0), "rank"),
        (dict(rank=2.5), "rank"),
        (dict(num_bases=0), "num_bases"),
        (dict(alpha=-1.0), "alpha"),
        (dict(placement="output"), "placement"),
        (dict(method="lora", placement="input"), "placement"),
        (dict(target_modules=["attn.qkv", 3]), "target_modules"),
        (dict(exclude_modules=["(unclosed"]), "exclude_modules"),
        (dict(target_modules=[]), "target_modules"),
        (dict(sade_weight=-0.1), "sade_weight"),
        (dict(dropout=1.0), "dropout"),
        (dict(scale=float("nan")), "scale"),
        (dict(coto="yes"), "coto"),
        (dict(method="none", coto=True), "coto"),
        (dict(coto_p_start=1.5), "coto_p_start"),
        (dict(coto_ramp_fraction=0.0), "coto_ramp_fraction"),
        (dict(seed=-1), "seed"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        AdapterConfig(**kwargs)


def test_config_from_dict_round_trip_and_unknown_keys():
    cfg = AdapterConfig.from_dict({"method": "lora", "rank": 4, "target_modules": "attn.proj"})
    assert cfg.target_modules == ["attn.proj"]
    assert AdapterConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match=r"unknown adapter config key\(s\) \['rnak'\]"):
        AdapterConfig.from_dict({"method": "lora", "rnak": 4})


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="target_modules: 'attn.qkvx' matches no nn.Linear"):
        adapted(method="lora", target_modules=["attn.qkvx"])
    with pytest.raises(ValueError, match="trainable_modules: 'head' matches no parameter"):
        adapted(method="lora", trainable_modules=["head"])
    with pytest.raises(ValueError, match="exclude_modules excludes every target"):
        adapted(method="lora", exclude_modules=["qkv"])


# ---------------------------------------------------------------------------------------- injection


@pytest.mark.parametrize("cfg", METHODS, ids=IDS)
def test_at_init_the_adapted_model_equals_the_backbone(cfg):
    base = make_model()
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(**cfg))
    assert len(adapter_layers(model)) == (2 if cfg["method"] == "lora" else 4)  # qkv (+ fc1) of 2 blocks
    x = points()
    torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)


def test_targets_by_suffix_regex_and_exclude():
    model = adapted(method="lora", target_modules=[r"blocks\.blocks\.\d+\.mlp\.fc\d"], exclude_modules=["blocks.blocks.1.mlp.fc2"])
    names = [n for n, _ in adapter_layers(model)]
    assert names == ["blocks.blocks.0.mlp.fc1", "blocks.blocks.0.mlp.fc2", "blocks.blocks.1.mlp.fc1"]
    assert all(isinstance(m.base_layer, nn.Linear) for _, m in adapter_layers(model))


@pytest.mark.parametrize("cfg", METHODS + [dict(method="none")], ids=IDS + ["none"])
def test_only_adapters_and_head_are_trainable(cfg):
    model = adapted(**cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {n for n in trainable if n.startswith("cls_head_finetune.") or n in ("cls_token", "cls_pos")}
    adapter = trainable - head
    assert len(head) == 8  # 2 Linear (w, b) + BatchNorm (w, b) + cls_token + cls_pos
    expected = {"lora": {"lora_A", "lora_B"}, "clora": {"clora_Q", "D", "U"}, "none": set()}[cfg["method"]]
    assert {n.rsplit(".", 1)[1] for n in adapter} == expected
    counts = count_parameters(model)
    assert counts["trainable"] == counts["adapter"] + counts["head"]
    assert counts["head"] == 2 * 8 * 16 + 16 + 2 * 16 + 16 * 5 + 5 + 2 * 8


def test_lora_count_and_init():
    model = adapted(method="lora", rank=3)
    qkv = model.blocks.blocks[0].attn.qkv
    assert isinstance(qkv, LoRALinear) and qkv.lora_A.shape == (3, 8) and qkv.lora_B.shape == (24, 3)
    assert torch.count_nonzero(qkv.lora_B) == 0 and qkv.lora_A.abs().max() <= 1 / math.sqrt(8)
    assert count_parameters(model)["adapter"] == 2 * 3 * (8 + 24)


def test_clora_banks_are_shared_and_orthogonal():
    model = adapted(method="clora", rank=2, num_bases=3)
    layers = [m for _, m in adapter_layers(model)]
    assert all(m.bank is model.clora_banks["input_8x8"] for m in layers)
    assert list(model.clora_banks) == ["input_8x8"]
    bank = layers[0].bank
    eye = torch.eye(2).expand(3, 2, 2)
    torch.testing.assert_close(bank.D.transpose(1, 2) @ bank.D, eye, atol=1e-5, rtol=0)
    torch.testing.assert_close(bank.U @ bank.U.transpose(1, 2), eye, atol=1e-5, rtol=0)
    assert all(torch.count_nonzero(m.clora_Q) == 0 for m in layers)
    clone = copy.deepcopy(model)  # sharing survives a copy
    assert all(m.bank is clone.clora_banks["input_8x8"] for _, m in adapter_layers(clone))


def test_clora_weight_placement_has_one_bank_per_weight_shape():
    model = adapted(method="clora", placement="weight", rank=2, num_bases=3)
    assert sorted(model.clora_banks) == ["weight_8x16", "weight_8x24"]
    p, r = 3, 2
    # qkv bank: d_in 8, d_out 24, 2 LRMs; fc1 bank: d_in 8, d_out 16, 2 LRMs
    expected = p * (8 * r + r * 24 + 2 * r * r) + p * (8 * r + r * 16 + 2 * r * r)
    assert count_parameters(model)["adapter"] == expected


@pytest.mark.parametrize("placement", ["input", "weight"])
def test_clora_forward_matches_the_dense_update(placement):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(6, 10)
    d_out = 6 if placement == "input" else 10
    layer = CLoRALinear(lin, CLoRABank(3, 6, d_out, 2, gen), placement, scale=0.7)
    with torch.no_grad():
        layer.clora_Q.normal_()
    x = torch.randn(4, 5, 6)
    dw = sum(layer.bank.D[h] @ layer.clora_Q[h] @ layer.bank.U[h] for h in range(3))  # (6, d_out)
    torch.testing.assert_close(layer.delta_weight(), dw, atol=1e-5, rtol=1e-5)
    expected = lin(x + 0.7 * x @ dw) if placement == "input" else lin(x) + 0.7 * x @ dw
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_clora_count_is_exact_for_point_mae_shape():
    """p (2 d r + m r^2) with d = 384 and m = 2 * 12 LRMs (attn.qkv and mlp.fc1 inputs of 12 blocks)."""
    model = apply_adapters(TinyPointMAE(dim=384, depth=12, classes=15, mlp_ratio=4), AdapterConfig(rank=8, num_bases=4))
    p, d, r, m = 4, 384, 8, 24
    counts = count_parameters(model)
    assert counts["adapter"] == p * (2 * d * r + m * r * r) == 30720
    lora = apply_adapters(TinyPointMAE(dim=384, depth=12, classes=15, mlp_ratio=4), AdapterConfig(method="lora", rank=8))
    assert count_parameters(lora)["adapter"] == 12 * 8 * (384 + 3 * 384)


def test_linear_probing_adds_no_adapter():
    model = adapted(method="none")
    assert adapter_layers(model) == [] and not hasattr(model, "clora_banks")
    assert count_parameters(model)["adapter"] == 0
    assert adapter_regularization(model).item() == 0.0


# ---------------------------------------------------------------------------------------- merge / save


@pytest.mark.parametrize("cfg", METHODS, ids=IDS)
def test_outputs_equal_across_merge_unmerge_unload_and_reload(cfg, tmp_path):
    base = make_model()
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(rank=2, num_bases=3, scale=0.5, **cfg))
    randomise_adapters(model)
    x = points()
    ref = model(x)
    assert (ref - base(x)).abs().max() > 1e-2  # the adapter really changes the function
    weights = {n: m.base_layer.weight.clone() for n, m in adapter_layers(model)}

    merge_adapters(model)
    assert all(m.merged for _, m in adapter_layers(model))
    assert any((m.base_layer.weight - weights[n]).abs().max() > 1e-3 for n, m in adapter_layers(model))
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)
    unmerge_adapters(model)
    torch.testing.assert_close(model(x), ref, atol=1e-5, rtol=0)
    for n, m in adapter_layers(model):
        torch.testing.assert_close(m.base_layer.weight, weights[n], atol=1e-5, rtol=0)

    path = tmp_path / "adapter.safetensors"
    save_adapter(model, str(path))
    assert read_adapter_config(str(path)) == model.adapter_config
    reloaded = load_adapter(copy.deepcopy(base), str(path))  # applies the stored config first
    torch.testing.assert_close(reloaded(x), ref, atol=1e-5, rtol=0)
    into_adapted = apply_adapters(copy.deepcopy(base), AdapterConfig(rank=2, num_bases=3, scale=0.5, **cfg))
    torch.testing.assert_close(load_adapter(into_adapted, str(path))(x), ref, atol=1e-5, rtol=0)

    plain = merge_and_unload(model)
    assert adapter_layers(plain) == [] and not hasattr(plain, "clora_banks") and not hasattr(plain, "adapter_config")
    assert type(plain.blocks.blocks[0].attn.qkv) is nn.Linear
    assert set(plain.state_dict()) == set(base.state_dict())
    torch.testing.assert_close(plain(x), ref, atol=1e-5, rtol=0)


def test_adapter_file_holds_only_adapter_and_head(tmp_path):
    model = adapted(method="clora", rank=2, num_bases=3)
    keys = set(adapter_state_dict(model))
    assert "clora_banks.input_8x8.D" in keys and "blocks.blocks.1.mlp.fc1.clora_Q" in keys
    assert "cls_head_finetune.1.running_mean" in keys and "cls_token" in keys
    assert not any("base_layer" in k or k.startswith("norm.") for k in keys)
    path = tmp_path / "a.safetensors"
    save_adapter(model, str(path))
    n_values = sum(v.numel() for v in adapter_state_dict(model).values())
    assert path.stat().st_size < 4 * n_values + 4096


def test_failed_adapter_save_keeps_the_previous_file(tmp_path, monkeypatch):
    import safetensors.torch

    model = adapted(method="lora")
    path = tmp_path / "a.safetensors"
    save_adapter(model, str(path))
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"truncated")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, str(path))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors"]


def test_disabled_adapters_give_the_backbone():
    base = make_model()
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(method="lora"))
    randomise_adapters(model)
    x = points()
    with adapters_disabled(model):
        torch.testing.assert_close(model(x), base(x), atol=1e-6, rtol=0)
    assert (model(x) - base(x)).abs().max() > 1e-2
    merge_adapters(model)
    with pytest.raises(RuntimeError, match="unmerge"):
        with adapters_disabled(model):
            pass


def test_merge_refuses_nan_and_leaves_the_weight():
    model = adapted(method="clora")
    layer = model.blocks.blocks[0].attn.qkv
    before = layer.base_layer.weight.clone()
    with torch.no_grad():
        layer.clora_Q[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        merge_adapters(model)
    assert torch.equal(layer.base_layer.weight, before) and not layer.merged


def test_load_errors(tmp_path):
    path = tmp_path / "a.safetensors"
    save_adapter(adapted(method="lora"), str(path))
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_adapter(make_model(), str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match=r"cls_head_finetune.3.weight: file \(5, 16\) vs model \(7, 16\)"):
        load_adapter(make_model(classes=7), str(path))
    with pytest.raises(ValueError, match=r"different adapter config \(rank: file 8 vs model 4\)"):
        load_adapter(adapted(method="lora", rank=4), str(path))
    with pytest.raises(KeyError, match="missing"):
        load_adapter(make_model(depth=3), str(path))  # the third block's adapter is not in the file
    with pytest.raises(ValueError, match="already has adapters"):
        apply_adapters(adapted(method="lora"), AdapterConfig(method="lora"))


# ---------------------------------------------------------------------------------------- SADE


def test_sade_fast_formula_equals_direct():
    gen = torch.Generator().manual_seed(0)
    bank = CLoRABank(4, 7, 9, 3, gen, dtype=torch.float64)
    with torch.no_grad():  # trained spaces are no longer orthogonal
        bank.D.add_(torch.randn(bank.D.shape, generator=gen, dtype=torch.float64) * 0.3)
        bank.U.add_(torch.randn(bank.U.shape, generator=gen, dtype=torch.float64) * 0.3)
    qs = torch.randn(5, 4, 3, 3, generator=gen, dtype=torch.float64)
    fast, direct = sade_bank(bank, qs), sade_direct(bank, qs)
    assert fast.shape == (5, 4, 4)
    torch.testing.assert_close(fast, direct, atol=1e-10, rtol=1e-9)
    # by hand for one pair: ||M_a^T M_b||^2 / (||M_a||^2 ||M_b||^2)
    m = [bank.D[h] @ qs[2, h] @ bank.U[h] for h in range(4)]
    hand = (m[1].T @ m[3]).pow(2).sum() / (m[1].pow(2).sum() * m[3].pow(2).sum() + 1e-8)
    torch.testing.assert_close(fast[2, 1, 3], hand)


def test_adapter_regularization_is_weighted_sade_and_trains_q():
    model = adapted(method="clora", rank=2, num_bases=3, sade_weight=0.5)
    assert adapter_regularization(model).item() == 0.0  # Q = 0 at init
    randomise_adapters(model)
    layers = [m for _, m in adapter_layers(model)]
    ratios = torch.stack([sade_direct(m.bank, m.clora_Q[None])[0] for m in layers])  # (m, p, p)
    off = ~torch.eye(3, dtype=torch.bool)
    reg = adapter_regularization(model)
    torch.testing.assert_close(reg, 0.5 * ratios[:, off].mean(), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(sade_loss(layers), ratios[:, off].mean(), atol=1e-6, rtol=1e-5)
    reg.backward()
    assert all(m.clora_Q.grad.abs().sum() > 0 for m in layers) and model.clora_banks["input_8x8"].D.grad is not None
    assert adapter_regularization(adapted(method="lora")).item() == 0.0
