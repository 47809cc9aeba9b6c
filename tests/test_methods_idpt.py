"""IDPT (pointclora.models.idpt / pointclora.adapters.idpt): official outputs, keys, counts, shapes, errors.
The plumbing every model-variant method shares (adapter files, BatchNorm rule, merging, tools) is
tested for IDPT too in tests/test_methods.py."""
import importlib.util
from pathlib import Path

import pytest
import torch

from pointclora.adapters.idpt import DGCNNPrompt, edge_features, knn_features, reset_prompt_parameters
from pointclora.models import PointMAE, build_model, load_pretrained
from pointclora.models.idpt import PointMAEIDPT

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
TINY = dict(trans_dim=32, depth=3, drop_path_rate=0.1, cls_dim=5, num_heads=2, group_size=8, num_group=24,
            encoder_dims=32)
FULL = dict(trans_dim=384, depth=12, drop_path_rate=0.1, cls_dim=15, num_heads=6, group_size=32, num_group=128,
            encoder_dims=384)
OFFICIAL_KEYS = dict(prompt_layer=11, prompt_module="dgcnn", cls_type="all")  # cfgs/finetune_scan_hardest_idpt.yaml
MODULES = ["dgcnn", "dgcnn_light2", "dgcnn_light", "mlp", "transformer"]
WIDTH = {"all": 3, "promptcls": 2, "pointcls": 2, "promptonly": 1}


