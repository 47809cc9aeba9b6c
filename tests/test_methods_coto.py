"""CoTo with the peer methods: refused with its reason for DAPT and IDPT (through tools/train.py too);
for PointGST it trains, logs the active fraction, is off in eval, and a killed run resumes exactly."""
import pytest
import torch

from conftest import PEER_SECTIONS, assert_same_model_state, load_tool, randomise_trainable, tiny_model_config
from pointclora.adapters import AdapterConfig, CoToScheduler, apply_adapters
from pointclora.engine.logging import read_csv
from pointclora.models import build_model

POINTGST_COTO = "adapter: {method: pointgst, rank: 4, local: 4, coto: true, coto_p_start: 0.1}\n"
TRAIN = load_tool("train")


def train(config, out, *extra: str) -> int:
    return TRAIN.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


def write_config(tmp_path, base, adapter: str):
    """`base` (tiny_cls_config: 8 groups, 2 blocks) with `adapter` (a YAML line)."""
    path = tmp_path / "cfg.yaml"
    path.write_text(f"_base_: {base}\n" + adapter)
    return path


@pytest.mark.parametrize("method, reason", [
    ("dapt", "its prompts are produced by the adapters and change the token count"),
    ("idpt", "IDPT has no per-layer adapters to activate progressively"),
])  # fmt: skip
def test_coto_refused_for_dapt_and_idpt_in_one_line(method, reason, tiny_cls_config, tmp_path, capsys):
    config = write_config(tmp_path, tiny_cls_config, f"adapter: {{method: {method}, coto: true}}\n")
    assert train(config, tmp_path / "out", "--opts", "train.epochs=1") == 2
    err = capsys.readouterr().err
    name = type(AdapterConfig.from_dict({"method": method})).__name__
    assert err.startswith("error: ") and f"{name}.coto: CoTo does not apply to {method}: " in err
    assert reason in err and err.count("\n") == 1
    assert not (tmp_path / "out" / "results.json").exists()


def test_pointgst_coto_switches_adapters_in_training_only():
    torch.manual_seed(0)
    model = apply_adapters(build_model(tiny_model_config()), AdapterConfig.from_dict(PEER_SECTIONS["pointgst"]))
    model = randomise_trainable(model).eval()
    x = torch.randn(3, 64, 3, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        on = model(x)
        coto = CoToScheduler(model, total_steps=4, p_start=0.0, seed=0)  # p = 0: one block stays on
        assert coto.mask.tolist().count(True) == 1
        torch.testing.assert_close(model(x), on, atol=0, rtol=0)  # eval: every adapter on
        model.train()
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        dropped = model(x)
        for block in model.blocks.blocks:
            block.gft_adapter.coto_active = True
        kept = model(x)
    assert (dropped - kept).abs().max() > 1e-4  # the switched-off block's residual is absent


def test_pointgst_coto_trains_logs_and_resumes_exactly(tiny_cls_config, tmp_path):
    config = write_config(tmp_path, tiny_cls_config, POINTGST_COTO)
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert train(config, straight) == 0
    rows = read_csv(straight / "metrics.csv")
    fractions = [r["coto/active_fraction"] for r in rows]
    assert len(fractions) == 2 and all(f in (0.5, 1.0) for f in fractions)
    state = torch.load(straight / "ckpt-last.pth", weights_only=False)["coto"]
    assert state["group_names"] == ["blocks.blocks.0", "blocks.blocks.1"] and state["t"] > 0
    assert train(config, killed, "--max-epochs-this-run", "1") == 0
    assert train(config, killed, "--resume") == 0
    assert_same_model_state(straight / "ckpt-last.pth", killed / "ckpt-last.pth")
    again = torch.load(killed / "ckpt-last.pth", weights_only=False)["coto"]
    assert again["t"] == state["t"] and torch.equal(again["mask"], state["mask"])
