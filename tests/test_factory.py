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
