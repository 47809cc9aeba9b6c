"""tools/sweep.py with the peer methods (DAPT, IDPT, PointGST): their sections fitted to the base
config's model, the one figure-saving helper."""
import json
from pathlib import Path

import pytest

from conftest import load_tool
from pointclora import build_model_from_config
from pointclora.adapters import AdapterConfig, count_parameters
from pointclora.config import load_config
from pointclora.sweep import grid, report

PEERS = ("dapt", "idpt", "pointgst")


def test_methods_and_labels_name_the_peers(capsys):
    for method in PEERS:
        assert method in grid.METHODS and grid.LABELS[method]
        assert grid.adapter_section(method)["method"] == method
    assert grid.adapter_section("pointgst") == load_config("scanobjectnn_pointgst.yaml")["adapter"]
    with pytest.raises(SystemExit):
        load_tool("sweep").parse_args(["--help"])
    assert "clora_coto,dapt,idpt,pointgst" in capsys.readouterr().out


@pytest.mark.parametrize("groups, expected", [(128, 32), (64, 32), (16, 8), (12, 6), (8, 4), (7, 1), (2, 1)])
def test_pointgst_local_divides_the_groups(groups, expected):
    section, notes = grid.fit_section({"method": "pointgst", "local": 32}, {"num_group": groups, "depth": 4})
    assert section["local"] == expected and groups % expected == 0
    assert notes == ([] if expected == 32 else
                     [f"pointgst: adapter.local 32 -> {expected} to fit the model (depth 4, num_group {groups})"])


@pytest.mark.parametrize("model, layer, k", [({"depth": 12, "num_group": 128}, 11, 20),
                                              ({"depth": 4, "num_group": 16}, 3, 8),
                                              ({"depth": 2, "num_group": 8}, 1, 4),
                                              ({"depth": 12, "num_group": 20}, 11, 20)])
def test_idpt_prompt_layer_and_k_fit_depth_and_groups(model, layer, k):
    section, _ = grid.fit_section({"method": "idpt", "prompt_layer": 11, "prompt_k": 20}, model)
    assert (section["prompt_layer"], section["prompt_k"]) == (layer, k)
    # unset keys take the method's official default (11, 20) before fitting
    assert grid.fit_section({"method": "idpt"}, model)[0] == {"method": "idpt", "prompt_layer": layer, "prompt_k": k}
    # a value that fits is kept (OBJ_ONLY's middle block), and generators without kNN keep their k
    assert grid.fit_section({"method": "idpt", "prompt_layer": 0}, model)[0]["prompt_layer"] == 0
    assert grid.fit_section({"method": "idpt", "prompt_module": "mlp", "prompt_k": 99}, model)[0]["prompt_k"] == 99


