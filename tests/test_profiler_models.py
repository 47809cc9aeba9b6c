"""The profiler on the package's real models and adapters (tiny widths): hand-derived MACs,
merged adapters cost exactly the backbone, unmerged ones their true extra cost."""
import pytest
import torch

from pointclora.adapters import AdapterConfig, adapter_layers, apply_adapters, merge_adapters
from pointclora.models import build_model
from pointclora.profiler import count_model
from pointclora.profiler.summary import profile_model

N, G, K, D, L, H, CLS = 64, 16, 8, 48, 2, 2, 5
T = G + 1
MODEL = {"NAME": "PointMAE", "trans_dim": D, "depth": L, "drop_path_rate": 0.0, "cls_dim": CLS,
         "num_heads": H, "group_size": K, "num_group": G, "encoder_dims": D}


def model():
    torch.manual_seed(0)
    return build_model(MODEL)


def points(batch=1):
    return torch.rand(batch, N, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1


def adapted(**kw):
    m = apply_adapters(model(), AdapterConfig.from_dict(kw))
    for _, layer in adapter_layers(m):  # non-zero adapters, as after training
        for name, p in layer.named_parameters():
            if not name.startswith("base_layer."):
                torch.nn.init.normal_(p, std=0.02)
    return m


def test_point_mae_counts_match_hand_derivation():
    """Point-MAE encoder: Conv1d 3-128-256 | 512-512-D, BN after the 1st and 3rd; head 2D-256-256-cls."""
    kinds = count_model(model(), (points(),)).by("kind")
    assert kinds["conv"] == G * K * (3 * 128 + 128 * 256 + 512 * 512 + 512 * D)
    assert kinds["linear"] == (G * (3 * 128 + 128 * D) + L * T * (D * 3 * D + D * D + 2 * D * 4 * D)
                               + 2 * D * 256 + 256 * 256 + 256 * CLS)
    assert kinds["attention"] == L * 2 * T * T * D
    assert kinds["norm"] == G * K * (128 + 512) * 2 + 2 * 256 * 2 + (2 * L + 1) * T * D * 5
    assert kinds["softmax"] == L * H * T * T
    assert kinds["activation"] == G * 128 + L * T * 4 * D


@pytest.mark.parametrize("cfg", [
    {"method": "clora", "rank": 4, "num_bases": 2, "placement": "input"},
    {"method": "clora", "rank": 4, "num_bases": 2, "placement": "weight"},
    {"method": "lora", "rank": 4},
])
def test_merged_adapters_cost_exactly_the_backbone(cfg):
    backbone = count_model(model(), (points(),))
    m = adapted(**cfg)
    unmerged = count_model(m, (points(),))
    merged = count_model(merge_adapters(m), (points(),))
    assert merged.macs() == backbone.macs()
    assert merged.by("kind") == backbone.by("kind") and merged.by("category") == backbone.by("category")
    assert unmerged.macs() == backbone.macs() + unmerged.by("category")["adapters"]


def test_unmerged_clora_costs_its_three_products_per_token():
    """CLoRA input placement: x @ D (d_in x p r), p (r x r) products, @ U (p r x d_in), per token."""
    p, r = 2, 4
    m = adapted(method="clora", rank=r, num_bases=p, placement="input")
    layers = adapter_layers(m)
    expected = sum(T * (layer.in_features * p * r + p * r * r + p * r * layer.in_features) for _, layer in layers)
    assert count_model(m, (points(),)).by("category")["adapters"] == expected


def test_lora_costs_its_two_products_per_token():
    r = 4
    m = adapted(method="lora", rank=r)
    expected = sum(T * r * (layer.in_features + layer.out_features) for _, layer in adapter_layers(m))
    assert count_model(m, (points(),)).by("category")["adapters"] == expected


def test_adapter_training_step_is_cheaper_than_full_finetuning():
    full = profile_model(model(), (points(),))
    clora = profile_model(adapted(method="clora", rank=4, num_bases=2), (points(),), mode="unmerged")
    assert clora.params["trainable"] < full.params["trainable"]
    assert clora.params["adapter"] > 0
    assert clora.train_backward_macs < full.train_backward_macs
    # frozen patch encoder below every trainable parameter: no backward through the convolutions
    assert full.train_backward_macs - clora.train_backward_macs >= full.kinds["conv"]
