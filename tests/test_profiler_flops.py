"""Counted MACs of a tiny Point-MAE-like model equal hand-derived numbers, per layer type."""
import pytest
import torch
from torch import nn

import cuda_ext
from conftest import C1, C3, CLS, EXPECTED, HID, D, G, K, L, N, P, T, TinyPointMAE, add_lora
from conftest import profiler_points as points
from pointclora.profiler import count_model


@pytest.mark.parametrize("sdpa", [False, True])
def test_forward_macs_per_kind_match_hand_derivation(sdpa):
    result = count_model(TinyPointMAE(sdpa), (points(),))
    assert result.by("kind") == EXPECTED
    assert result.macs() == sum(EXPECTED.values())
    assert result.thop_macs() == EXPECTED["conv"] + EXPECTED["linear"]


def test_categories_split_the_forward():
    cats = count_model(TinyPointMAE(), (points(),)).by("category")
    assert cats["attention matmuls"] == EXPECTED["attention"]
    assert cats["patch encoder"] == EXPECTED["conv"] + G * K * (C1 + C3) * 2
    assert cats["positional embedding"] == G * (3 * P + P * D) + G * P
    assert cats["head"] == 2 * D * HID + HID * CLS + 2 * HID
    assert sum(cats.values()) == sum(EXPECTED.values())
    assert "adapters" not in cats


@pytest.mark.parametrize("batch", [1, 3])
def test_counts_scale_with_batch_and_record_point_ops(batch):
    result = count_model(TinyPointMAE(), (points(batch),))
    assert result.macs() == batch * sum(EXPECTED.values())
    names = [c.name for c in result.point_op_calls]
    assert names == ["furthest_point_sample", "gather_operation", "knn"]
    fps = result.point_op_calls[0]
    assert (fps.batch, fps.n, fps.m) == (batch, N, G)


def test_point_ops_restored_after_counting():
    original = cuda_ext.knn
    count_model(TinyPointMAE(), (points(),))
    assert cuda_ext.knn is original and not hasattr(cuda_ext.knn, "__wrapped__")


@pytest.mark.parametrize("r", [1, 4])
def test_unmerged_lora_adds_its_true_cost_and_merged_adds_none(r):
    base = count_model(TinyPointMAE(), (points(),))
    model = add_lora(TinyPointMAE(), r)
    unmerged = count_model(model, (points(),))
    assert unmerged.by("category")["adapters"] == L * T * (D * r + r * 3 * D)
    assert unmerged.macs() == base.macs() + L * T * (D * r + r * 3 * D)
    for block in model.blocks.blocks:
        block.attn.qkv.merge()
    merged = count_model(model, (points(),))
    assert merged.by("kind") == base.by("kind")
    assert merged.by("category") == base.by("category")


@pytest.mark.parametrize("trainable, expected", [
    ("second", 6 * 7),  # weight grad of layer 2 only: layer 1's output needs no gradient
    ("first", 5 * 6 + 6 * 7),  # weight grad of layer 1 + input grad through frozen layer 2
    ("both", 5 * 6 + 2 * 6 * 7),  # weight grads of both + input grad of layer 2
    ("none", 0),
])
def test_backward_counts_only_the_gradients_autograd_needs(trainable, expected):
    model = nn.Sequential(nn.Linear(5, 6, bias=False), nn.Linear(6, 7, bias=False))
    model[0].weight.requires_grad_(trainable in ("first", "both"))
    model[1].weight.requires_grad_(trainable in ("second", "both"))
    result = count_model(model, (torch.randn(1, 5),), backward=True)
    assert result.macs("forward") == 5 * 6 + 6 * 7
    assert result.macs("backward") == expected


def test_backward_of_lora_model_is_cheaper_than_full_finetuning():
    full = count_model(TinyPointMAE(), (points(2),), backward=True)
    lora = count_model(add_lora(TinyPointMAE(), 2), (points(2),), backward=True)
    assert 0 < lora.macs("backward") < full.macs("backward")
    # full fine-tuning: every matmul needs a weight grad, all but the first convolution an input grad
    matmul_fwd = sum(full.macs("forward", (k,)) for k in ("conv", "linear", "attention"))
    assert full.macs("backward", ("matmul", "attention")) > matmul_fwd


def test_inputs_must_be_a_tuple():
    with pytest.raises(ValueError, match="inputs"):
        count_model(TinyPointMAE(), points())