@pytest.mark.parametrize("section, model, message", [
    ({"method": "pointgst", "local": 32}, {"num_group": 1, "depth": 4}, "adapter.local=32: no window size fits "
                                                                        "model.num_group=1"),
    ({"method": "idpt", "prompt_k": 20}, {"num_group": 1, "depth": 4}, "adapter.prompt_k=20: model.num_group=1"),
    ({"method": "idpt"}, {"num_group": 16}, "model.depth: idpt fits its adapter section to it"),
])  # fmt: skip
def test_sizes_that_cannot_fit_name_the_key(section, model, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        grid.fit_section(section, model)


def test_other_methods_are_not_touched():
    for section in (None, {"method": "clora", "rank": 64}, {"method": "dapt", "rank": 64}):
        assert grid.fit_section(section, {"num_group": 1, "depth": 1}) == (section, [])


def test_demo_run_configs_equal_the_shipped_demo_configs():
    """The rule, applied to demo_clora.yaml's model, gives what configs/demo_{idpt,pointgst}.yaml chose."""
    base = grid.load_base("demo_clora.yaml", [])
    for method in PEERS:
        cfg = grid.run_config(base, grid.Run(method, None, 0))
        demo = load_config(f"demo_{method}.yaml")["adapter"]
        assert cfg["adapter"] == {k: v for k, v in demo.items() if k in cfg["adapter"]}
        assert cfg["model"] == base["model"]
        model = build_model_from_config(cfg)
        assert model.METHOD == method
        assert count_parameters(model)["trainable"] == count_parameters(build_model_from_config(
            f"demo_{method}.yaml"))["trainable"]
    assert grid.fit_notes(base, ["full", "dapt", "idpt", "pointgst"]) == [
        "idpt: adapter.prompt_layer 11 -> 3 to fit the model (depth 4, num_group 16)",
        "idpt: adapter.prompt_k 20 -> 8 to fit the model (depth 4, num_group 16)",
        "pointgst: adapter.local 32 -> 8 to fit the model (depth 4, num_group 16)"]


def test_a_setting_that_cannot_build_stops_before_any_run():
    cfg = grid.load_base("demo_clora.yaml", [])
    cfg["adapter"] = {"method": "dapt", "rank": 0}
    with pytest.raises(ValueError, match=r"^--methods dapt: the model of this setting cannot be built: "
                                         r"DAPTConfig\.rank must be an integer >= 1, got 0$"):
        grid.check_builds({"dapt": cfg})


def test_peer_sweep_trains_fitted_sections(tmp_path, tiny_cls_config, capsys):
    out = tmp_path / "sweep"  # tiny_cls_config: 8 groups, 2 blocks
    argv = ["--config", str(tiny_cls_config), "--seeds", "0", "--methods", ",".join(PEERS), "--out", str(out),
            "--device", "cpu", "--in-process", "--opts", "train.epochs=1"]
    assert load_tool("sweep").main(argv) == 0
    printed = capsys.readouterr().out
    data = json.loads((out / "sweep.json").read_text())
    assert [s["setting"] for s in data["settings"]] == list(PEERS)
    assert data["fitted"] == ["idpt: adapter.prompt_layer 11 -> 1 to fit the model (depth 2, num_group 8)",
                              "idpt: adapter.prompt_k 20 -> 4 to fit the model (depth 2, num_group 8)",
                              "pointgst: adapter.local 32 -> 4 to fit the model (depth 2, num_group 8)"]
    assert all(note in printed for note in data["fitted"])
    assert "Adapter keys fitted to the model's size: idpt: adapter.prompt_layer 11 -> 1" in (out / "sweep.md").read_text()
    for s in data["settings"]:
        cfg = load_config(out / s["setting"] / "seed0" / "config.yaml")
        assert cfg["adapter"]["method"] == s["setting"]
        assert s["trainable"] == count_parameters(build_model_from_config(cfg))["trainable"]
        assert 0.0 <= s["protocols"][report.BEST_TEST]["oa"]["mean"] <= 100.0 and s["gflops"] > 0
    assert load_config(out / "pointgst" / "seed0" / "config.yaml")["adapter"]["local"] == 4
    assert "| DAPT | 1 |" in (out / "sweep.md").read_text()


def test_save_figure_writes_the_png_and_closes_the_figure(tmp_path):
    plt = report.pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0], label="line")
    path = report.save_figure(fig, tmp_path / "new" / "fig.png")
    assert path == tmp_path / "new" / "fig.png" and path.read_bytes()[:4] == b"\x89PNG"
    assert fig.number not in plt.get_fignums()
    assert Path(path).stat().st_size > 1000


@pytest.mark.parametrize("extra, message", [
    (["--methods", "pointgst", "--opts", "model.num_group=1"],
     "error: adapter.local=32: no window size fits model.num_group=1"),
    (["--methods", "full,dapt", "--opts", "model.NAME=PointBERT"],
     "error: --methods dapt: the model of this setting cannot be built: these methods adapt a Point-MAE backbone"),
])  # fmt: skip
def test_sweep_cli_size_errors_are_one_line(tmp_path, capsys, extra, message):
    assert load_tool("sweep").main(["--config", "demo_clora.yaml", "--out", str(tmp_path / "s"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1
    assert not (tmp_path / "s").exists()


def test_a_value_that_is_no_size_is_left_to_the_methods_own_check():
    """local=0 once divided by zero in the fit; it is passed on, and the method's config names it."""
    section = {"method": "pointgst", "local": 0}
    assert grid.fit_section(section, {"num_group": 16, "depth": 4}) == (section, [])
    with pytest.raises(ValueError, match="local"):
        AdapterConfig.from_dict(section)
