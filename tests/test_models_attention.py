"""model.attention: sdpa equals the official explicit attention (fp32, CPU) with every adapter
method and after merging; and Point-MAE pre-training under autocast (loss in float32)."""
import copy

import pytest
import torch

from pointclora.adapters import AdapterConfig, CoToScheduler, adapter_layers, apply_adapters, merge_adapters
from pointclora.config import ConfigError, validate
from pointclora.models import Attention, build_model

TINY = dict(NAME="PointMAE", trans_dim=48, encoder_dims=48, depth=2, drop_path_rate=0.0, cls_dim=5, num_heads=4,
            group_size=8, num_group=16)
PRETRAIN = dict(NAME="PointMAEPretrain", trans_dim=48, depth=2, drop_path_rate=0.0, num_heads=2, group_size=8,
                num_group=16, encoder_dims=48, decoder_depth=1, decoder_num_heads=2)
METHODS = {
    "none": None,
    "lora": dict(method="lora"),
    "clora-input": dict(method="clora", placement="input"),
    "clora-weight": dict(method="clora", placement="weight"),
    "clora-coto": dict(method="clora", placement="input", coto=True),
}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def points(seed=1, b=2, n=64):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def pair(name="PointMAE", method=None, **extra):
    """The same weights (and adapters, made non-zero) with attention explicit and sdpa."""
    models = []
    for attention in ("explicit", "sdpa"):
        torch.manual_seed(0)
        cfg = dict(TINY if name == "PointMAE" else PRETRAIN, attention=attention, **extra)
        model = build_model(cfg)
        if method is not None:
            model = apply_adapters(model, AdapterConfig(rank=4, num_bases=2, **method))
            gen = torch.Generator().manual_seed(2)
            with torch.no_grad():
                for _, layer in adapter_layers(model):
                    for pname, p in layer.named_parameters():
                        if not pname.startswith("base_layer."):
                            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
        models.append(model)
    return models


def test_attention_module_sdpa_matches_explicit():
    torch.manual_seed(0)
    explicit = Attention(64, 4)
    sdpa = copy.deepcopy(explicit)
    sdpa.attention = "sdpa"
    x = torch.randn(3, 129, 64)
    torch.testing.assert_close(sdpa(x), explicit(x), atol=1e-5, rtol=0)
    assert "attention='sdpa'" in repr(sdpa)


@pytest.mark.parametrize("method", list(METHODS), ids=list(METHODS))
def test_sdpa_matches_explicit_with_every_adapter_method(method):
    explicit, sdpa = pair(method=METHODS[method])
    assert explicit.state_dict().keys() == sdpa.state_dict().keys()
    x, y = points(), torch.tensor([1, 3])
    if method == "clora-coto":
        for model in (explicit, sdpa):  # same seed: the same blocks switched on in both
            model.coto = CoToScheduler(model, total_steps=10, p_start=0.5, seed=1)
    losses = []
    for model in (explicit, sdpa):
        model.train()  # adapters and CoTo in training mode; the head's BatchNorm and dropout in eval,
        for m in model.modules():  # where 2 samples would amplify float rounding to 1e-4
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.Dropout)):
                m.eval()
        logits = model(x)
        loss = model.loss(logits, y)
        loss.backward()
        losses.append((logits.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}))
    (l1, s1, g1), (l2, s2, g2) = losses
    torch.testing.assert_close(l2, l1, atol=1e-5, rtol=0)
    torch.testing.assert_close(s2, s1, atol=1e-5, rtol=0)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("method", ["lora", "clora-input", "clora-weight"])
def test_sdpa_after_merging_matches_explicit(method):
    explicit, sdpa = pair(method=METHODS[method])
    x = points()
    with torch.no_grad():
        before = explicit.eval()(x)
        merged = [merge_adapters(m.eval())(x) for m in (explicit, sdpa)]
    torch.testing.assert_close(merged[0], before, atol=1e-5, rtol=0)
    torch.testing.assert_close(merged[1], merged[0], atol=1e-5, rtol=0)


def test_attention_key_is_validated():
    with pytest.raises(ValueError, match=r"model.attention must be one of \('explicit', 'sdpa'\), got 'flash'"):
        build_model(dict(TINY, attention="flash"))
    base = {"model": {"NAME": "PointMAE"}, "dataset": {"NAME": "x"}, "train": {"epochs": 1, "batch_size": 1},
            "optimizer": {"lr": 0.1}, "scheduler": {"warmup_epochs": 0}}
    validate({**base, "model": {"NAME": "PointMAE", "attention": "sdpa"}})
    with pytest.raises(ConfigError, match="model.attention"):
        validate({**base, "model": {"NAME": "PointMAE", "attention": 1}})
    # the default is the official arithmetic
    assert {m.attention for m in build_model(TINY).modules() if isinstance(m, Attention)} == {"explicit"}


def test_pretrain_sdpa_matches_explicit():
    explicit, sdpa = pair("PointMAEPretrain")
    x = points(n=128)
    losses = []
    for model in (explicit, sdpa):
        torch.manual_seed(3)  # the same masks
        losses.append(model(x))
    torch.testing.assert_close(losses[1], losses[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_pretrain_under_bf16_autocast_computes_the_loss_in_float32(attention):
    # before: increase_dim gave a bf16 prediction and chamfer_distance raised on CPU
    torch.manual_seed(0)
    model = build_model(dict(PRETRAIN, attention=attention))
    x = points(n=128)
    torch.manual_seed(3)
    with torch.no_grad():
        want = model(x)
    torch.manual_seed(3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    torch.testing.assert_close(loss.detach(), want, rtol=0.05, atol=0)  # bf16 matmuls: within a few %


def test_pretrain_diverged_prediction_gives_nan_loss_not_an_op_error():
    torch.manual_seed(0)
    model = build_model(PRETRAIN)
    with torch.no_grad():
        model.increase_dim[0].bias.fill_(float("inf"))
    assert torch.isnan(model(points(n=128)))  # the trainer turns this into its one-line message
