"""Agreement with other counters under their own conventions: torch's FlopCounterMode,
fvcore and thop (optional; skipped with a reason when not installed)."""
import warnings

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from pointclora.profiler import count_model
from conftest import C1, C3, D, EXPECTED, G, HID, K, L, T, TinyPointMAE
from conftest import profiler_points as points

BN_ELEMENTS = G * K * (C1 + C3) + HID  # BatchNorm1d inputs: encoder (2 layers) + head
LN_ELEMENTS = (2 * L + 1) * T * D  # norm1, norm2 per block + final norm


def ours(model):
    return count_model(model, (points(),))


def test_matmul_macs_equal_torch_flop_counter_halved():
    model = TinyPointMAE().eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(points())
    assert ours(model).macs(kinds=("linear", "conv", "attention")) == counter.get_total_flops() // 2


def test_fvcore_agrees_under_its_convention():
    """fvcore: matmuls incl. attention, LayerNorm 5/elt, eval BatchNorm 2/elt, GELU/softmax ignored."""
    fvcore_nn = pytest.importorskip("fvcore.nn", reason="fvcore not installed (optional: pip install fvcore)")
    model = TinyPointMAE().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = fvcore_nn.FlopCountAnalysis(model, (points(),))
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        total = analysis.total()
    result = ours(model)
    assert total == result.macs() - result.macs(kinds=("activation", "softmax"))
    assert total == sum(EXPECTED[k] for k in ("conv", "linear", "attention", "norm"))


def test_thop_agrees_under_its_convention():
    """thop: nn.Linear/nn.Conv MACs, norms 4/elt (affine), attention matmuls and GELU not seen."""
    thop = pytest.importorskip("thop", reason="thop not installed (optional: pip install thop)")
    model = TinyPointMAE().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macs, params = thop.profile(model, inputs=(points(),), verbose=False)
    assert int(params) == sum(p.numel() for p in model.parameters()) - 2 * D  # thop skips bare tokens
    assert int(macs) == ours(model).thop_macs() + 4 * (BN_ELEMENTS + LN_ELEMENTS)