def _golden_module():
    spec = importlib.util.spec_from_file_location("make_golden_idpt", REPO / "scripts" / "make_golden_idpt.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny(**kw) -> PointMAEIDPT:
    torch.manual_seed(0)
    return PointMAEIDPT(**{**TINY, "prompt_layer": 2, **kw})


def points(b=2, n=128, seed=1):
    return torch.rand(b, n, 3, generator=torch.Generator().manual_seed(seed)) * 2 - 1


GOLDEN = torch.load(DATA / "golden_idpt.pt", weights_only=True)


@pytest.mark.parametrize("index", range(len(GOLDEN["cases"])), ids=lambda i: "-".join(
    str(v) for v in GOLDEN["cases"][i]["case"].values()))
def test_logits_equal_the_official_code(index):
    """tests/data/golden_idpt.pt (scripts/make_golden_idpt.py): the official IDPT PointTransformer's logits
    for hashed weights."""
    golden, case = _golden_module(), GOLDEN["cases"][index]
    assert golden.BASE == GOLDEN["base"] and golden.SEED == GOLDEN["seed"]
    model = golden.our_model(case["case"])
    sums = golden.checksums(model.state_dict())
    assert torch.equal(sums, case["checksums"]), "the weight generator changed: regenerate the golden file"
    assert torch.equal(golden.golden_points(), GOLDEN["points"])
    with torch.no_grad():
        logits = model(GOLDEN["points"])
    assert logits.abs().max() > 0.3  # a meaningful scale for the tolerance below
    torch.testing.assert_close(logits, case["logits"], rtol=0, atol=1e-4)


def test_full_size_counts_equal_the_official_ones():
    """Official freezing rule (optimizer part 'only_new'): every parameter whose name holds 'cls'."""
    with torch.device("meta"):  # shapes only
        model = PointMAEIDPT(**FULL, **OFFICIAL_KEYS)
    params = dict(model.named_parameters())
    assert sum(p.numel() for p in params.values()) == 23_522_191
    assert sum(p.numel() for n, p in params.items() if "cls" in n) == 1_696_783
    assert sum(p.numel() for n, p in params.items() if n.startswith("blocks.cls.")) == 1_330_176  # the DGCNN


@pytest.mark.parametrize("module, cls_type", [(m, "all") for m in MODULES] + [("mlp", c) for c in WIDTH if c != "all"])
def test_forward_shapes(module, cls_type):
    model = tiny(prompt_module=module, cls_type=cls_type).eval()
    x = points(3)
    with torch.no_grad():
        tokens = model.forward_tokens(x)
        assert tokens.shape == (3, 2 + 24, 32)  # [cls], prompt, 24 point tokens
        assert model.forward_features(x).shape == (3, WIDTH[cls_type] * 32)
        assert model(x).shape == (3, 5)
    assert model.cls_head_finetune[0].in_features == WIDTH[cls_type] * 32


def test_official_state_dict_keys():
    sd = tiny().state_dict()
    for key in ("prompt_pos", "cls_token", "cls_pos", "blocks.blocks.2.attn.qkv.weight", "blocks.cls.bn1.weight",
                "blocks.cls.conv1.0.weight", "blocks.cls.conv1.1.running_var", "blocks.cls.bn5.weight",
                "blocks.cls.conv5.0.weight", "cls_head_finetune.0.weight"):
        assert key in sd, key
    assert sd["blocks.cls.conv5.0.weight"].shape == (32, 96, 1)  # three EdgeConv outputs fused
    assert sd["cls_head_finetune.0.weight"].shape == (256, 96)
    model = tiny()
    assert model.blocks.cls.bn2 is model.blocks.cls.conv2[1]  # registered twice, as the official module


def test_light_generator_keeps_the_official_unused_bn5():
    """dgcnn_light re-assigns bn5 after building conv5: an unused BatchNorm under 'bn5' (it loads, never runs)."""
    model = tiny(prompt_module="dgcnn_light").eval()
    assert model.blocks.cls.bn5 is not model.blocks.cls.conv5[1]
    x = points()
    with torch.no_grad():
        before = model(x)
        model.blocks.cls.bn5.weight.fill_(5.0)
        assert torch.equal(model(x), before)
        model.blocks.cls.conv5[1].weight.fill_(5.0)
        assert not torch.allclose(model(x), before)


def test_prompt_depends_on_the_instance_and_reaches_the_logits():
    model = tiny().eval()
    with torch.no_grad():
        a, b = model.forward_tokens(points(seed=1)), model.forward_tokens(points(seed=2))
        assert (a[:, 1] - b[:, 1]).abs().max() > 1e-3  # a different prompt per cloud
        before = model(points())
        model.blocks.cls.conv5[0].weight.mul_(-1.0)
        assert not torch.allclose(model(points()), before)


def test_knn_and_edge_features_by_hand():
    x = torch.tensor([[[0.0, 1.0, 3.0, 7.0]]])  # (B=1, C=1, G=4) on a line
    assert knn_features(x, 2)[0].tolist() == [[0, 1], [1, 0], [2, 1], [3, 2]]
    e = edge_features(x, 2)  # (1, 2, 4, 2): neighbour - centre, centre
    assert e.shape == (1, 2, 4, 2)
    assert e[0, 0].tolist() == [[0.0, 1.0], [0.0, -1.0], [0.0, -2.0], [0.0, -4.0]]
    assert e[0, 1].tolist() == [[0.0, 0.0], [1.0, 1.0], [3.0, 3.0], [7.0, 7.0]]


def test_prompt_init_is_seeded_and_is_torch_default():
    a, b = DGCNNPrompt(16, 3, k=4), DGCNNPrompt(16, 3, k=4)
    reset_prompt_parameters(a, 3)
    reset_prompt_parameters(b, 3)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), name
    bound = 1 / (2 * 16) ** 0.5  # kaiming_uniform(a=sqrt(5)) of Conv2d(32, 16, 1)
    w = a.conv1[0].weight
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    reset_prompt_parameters(b, 4)
    assert not torch.equal(a.conv1[0].weight, b.conv1[0].weight)


def test_official_config_builds_idpt_and_plain_point_transformer_stays_point_mae():
    model = build_model({"NAME": "PointTransformer", **TINY, "prompt_layer": 1, "prompt_module": "dgcnn",
                         "cls_type": "all"})
    assert type(model) is PointMAEIDPT and model.prompt_layer == 1
    assert type(build_model({"NAME": "PointTransformer", **TINY})) is PointMAE
    assert type(build_model({"NAME": "PointMAEIDPT", **TINY, "prompt_layer": 0})) is PointMAEIDPT


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_finetuned_checkpoint_loads_strictly(tmp_path, prefix):
    src = tiny().eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "ckpt-best.pth"
    torch.save({"base_model": {prefix + k: v for k, v in src.state_dict().items()}, "epoch": 300}, path)
    dst = tiny().eval()
    dst.reset_prompt_parameters(seed=9)
    assert load_pretrained(dst, str(path), strict=True) == ([], [])
    x = points()
    with torch.no_grad():
        assert torch.equal(dst(x), src(x))


