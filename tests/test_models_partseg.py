"""Point-MAE part segmentation: shapes, propagation, determinism, frozen BN, errors."""
import pytest
import torch

from conftest import tiny_model_config
from pointclora.models import build_model
from pointclora.models.part_seg import PointNetFeaturePropagation, default_fetch_idx


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = tiny_model_config("PointMAEPartSeg", drop_path_rate=0.1, cls_dim=6)


@pytest.fixture
def model():
    torch.manual_seed(0)
    return build_model(TINY)


@pytest.fixture
def points():
    return torch.randn(2, 64, 3, generator=torch.Generator().manual_seed(0))


def test_forward_backward_shapes(model, points):
    category = torch.tensor([0, 15])
    feats = model.forward_features(points, category)
    assert feats.shape == (2, 1024 + 6 * 48 + 64, 64)
    logits = model.forward_head(feats)
    assert logits.shape == (2, 64, 6)
    loss = model.loss(logits, torch.randint(0, 6, (2, 64)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_category_changes_the_output(model, points):
    model.eval()
    with torch.no_grad():
        a = model(points, torch.tensor([0, 1]))
        b = model(points, torch.tensor([0, 1]))
        c = model(points, torch.tensor([2, 1]))
    assert torch.equal(a, b)  # eval mode is deterministic
    assert not torch.allclose(a[0], c[0]) and torch.allclose(a[1], c[1])


def test_full_size_parameter_count_and_fetch_idx():
    with torch.device("meta"):
        full = build_model(dict(TINY, trans_dim=384, depth=12, cls_dim=50, num_heads=6, group_size=32,
                                num_group=128, encoder_dims=384))
    assert full.fetch_idx == [3, 7, 11]
    assert full.convs1.in_channels == 3392  # official Conv1d(3392, 512)
    assert sum(p.numel() for p in full.parameters()) == 27_063_730  # Point-MAE's reported 27.06M


def test_official_key_names(model):
    sd = model.state_dict()
    for key in ["label_conv.0.weight", "label_conv.1.running_var", "propagation_0.mlp_convs.1.weight",
                "propagation_0.mlp_bns.0.weight", "convs1.weight", "convs3.bias", "bns2.running_mean",
                "blocks.blocks.2.attn.proj.weight", "encoder.second_conv.3.weight", "norm.bias"]:
        assert key in sd, key
    assert "label_conv.0.bias" not in sd and "cls_token" not in sd


def test_propagation_interpolates_known_points_exactly():
    prop = PointNetFeaturePropagation(2 + 3, [])  # no layers: returns concat(points1, interpolated)
    known = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])  # (1, 4, 3)
    feats = torch.arange(12.0).view(1, 3, 4)  # (1, 3, 4)
    query = torch.cat([known, torch.tensor([[[0.5, 0.0, 0.0]]])], dim=1)  # (1, 5, 3)
    out = prop(query, known, torch.zeros(1, 2, 5), feats)
    assert out.shape == (1, 5, 5)
    assert torch.allclose(out[0, 2:, :4], feats[0], atol=1e-4)
    # the midpoint of points 0 and 1: weights 1/d^2 with d^2 = 0.25, 0.25, 1.25 -> (5, 5, 1) / 11
    expected = (5 * feats[0, :, 0] + 5 * feats[0, :, 1] + feats[0, :, 2]) / 11
    assert torch.allclose(out[0, 2:, 4], expected, atol=1e-4)


def test_frozen_backbone_keeps_bn_statistics(model, points):
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(("convs", "bns"))
    model.train()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("encoder.", "label_conv.", "propagation_0."))}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.loss(model(points, torch.tensor([1, 2])), torch.randint(0, 6, (2, 64))).backward()
    opt.step()
    sd = model.state_dict()
    assert all(torch.equal(sd[k], v) for k, v in frozen.items())
    assert model.bns1.training and model.bns1.num_batches_tracked.item() == 1


def test_reset_head(model, points):
    model.reset_head(50)
    assert model.eval()(points, torch.tensor([0, 1])).shape == (2, 64, 50)


def test_errors():
    with pytest.raises(ValueError, match="category labels must be in \\[0, 16\\)"):
        build_model(TINY)(torch.randn(2, 64, 3), torch.tensor([0, 16]))
    with pytest.raises(ValueError, match="category must be \\(B,\\)"):
        build_model(TINY)(torch.randn(2, 64, 3), torch.tensor([0]))
    with pytest.raises(ValueError, match="category must be \\(B,\\) = \\(2,\\) integer labels"):
        build_model(TINY)(torch.randn(2, 64, 3), torch.tensor([0, 1], dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="depth >= 3"):
        default_fetch_idx(2)
    with pytest.raises(ValueError, match="fetch_idx"):
        build_model(dict(TINY, fetch_idx=[0, 0, 2]))
