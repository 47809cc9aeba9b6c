"""Our DAPT / PointGST against outputs of the official model code (tests/data/golden_*.safetensors,
written by scripts/make_golden_peers.py from the official repositories; the weights are the
closed-form formula_state_dict, every adapter / prompt / scale-shift tensor non-zero)."""
import importlib.util
import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from pointclora.adapters import pointgst
from pointclora.models import build_model

DATA = Path(__file__).resolve().parent / "data"
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_golden_peers.py"


def _script():
    spec = importlib.util.spec_from_file_location("make_golden_peers", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def golden(method):
    path = DATA / f"golden_{method}.safetensors"
    with safe_open(str(path), framework="pt") as f:
        cfg = json.loads(f.metadata()["config"])
    return cfg, load_file(str(path))


def model_for(cfg):
    model = build_model(dict(cfg))
    model.load_state_dict(_script().formula_state_dict(model.state_dict()), strict=True)
    return model.eval()


def test_golden_inputs_are_the_scripts():
    _, tensors = golden("dapt")
    assert torch.equal(tensors["points"], _script().golden_points())


def test_dapt_gives_the_official_logits():
    cfg, tensors = golden("dapt")
    assert cfg["NAME"] == "PointTransformer_DAPT" and cfg["prompt_token"] == "mean"
    with torch.no_grad():
        logits = model_for(cfg)(tensors["points"])
    torch.testing.assert_close(logits, tensors["logits"], atol=1e-5, rtol=0)


def test_pointgst_gives_the_official_logits_with_the_official_bases(monkeypatch):
    cfg, tensors = golden("pointgst")
    stored = iter([tensors["basis"], tensors["local_basis"]])
    calls = []

    def substitute(xyz, basis="official"):
        calls.append(tuple(xyz.shape))
        return next(stored)
    monkeypatch.setattr(pointgst, "graph_basis", substitute)
    with torch.no_grad():
        logits = model_for(cfg)(tensors["points"])
    assert calls == [(2, 16, 3), (4, 8, 3)]  # global basis of 16 centres, then 2 windows of 8 per cloud
    torch.testing.assert_close(logits, tensors["logits"], atol=1e-5, rtol=0)


def test_our_official_basis_equals_the_released_one_up_to_sign():
    cfg, tensors = golden("pointgst")
    model = model_for(cfg)
    _, center = model.group_divider(tensors["points"])
    u, sub_u, _ = model.spectral_inputs(center)
    for ours, theirs in ((u, tensors["basis"]), (sub_u.flatten(0, 1), tensors["local_basis"])):
        overlap = (ours.transpose(-2, -1) @ theirs).diagonal(dim1=-2, dim2=-1).abs()
        torch.testing.assert_close(overlap, torch.ones_like(overlap), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["dapt", "pointgst"])
def test_golden_files_are_small(method):
    assert (DATA / f"golden_{method}.safetensors").stat().st_size < 16_000