@pytest.mark.parametrize("kw, match", [
    (dict(prompt_module="pointnet"), "prompt_module must be one of"),
    (dict(cls_type="cls"), "cls_type must be one of"),
    (dict(prompt_layer=3), r"prompt_layer must be an integer in \[0, depth - 1\] = \[0, 2\], got 3"),
    (dict(prompt_layer=-1), "prompt_layer"),
    (dict(prompt_layer=True), "prompt_layer"),
    (dict(prompt_k=0), "prompt_k must be an integer >= 1"),
    (dict(prompt_k=25), r"prompt_k \(25\) must be <= num_group \(24\)"),
])
def test_bad_model_keys_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny(**kw)


def test_mlp_and_transformer_generators_do_not_need_k_neighbours():
    for module in ("mlp", "transformer"):
        assert tiny(prompt_module=module, prompt_k=25).prompt_k == 25


# ----------------------------------------------------------------------------- through the shared plumbing
def _adapted(**section):
    """A tiny Point-MAE backbone (torch seed 0) adapted by an IDPT section."""
    from pointclora.adapters import AdapterConfig, apply_adapters

    torch.manual_seed(0)
    base = build_model(dict(NAME="PointMAE", **TINY)).eval()
    return apply_adapters(base, AdapterConfig.from_dict(dict(dict(method="idpt", prompt_layer=2), **section)))


def test_prompt_pos_stays_frozen_and_travels_in_the_adapter_file(tmp_path):
    from pointclora.adapters import adapter_state_dict, load_adapter, save_adapter

    model = _adapted().eval()
    assert not model.prompt_pos.requires_grad  # the official rule trains names holding 'cls' only
    with torch.no_grad():
        model.prompt_pos.add_(0.5)  # e.g. a model loaded from an official checkpoint
        model.blocks.cls.conv5[0].weight.mul_(1.5)
    assert "prompt_pos" in adapter_state_dict(model)
    path = tmp_path / "idpt.safetensors"
    save_adapter(model, str(path))
    torch.manual_seed(0)
    loaded = load_adapter(build_model(dict(NAME="PointMAE", **TINY)), str(path)).eval()
    assert torch.equal(loaded.prompt_pos, model.prompt_pos)
    with torch.no_grad():
        assert torch.equal(loaded(points()), model(points()))


def test_from_backbone_keeps_the_blocks_and_seeds_the_prompt():
    torch.manual_seed(0)
    base = build_model(dict(NAME="PointMAE", **TINY))
    a, b, c = _adapted(), _adapted(), _adapted(seed=5)
    assert torch.equal(a.blocks.blocks[1].attn.qkv.weight, base.blocks.blocks[1].attn.qkv.weight)
    assert torch.equal(a.blocks.cls.conv1[0].weight, b.blocks.cls.conv1[0].weight)
    assert torch.equal(a.prompt_pos, b.prompt_pos)
    assert not torch.equal(a.blocks.cls.conv1[0].weight, c.blocks.cls.conv1[0].weight)
    assert not torch.equal(a.prompt_pos, c.prompt_pos)


@pytest.mark.parametrize("section, message", [
    (dict(prompt_module="pointnet"), "IDPTConfig.prompt_module must be one of"),
    (dict(cls_type="cls"), "IDPTConfig.cls_type must be one of"),
    (dict(prompt_layer=-1), "IDPTConfig.prompt_layer must be an integer >= 0"),
    (dict(prompt_layer="last"), "IDPTConfig.prompt_layer"),
    (dict(prompt_k=0), "IDPTConfig.prompt_k must be an integer >= 1"),
    (dict(coto=True), "CoTo does not apply to idpt"),
    (dict(rank=8), "unknown adapter config key"),
])
def test_config_errors_name_the_field(section, message):
    from pointclora.adapters import AdapterConfig

    with pytest.raises(ValueError, match=message):
        AdapterConfig.from_dict(dict(method="idpt", **section))


