"""pointclora.build_model_from_config: the model a config describes, adapters and freezing applied."""
import pytest
import torch

import pointclora
from conftest import tiny_model_config
from pointclora.adapters import adapter_layers, count_parameters, get_adapter_config
from pointclora.config import ConfigError
from pointclora.factory import build_model_with_adapters, resolve_config

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mapping_with_adapter_is_adapted_and_frozen():
    cfg = {"model": tiny_model_config(), "adapter": {"method": "lora", "rank": 2}}
    model = pointclora.build_model_from_config(cfg)
    assert get_adapter_config(model).rank == 2
    assert len(adapter_layers(model)) == 2  # attn.qkv of each of the 2 blocks
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith(("cls_head_finetune", "cls_token", "cls_pos"))
                             for n in trainable)
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith("encoder."))


def test_opts_override_a_mapping_and_the_input_is_not_changed():
    cfg = {"model": tiny_model_config(), "adapter": {"method": "lora", "rank": 2}}
    model = pointclora.build_model_from_config(cfg, opts=["adapter.rank=4", "model.depth=3"])
    assert get_adapter_config(model).rank == 4 and len(model.blocks.blocks) == 3
    assert cfg["adapter"]["rank"] == 2 and cfg["model"]["depth"] == 2


def test_shipped_config_by_name_equals_the_training_build():
    opts = ["model.trans_dim=32", "model.encoder_dims=32", "model.depth=2", "model.num_heads=2"]
    torch.manual_seed(0)
    model = pointclora.build_model_from_config("demo_clora.yaml", opts)
    torch.manual_seed(0)
    same, adapter_cfg = build_model_with_adapters(resolve_config("demo_clora.yaml", opts))
    assert adapter_cfg is not None and count_parameters(model) == count_parameters(same)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), same.state_dict().values()))


def test_no_adapter_section_is_full_fine_tuning():
    model = pointclora.build_model_from_config({"model": tiny_model_config("PointBERT"), "adapter": None})
    assert all(p.requires_grad for p in model.parameters()) and not adapter_layers(model)


@pytest.mark.parametrize("cfg,opts,message", [
    ({"model": {"NAME": "PointMAE", "depth": "two"}}, (), "'model.depth' must be int"),
    ({"adapter": {"rank": 2}}, (), "required key 'model.NAME'"),
    ({"model": tiny_model_config()}, ["adapter.rnak=2"], "--opts: unknown key 'adapter.rnak'"),
])
def test_bad_mapping_names_the_key(cfg, opts, message):
    with pytest.raises(ConfigError, match=message):
        pointclora.build_model_from_config(cfg, opts)


def test_part_segmentation_trains_its_own_head_by_default():
    """No trainable_modules in the adapter section: the model's HEAD_MODULES (the shipped
    shapenetpart_clora.yaml names none)."""
    model = pointclora.build_model_from_config({"model": tiny_model_config("PointMAEPartSeg", num_categories=4),
                                                "adapter": {"method": "lora", "rank": 2}})
    heads = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n}
    assert heads == {"label_conv", "propagation_0", "convs1", "convs2", "convs3", "bns1", "bns2"}


def test_models_describe_themselves():
    from pointclora.adapters import CoToScheduler, group_adapters_by_block
    from pointclora.models import model_class

    assert [model_class({"NAME": n}).TASK for n in ("PointMAE", "PointTransformer", "PointMAEPartSeg", "Point_MAE")] \
        == ["classification", "classification", "part_segmentation", "pretrain"]
    model = pointclora.build_model_from_config({"model": tiny_model_config(depth=3), "adapter": {"method": "lora",
                                                                                               "rank": 2}})
    assert [name for name, _ in model.transformer_blocks()] == [f"blocks.blocks.{i}" for i in range(3)]
    assert list(group_adapters_by_block(model)) == [f"blocks.blocks.{i}" for i in range(3)]
    assert len(CoToScheduler(model, total_steps=10).group_names) == 3


def test_run_tool_turns_user_errors_into_one_line_and_exit_2(capsys):
    from pointclora.cli import run_tool

    def bad():
        raise KeyError("model.NAME: unknown 'X'")

    assert run_tool(bad) == 2
    assert capsys.readouterr().err == "error: model.NAME: unknown 'X'\n"
    assert run_tool(lambda: 0) == 0 and run_tool(lambda: None) == 0
    with pytest.raises(RuntimeError):
        run_tool(lambda: (_ for _ in ()).throw(RuntimeError("a bug keeps its traceback")))
