"""Point-MAE pre-training model: masking, loss, reconstruction, checkpoint transfer."""
import pytest
import torch

from conftest import tiny_model_config
from pointclora.models import build_model, load_pretrained
from pointclora.models.point_mae_pretrain import mask_block, mask_rand


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = tiny_model_config("PointMAEPretrain", depth=3, decoder_depth=2, decoder_num_heads=2)


@pytest.mark.parametrize("masker", [mask_rand, mask_block])
@pytest.mark.parametrize("ratio,G,expected", [(0.6, 64, 38), (0.6, 16, 9), (0.25, 8, 2)])
def test_mask_keeps_ratio(masker, ratio, G, expected):
    torch.manual_seed(0)
    mask = masker(torch.randn(4, G, 3), ratio)
    assert mask.dtype == torch.bool and mask.shape == (4, G)
    assert mask.sum(dim=1).tolist() == [expected] * 4
    assert not torch.equal(mask[0], mask[1]) or not torch.equal(mask[1], mask[2])  # random per cloud


def test_block_mask_is_contiguous_around_one_centre():
    """Centres on a line: the masked ones must be one run of consecutive positions."""
    torch.manual_seed(0)
    center = torch.zeros(5, 20, 3)
    center[..., 0] = torch.arange(20.0) ** 1.01  # distinct distances: no ties
    for row in mask_block(center, 0.5):
        idx = row.nonzero().flatten().tolist()
        assert len(idx) == 10 and idx == list(range(idx[0], idx[0] + 10))


@pytest.mark.parametrize("mask_type", ["rand", "block"])
def test_reconstruction_partitions_tokens(mask_type):
    torch.manual_seed(0)
    model = build_model(dict(TINY, mask_type=mask_type)).eval()
    points = torch.randn(2, 96, 3)
    rec = model.reconstruct(points)
    assert rec.mask.shape == (2, 16) and rec.mask.sum(1).tolist() == [9, 9]
    assert rec.visible.shape == (2, 7, 8, 3) and rec.reconstructed.shape == (2, 9, 8, 3)
    assert rec.center.shape == (2, 16, 3)
    # visible patches + masked centres together are exactly the grouped cloud: a partition
    neighborhood, center = model.group_divider(points)
    absolute = neighborhood + center.unsqueeze(2)
    assert torch.equal(rec.visible, absolute[~rec.mask].view(2, 7, 8, 3))
    assert torch.equal(rec.center, center)
    assert torch.isfinite(rec.reconstructed).all()


def test_loss_is_official_chamfer_l2():
    torch.manual_seed(0)
    model = build_model(TINY)
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 0, 0], [0, 2.0, 0]]])
    # d1: both predicted points at the origin -> nearest target 1.0 (squared); d2: 1.0 and 4.0
    assert model._chamfer(pred, target).item() == pytest.approx(1.0 + 2.5)
    l1 = build_model(dict(TINY, loss="cdl1"))
    assert l1._chamfer(pred, target).item() == pytest.approx((1.0 + 1.5) / 2)


def test_loss_decreases_on_tiny_data():
    torch.manual_seed(0)
    model = build_model(TINY).train()
    points = torch.randn(2, 64, 3) * torch.tensor([1.0, 0.5, 0.2])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(10):
        loss = model(points)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.7 * sum(losses[:3]) / 3, losses


def test_official_key_names_and_size():
    sd = build_model(TINY).state_dict()
    for key in ["mask_token", "MAE_encoder.encoder.first_conv.0.weight", "MAE_encoder.blocks.blocks.2.attn.qkv.weight",
                "MAE_encoder.pos_embed.2.weight", "MAE_encoder.norm.weight", "MAE_decoder.blocks.1.mlp.fc1.weight",
                "MAE_decoder.norm.weight", "decoder_pos_embed.0.weight", "increase_dim.0.weight"]:
        assert key in sd, key
    assert sd["increase_dim.0.weight"].shape == (3 * 8, 48, 1)
    with torch.device("meta"):
        full = build_model({"NAME": "Point_MAE", "group_size": 32, "num_group": 64, "loss": "cdl2",
                            "transformer_config": {"mask_ratio": 0.6, "mask_type": "rand", "trans_dim": 384,
                                                   "encoder_dims": 384, "depth": 12, "drop_path_rate": 0.1,
                                                   "num_heads": 6, "decoder_depth": 4, "decoder_num_heads": 6}})
    assert sum(p.numel() for p in full.parameters()) == 29_006_432


@pytest.mark.parametrize("target", [
    dict(NAME="PointMAE", cls_dim=5),
    dict(NAME="PointMAEPartSeg", cls_dim=50),
])
def test_pretrain_state_dict_loads_into_downstream_models(target, tmp_path):
    torch.manual_seed(0)
    src = build_model(TINY)
    torch.save({"base_model": src.state_dict(), "epoch": 1}, tmp_path / "ckpt-last.pth")
    common = {k: v for k, v in TINY.items() if k not in ("NAME", "decoder_depth", "decoder_num_heads")}
    dst = build_model(dict(common, **target))
    missing, unexpected = load_pretrained(dst, tmp_path / "ckpt-last.pth")
    decoder = {k for k in src.state_dict() if k.startswith(("mask_token", "decoder_pos_embed.", "MAE_decoder.", "increase_dim."))}
    assert set(unexpected) == decoder
    assert not any(k.startswith(("encoder.", "blocks.", "pos_embed.", "norm.")) for k in missing)
    for k, v in src.MAE_encoder.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k


def test_bad_pretrain_config():
    with pytest.raises(ValueError, match="mask_type"):
        build_model(dict(TINY, mask_type="grid"))
    with pytest.raises(ValueError, match="mask_ratio=0.01 masks 0"):
        build_model(dict(TINY, mask_ratio=0.01))
    with pytest.raises(ValueError, match="loss must be one of"):
        build_model(dict(TINY, loss="emd"))
