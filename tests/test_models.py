"""Classification backbones: shapes, gradients, determinism, frozen BN, registry, parameter count."""
import logging

import pytest
import torch

from conftest import tiny_model_config
from pointclora.models import PointBERT, PointMAE, build_model


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_cfg(name, **over):
    return tiny_model_config(name, **{"drop_path_rate": 0.1, **over})


@pytest.fixture
def points():
    return torch.randn(3, 96, 3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["PointMAE", "PointBERT"])
def test_forward_backward_shapes_and_finite(name, points):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(name))
    feats = model.forward_features(points)
    assert feats.shape == (3, 2 * 48)
    logits = model.forward_head(feats)
    assert logits.shape == (3, 5)
    loss = model.loss(logits, torch.tensor([0, 1, 4]))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert model.blocks.blocks[1].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["PointMAE", "PointBERT"])
def test_eval_mode_is_deterministic(name, points):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(name)).eval()
    with torch.no_grad():
        a, b = model(points), model(points)
    assert torch.equal(a, b)


def test_full_size_parameter_count():
    """Point-MAE ScanObjectNN (15 classes) has exactly 22,093,327 parameters."""
    with torch.device("meta"):
        model = build_model(dict(NAME="PointMAE", trans_dim=384, depth=12, drop_path_rate=0.1, cls_dim=15,
                                 num_heads=6, group_size=32, num_group=128, encoder_dims=384))
    assert sum(p.numel() for p in model.parameters()) == 22_093_327


def test_official_key_names():
    mae = build_model(tiny_cfg("PointMAE")).state_dict()
    for key in ["encoder.first_conv.0.weight", "blocks.blocks.1.attn.qkv.weight", "blocks.blocks.1.mlp.fc2.bias",
                "blocks.blocks.0.norm1.weight", "cls_head_finetune.8.weight", "cls_head_finetune.1.running_mean",
                "cls_token", "cls_pos", "pos_embed.0.weight", "pos_embed.2.weight", "norm.weight"]:
        assert key in mae, key
    assert "blocks.blocks.0.attn.qkv.bias" not in mae  # qkv has no bias
    bert = build_model(tiny_cfg("PointBERT")).state_dict()
    assert bert["reduce_dim.weight"].shape == (48, 32)
    assert bert["cls_head_finetune.3.weight"].shape == (5, 256)


def test_drop_path_ramps_linearly():
    model = build_model(tiny_cfg("PointMAE", depth=3, drop_path_rate=0.2))
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for b in model.blocks.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2])
    assert isinstance(model.blocks.blocks[0].drop_path, torch.nn.Identity)


def test_reset_head(points):
    model = build_model(tiny_cfg("PointMAE")).eval()
    model.reset_head(11)
    assert model(points).shape == (3, 11) and model.cls_dim == 11


def test_bert_label_smoothing_matches_official_formula():
    model = build_model(tiny_cfg("PointBERT"))
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])
    logp = torch.log_softmax(logits, dim=1)[0]
    expected = -(0.8 * logp[0] + 0.05 * logp[1:].sum())
    assert model.loss(logits, torch.tensor([0])).item() == pytest.approx(expected.item(), rel=1e-6)
    mae = build_model(tiny_cfg("PointMAE"))
    assert mae.loss(logits, torch.tensor([0])).item() == pytest.approx(-logp[0].item(), rel=1e-6)


def test_no_weight_decay_names():
    model = build_model(tiny_cfg("PointMAE"))
    names = model.no_weight_decay()
    assert "blocks.blocks.0.norm1.weight" in names and "pos_embed.0.bias" in names
    assert "blocks.blocks.0.attn.qkv.weight" not in names and "cls_token" not in names


@pytest.mark.parametrize("name", ["PointMAE", "PointBERT"])
def test_frozen_backbone_keeps_bn_statistics(name, points):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(name))
    for pname, p in model.named_parameters():
        p.requires_grad = pname.startswith("cls_head_finetune")
    model.train()
    bn = model.encoder.first_conv[1]
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.loss(model(points), torch.tensor([0, 1, 2])).backward()
    opt.step()
    assert not bn.training and model.training
    for k, v in model.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k
    if name == "PointMAE":  # the trainable head's BN still learns statistics
        assert model.cls_head_finetune[1].training
        assert model.cls_head_finetune[1].num_batches_tracked.item() == 1


def test_unfrozen_bn_updates_statistics(points):
    model = build_model(tiny_cfg("PointMAE")).train()
    before = model.encoder.first_conv[1].running_mean.clone()
    model(points)
    assert not torch.equal(before, model.encoder.first_conv[1].running_mean)


def test_build_errors_name_the_problem(caplog):
    with pytest.raises(KeyError, match="known names.*PointBERT"):
        build_model(dict(tiny_cfg("PointMAE"), NAME="Nope"))
    with pytest.raises(KeyError, match="missing keys \\['depth'\\].*unknown keys \\['bogus'\\]"):
        cfg = tiny_cfg("PointMAE", bogus=1)
        del cfg["depth"]
        build_model(cfg)
    with pytest.raises(ValueError, match="encoder_dims"):
        PointMAE(**{k: v for k, v in tiny_cfg("PointMAE", encoder_dims=32).items() if k != "NAME"})
    with caplog.at_level(logging.INFO, logger="pointclora.models.build"):
        assert type(build_model(tiny_cfg("PointMAE", NAME="PointTransformer"))) is PointMAE
        assert type(build_model(tiny_cfg("PointBERT", NAME="PointTransformer"))) is PointBERT
    assert "taken as 'PointBERT'" in caplog.text and "taken as 'PointMAE'" in caplog.text


def test_bad_points_shape():
    model = build_model(tiny_cfg("PointMAE"))
    with pytest.raises(ValueError, match="points must have shape"):
        model(torch.randn(2, 96, 4))
    with pytest.raises(ValueError, match="fewer than num_group"):
        model(torch.randn(2, 10, 3))
