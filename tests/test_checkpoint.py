"""load_pretrained / load_weights: every official checkpoint layout, prefixes, errors, weights_only."""
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_model_config
from pointclora.adapters import AdapterConfig, apply_adapters
from pointclora.engine.checkpoint import load_model_state
from pointclora.models import WeightsMismatch, build_model, load_pretrained, load_weights


pytestmark = pytest.mark.usefixtures("one_thread")


def mae(cls_dim=5):
    return build_model(tiny_model_config("PointMAE", cls_dim=cls_dim))


def pretrain():
    return build_model(tiny_model_config("PointMAEPretrain", decoder_depth=2))


def randomise(model):
    torch.manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():  # running_var must stay positive
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.randn_like(t))
    return model


def same_state(a, b, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


LAYOUTS = {
    "base_model": lambda sd: {"base_model": sd, "epoch": 3, "metrics": {"acc": torch.tensor(90.0)}},
    "model": lambda sd: {"model": sd},
    "state_dict": lambda sd: {"state_dict": sd},
    "model_state_dict": lambda sd: {"model_state_dict": sd, "test_acc": np.float64(0.93), "epoch": 7},
    "bare": lambda sd: dict(sd),
    "module_prefix": lambda sd: {"base_model": {f"module.{k}": v for k, v in sd.items()}},
    "base_model_prefix": lambda sd: {"base_model": {f"base_model.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_fine_tuned_layouts_round_trip_strict(layout, tmp_path):
    src = randomise(mae())
    path = tmp_path / "ckpt.pth"
    torch.save(LAYOUTS[layout](src.state_dict()), path)
    dst = mae()
    missing, unexpected = load_pretrained(dst, path, strict=True)
    assert missing == [] and unexpected == []
    assert same_state(src, dst)
    x = torch.randn(2, 64, 3)
    out = src.eval()(x)
    assert torch.isfinite(out).all() and torch.equal(out, dst.eval()(x))


@pytest.mark.parametrize("prefix", ["MAE_encoder.", "ACT_encoder."])
def test_pretrain_encoder_prefixes(prefix, tmp_path):
    src = randomise(mae())
    sd = {f"{prefix}{k}": v for k, v in src.state_dict().items() if not k.startswith(("cls_", "cls_head"))}
    sd["module.mask_token"] = torch.zeros(1, 1, 48)
    torch.save({"base_model": sd}, tmp_path / "p.pth")
    dst = mae()
    missing, unexpected = load_pretrained(dst, tmp_path / "p.pth")
    assert set(missing) == {"cls_token", "cls_pos"} | {k for k in dst.state_dict() if k.startswith("cls_head")}
    assert unexpected == ["mask_token"]
    assert same_state(src, dst, skip=("cls_",))


def test_point_mae_pretrain_checkpoint_reports_decoder_keys(tmp_path, caplog):
    src = randomise(pretrain())
    torch.save({"base_model": src.state_dict()}, tmp_path / "pretrain.pth")
    for target in [mae(), build_model(tiny_model_config("PointMAEPartSeg", cls_dim=50))]:
        if target.blocks.blocks.__len__() == 3:  # part seg: a depth-3 encoder
            src = randomise(build_model(tiny_model_config("PointMAEPretrain", depth=3, decoder_depth=2)))
            torch.save({"base_model": src.state_dict()}, tmp_path / "pretrain.pth")
        with caplog.at_level(logging.INFO, logger="pointclora.models.checkpoint"):
            missing, unexpected = load_pretrained(target, tmp_path / "pretrain.pth")
        decoder = ("mask_token", "decoder_pos_embed.", "MAE_decoder.", "increase_dim.")
        assert unexpected and all(k.startswith(decoder) for k in unexpected)
        assert {k for k in src.state_dict() if k.startswith(decoder)} == set(unexpected)
        encoder = src.MAE_encoder.state_dict()
        assert all(torch.equal(target.state_dict()[k], v) for k, v in encoder.items())
        assert not any(k.startswith(("encoder.", "blocks.", "pos_embed.", "norm.")) for k in missing)
        assert "unexpected keys" in caplog.text and "MAE_decoder" in caplog.text


def test_pretrain_checkpoint_loads_back_into_pretrain_model(tmp_path):
    src = randomise(pretrain())
    torch.save({"base_model": src.state_dict()}, tmp_path / "pretrain.pth")
    dst = pretrain()
    assert load_pretrained(dst, tmp_path / "pretrain.pth", strict=True) == ([], [])
    assert same_state(src, dst)


def test_point_bert_transformer_q_checkpoint(tmp_path):
    cfg = tiny_model_config("PointBERT")
    src = randomise(build_model(cfg))
    sd = {f"module.transformer_q.{k}": v for k, v in src.state_dict().items() if not k.startswith("cls_head")}
    sd["module.transformer_q.cls_head.0.weight"] = torch.randn(7, 48)  # contrastive head: never loaded
    sd["module.transformer_q.mask_token"] = torch.randn(1, 1, 48)
    sd["module.transformer_q.lm_head.weight"] = torch.randn(9, 48)
    sd["module.transformer_k.norm.weight"] = torch.randn(48)
    torch.save({"base_model": sd}, tmp_path / "Point-BERT.pth")
    dst = build_model(cfg)
    missing, unexpected = load_pretrained(dst, tmp_path / "Point-BERT.pth")
    assert set(missing) == {k for k in dst.state_dict() if k.startswith("cls_head_finetune")}
    assert set(unexpected) == {"transformer_q.cls_head.0.weight", "mask_token", "lm_head.weight", "transformer_k.norm.weight"}
    assert same_state(src, dst, skip=("cls_head",))


def test_shape_mismatch_names_key_and_shapes(tmp_path):
    torch.save({"base_model": mae(cls_dim=5).state_dict()}, tmp_path / "c.pth")
    with pytest.raises(ValueError, match=r"cls_head_finetune.8.weight: checkpoint \(5, 256\) vs model \(15, 256\)"):
        load_pretrained(mae(cls_dim=15), tmp_path / "c.pth")


def test_strict_reports_missing_and_unexpected(tmp_path):
    sd = mae().state_dict()
    sd.pop("norm.weight")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "c.pth")
    with pytest.raises(KeyError, match=r"missing keys \['norm.weight'\].*unexpected keys \['extra.weight'\]"):
        load_pretrained(mae(), tmp_path / "c.pth", strict=True)
    assert load_pretrained(mae(), tmp_path / "c.pth") == (["norm.weight"], ["extra.weight"])


def test_missing_file_says_where_official_checkpoints_are(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth.*Pang-Yatian/Point-MAE/releases.*Point-BERT"):
        load_pretrained(mae(), tmp_path / "nope.pth")


def test_not_a_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    with pytest.raises(ValueError, match="notes.txt is not a PyTorch checkpoint"):
        load_pretrained(mae(), bad)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth holds a list"):
        load_pretrained(mae(), tmp_path / "list.pth")
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="meta.pth holds no state dict"):
        load_pretrained(mae(), tmp_path / "meta.pth")


class Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_arbitrary_objects_are_refused(tmp_path):
    torch.save({"base_model": mae().state_dict(), "evil": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="evil.pth is not a PyTorch checkpoint readable with weights_only=True"):
        load_pretrained(mae(), tmp_path / "evil.pth")


def test_one_mismatch_message_names_the_source_whatever_the_path(tmp_path):
    """Training checkpoints (strict), --test files (complete) and pre-trained files (partial) all fail
    through load_weights: one message naming the file, a ValueError and a KeyError alike."""
    sd = mae().state_dict()
    sd.pop("norm.weight")
    with pytest.raises(WeightsMismatch, match=r"ckpt-best.pth does not fit PointMAE: 1 missing keys \['norm.weight'\]"):
        load_model_state(mae(), sd, tmp_path / "ckpt-best.pth")
    torch.save({"model": sd}, tmp_path / "fine.pth")
    with pytest.raises(ValueError, match="fine.pth does not fit PointMAE: 1 missing keys"):
        load_weights(mae(), tmp_path / "fine.pth", complete=True)
    assert load_weights(mae(), tmp_path / "fine.pth") == (["norm.weight"], [])  # partial: fine
    torch.save({"other.weight": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(KeyError, match="other.pth does not fit PointMAE: none of its .* tensors matched"):
        load_weights(mae(), tmp_path / "other.pth")


def test_a_failed_load_changes_nothing_and_a_variant_gets_its_backbone_through_it(tmp_path):
    model = mae()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = randomise(mae()).state_dict()
    bad["cls_head_finetune.8.weight"] = torch.zeros(7, 256)
    with pytest.raises(ValueError, match=r"cls_head_finetune.8.weight: checkpoint \(7, 256\) vs model \(5, 256\)"):
        load_weights(model, "in memory", state=bad)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    backbone = randomise(mae())
    variant = apply_adapters(backbone, AdapterConfig.from_dict({"method": "dapt"}))
    assert same_state(backbone, variant, skip=("cls_head_finetune",)) and type(variant).__name__ == "PointMAEDAPT"
