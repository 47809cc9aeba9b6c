"""model.attention: sdpa with the peer methods (DAPT, IDPT, PointGST): the variant's forward with fused
attention equals explicit attention (fp32, CPU, tiny sizes, every adapter / prompt tensor non-zero),
logits and gradients; and the config key reaches the variant (it once did not: the variants were built
without `model.attention` and DAPT's attention had no sdpa path, so such a config silently trained with
explicit attention).
"""
import copy

import pytest
import torch

from conftest import PEER_SECTIONS, randomise_trainable, tiny_model_config
from pointclora import build_model_from_config
from pointclora.adapters import AdapterConfig, apply_adapters
from pointclora.models import Attention, build_model

# official NAME and the keys that select the variant (IDPT's NAME is plain PointTransformer)
OFFICIAL = {"dapt": ("PointTransformer_DAPT", {}), "pointgst": ("PointTransformer_PGST", {}),
            "idpt": ("PointTransformer", dict(prompt_module="dgcnn", cls_type="all"))}
pytestmark = pytest.mark.usefixtures("one_thread")


def variant(method: str) -> torch.nn.Module:
    """The tiny variant (16 groups, 2 blocks, no drop path) with explicit attention and every trainable
    tensor non-zero."""
    torch.manual_seed(0)
    model = build_model(tiny_model_config())
    return randomise_trainable(apply_adapters(model, AdapterConfig.from_dict(PEER_SECTIONS[method])))


def attention_modules(model: torch.nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, Attention)]


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    """(logits, loss, {name: grad}) of one training-mode step; BatchNorm and dropout in eval, where a
    batch of 3 would amplify float rounding (as tests/test_models_attention.py does); the same seed
    before each step draws the same functional dropout masks (DAPT's adapter dropout)."""
    model.train()
    for m in model.modules():
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.Dropout)):
            m.eval()
    torch.manual_seed(7)
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    return logits.detach(), loss.detach(), {n: p.grad for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["dapt", "idpt", "pointgst"])
def test_sdpa_matches_explicit_in_the_peer_forward(method, monkeypatch):
    explicit = variant(method)
    sdpa = copy.deepcopy(explicit)
    for m in attention_modules(sdpa):
        m.attention = "sdpa"  # what model.attention: sdpa should give the variant
    calls = []
    fused = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: calls.append(1) or fused(*a, **k))
    x, y = torch.randn(3, 64, 3, generator=torch.Generator().manual_seed(1)), torch.tensor([1, 3, 0])
    l1, s1, g1 = step(explicit, x, y)
    assert calls == []
    l2, s2, g2 = step(sdpa, x, y)
    # every block's attention ran fused (IDPT: also its prompt generator's, none for dgcnn)
    assert len(calls) == len(attention_modules(sdpa)) >= tiny_model_config()["depth"]
    torch.testing.assert_close(l2, l1, atol=1e-5, rtol=0)
    torch.testing.assert_close(s2, s1, atol=1e-5, rtol=0)
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        torch.testing.assert_close(g2[name], g1[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(name.startswith("blocks.") for name in g1)  # the method's own tensors have gradients


@pytest.mark.parametrize("method", sorted(PEER_SECTIONS))
def test_model_attention_reaches_the_peer_variant(method):
    cfg = {"model": tiny_model_config(attention="sdpa"), "adapter": PEER_SECTIONS[method]}
    model = build_model_from_config(cfg)
    assert model.METHOD == method
    assert {m.attention for m in attention_modules(model)} == {"sdpa"}
    name, keys = OFFICIAL[method]
    fields = {k: v for k, v in PEER_SECTIONS[method].items() if k != "method"}
    official = build_model(tiny_model_config(name, attention="sdpa", **keys, **fields))
    assert type(official) is type(model) and {m.attention for m in attention_modules(official)} == {"sdpa"}