def test_prompt_layer_beyond_the_depth_names_it():
    with pytest.raises(ValueError, match=r"prompt_layer must be an integer in \[0, depth - 1\] = \[0, 2\], got 11"):
        _adapted(prompt_layer=11)


def test_config_value_must_match_a_model_built_with_official_keys():
    from pointclora.adapters import AdapterConfig, apply_adapters

    official = build_model({"NAME": "PointTransformer", **TINY, "prompt_layer": 1, "prompt_module": "dgcnn",
                            "cls_type": "promptonly"})
    message = "IDPTConfig.cls_type='all' but the model was built with cls_type='promptonly'"
    with pytest.raises(ValueError, match=message):
        apply_adapters(official, AdapterConfig.from_dict({"method": "idpt", "cls_type": "all"}))
    model = apply_adapters(official, AdapterConfig.from_dict({"method": "idpt"}))
    assert model is official and model.adapter_config.prompt_layer == 1


@pytest.mark.parametrize("name, fields, transforms", [
    ("scanobjectnn_idpt.yaml", dict(prompt_layer=11, cls_type="all"), ["fps_sample", "rotate_up"]),
    ("scanobjectnn_objbg_idpt.yaml", dict(prompt_layer=11, cls_type="promptonly"), ["fps_sample", "rotate_up"]),
    ("scanobjectnn_objonly_idpt.yaml", dict(prompt_layer=6, cls_type="all"), ["fps_sample", "rotate_up"]),
    ("modelnet40_idpt.yaml", dict(prompt_layer=11, cls_type="all"), ["fps_sample", "scale_translate"]),
])
def test_shipped_configs_are_the_official_ones(name, fields, transforms):
    """cfgs/finetune_{scan_hardest,scan_objbg,scan_objonly,modelnet}_idpt.yaml and runner_finetune.py."""
    import pointclora
    from pointclora.adapters import count_parameters
    from pointclora.config import load_config

    assert load_config(name)["dataset"]["train_transforms"] == transforms
    with torch.device("meta"):
        model = pointclora.build_model_from_config(name)
    assert type(model) is PointMAEIDPT
    assert model.method_fields() == dict(fields, prompt_module="dgcnn", prompt_k=20)
    if name == "scanobjectnn_idpt.yaml":  # the official count of the official code, through the engine
        counts = count_parameters(model)
        assert (counts["trainable"], counts["total"]) == (1_696_783, 23_522_191)
        assert counts["adapter"] == 1_330_176


def test_profiler_counts_the_prompt_generator_by_hand():
    """thop-style MACs of IDPT minus Point-MAE (same weights) = the generator's convolutions and kNN
    products, the wider first head layer and the one extra token in the blocks after prompt_layer."""
    from pointclora.profiler.summary import profile_model

    C, G, k, depth, layer = 32, 24, 20, 3, 1
    torch.manual_seed(0)
    base = build_model(dict(NAME="PointMAE", **TINY)).eval()
    idpt = _adapted(prompt_layer=layer).eval()
    x = points(b=1)
    a, b = profile_model(base, (x,)), profile_model(idpt, (x,), mode="unmerged")
    edge = 3 * (2 * C * C * G * k + G * G * C)  # three EdgeConvs (2C -> C on G x k edges) + their kNN products
    fuse = 3 * C * C * G  # conv5: 3C -> C on G tokens
    head = C * 256  # first head layer reads 3C instead of 2C
    token = (depth - layer) * (3 * C * C + C * C + 2 * 4 * C * C)  # qkv, proj, fc1, fc2 of one more token
    assert b.thop_macs - a.thop_macs == edge + fuse + head + token
