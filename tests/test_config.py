"""Config loading: _base_ inheritance, --opts overrides, validation errors naming key and file."""
from pathlib import Path

import pytest

from pointclora.config import CONFIG_DIR, ConfigError, load_config, merge, parse_opts, resolve_config_path

MINIMAL = """
model: {NAME: PointMAE, depth: 2}
dataset: {NAME: ScanObjectNN, root: data}
train: {epochs: 3, batch_size: 4}
optimizer: {type: AdamW, lr: 5.0e-4}
scheduler: {warmup_epochs: 0}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_merge_is_recursive_and_copies():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    out = merge(base, {"a": {"b": 2}, "e": 3})
    assert out == {"a": {"b": 2, "c": [1, 2]}, "d": 1, "e": 3}
    out["a"]["c"].append(3)
    assert base["a"]["c"] == [1, 2]


@pytest.mark.parametrize("as_list", [False, True])
def test_base_single_or_list_relative_to_including_file(tmp_path, as_list):
    write(tmp_path / "bases" / "root.yaml", MINIMAL)
    write(tmp_path / "bases" / "wide.yaml", "_base_: root.yaml\nmodel: {trans_dim: 96}\n")
    write(tmp_path / "bases" / "short.yaml", "train: {epochs: 1}\n")
    bases = "[bases/wide.yaml, bases/short.yaml]" if as_list else "bases/wide.yaml"
    child = write(tmp_path / "child.yaml", f"_base_: {bases}\nmodel: {{depth: 6}}\n")
    cfg = load_config(child)
    assert cfg["model"] == {"NAME": "PointMAE", "depth": 6, "trans_dim": 96}
    assert cfg["train"]["epochs"] == (1 if as_list else 3)
    assert "_base_" not in cfg


def test_later_base_wins_and_child_wins_over_bases(tmp_path):
    write(tmp_path / "a.yaml", MINIMAL + "output_dir: a\n")
    write(tmp_path / "b.yaml", "output_dir: b\ntrain: {seed: 7}\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: [a.yaml, b.yaml]\ntrain: {seed: 8}\n"))
    assert cfg["output_dir"] == "b" and cfg["train"]["seed"] == 8


def test_opts_are_parsed_as_yaml_values(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    cfg = load_config(path, ["optimizer.lr=1e-4", "model.depth=6", "train.amp=false",
                             "dataset.train_transforms=[scale_translate]", "ckpts=null", "adapter.method=clora"])
    assert cfg["optimizer"]["lr"] == 1e-4 and isinstance(cfg["optimizer"]["lr"], float)
    assert cfg["model"]["depth"] == 6
    assert cfg["train"]["amp"] is False
    assert cfg["dataset"]["train_transforms"] == ["scale_translate"]
    assert cfg["ckpts"] is None and cfg["adapter"] == {"method": "clora"}


def test_exponent_float_without_dot_is_a_float(tmp_path):
    text = MINIMAL.replace("scheduler: {warmup_epochs: 0}", "scheduler: {warmup_epochs: 0, min_lr: 1e-6}")
    cfg = load_config(write(tmp_path / "c.yaml", text))
    assert cfg["scheduler"]["min_lr"] == 1e-6


@pytest.mark.parametrize(
    "extra, key",
    [
        ("model: {depht: 3}\n", "model.depht"),
        ("trainer: {epochs: 3}\n", "trainer"),
        ("adapter: {rnak: 4}\n", "adapter.rnak"),
    ],
)
def test_unknown_key_names_key_and_file(tmp_path, extra, key):
    write(tmp_path / "base.yaml", MINIMAL)
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n" + extra)
    with pytest.raises(ConfigError) as err:
        load_config(child)
    assert f"'{key}'" in str(err.value) and "unknown key" in str(err.value)
    assert str(child) in str(err.value)


@pytest.mark.parametrize(
    "extra, key, expected",
    [
        ("model: {depth: six}\n", "model.depth", "int"),
        ("model: {depth: true}\n", "model.depth", "int"),
        ("optimizer: {lr: fast}\n", "optimizer.lr", "int or float"),
        ("train: 3\n", "train", "mapping"),
        ("model: {depth: 0}\n", "model.depth", ">= 1"),
        ("optimizer: {lr: 0.0}\n", "optimizer.lr", "> 0"),
    ],
)
def test_wrong_type_names_key_file_and_type(tmp_path, extra, key, expected):
    write(tmp_path / "base.yaml", MINIMAL)
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n" + extra)
    with pytest.raises(ConfigError) as err:
        load_config(child)
    msg = str(err.value)
    assert f"'{key}'" in msg and expected in msg and str(child) in msg


def test_error_in_base_file_names_the_base_file(tmp_path):
    base = write(tmp_path / "base.yaml", MINIMAL.replace("batch_size: 4", "batch_size: 4, num_workrs: 2"))
    child = write(tmp_path / "child.yaml", "_base_: base.yaml\n")
    with pytest.raises(ConfigError, match="num_workrs") as err:
        load_config(child)
    assert str(base) in str(err.value)


def test_bad_override_names_opts(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL)
    with pytest.raises(ConfigError, match=r"--opts.*'model\.dpth'"):
        load_config(path, ["model.dpth=3"])
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(path, ["model.depth"])
    with pytest.raises(ConfigError, match=r"--opts.*'train.epochs'.*int"):
        load_config(path, ["train.epochs=2.5"])


def test_missing_required_key_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match="'train.epochs'"):
        load_config(write(tmp_path / "c.yaml", MINIMAL.replace("epochs: 3, ", "")))
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(write(tmp_path / "d.yaml", "_base_: nope.yaml\n"))
    with pytest.raises(FileNotFoundError, match="--config"):
        load_config(tmp_path / "absent.yaml")


def test_duplicate_key_is_an_error(tmp_path):
    path = write(tmp_path / "c.yaml", MINIMAL + "train: {epochs: 1}\n")
    with pytest.raises(ConfigError, match=r"c.yaml.*duplicate key 'train'"):
        load_config(path)


def test_base_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "_base_: b.yaml\n")
    write(tmp_path / "b.yaml", "_base_: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_adapter_null_in_child_means_full_finetuning(tmp_path):
    write(tmp_path / "base.yaml", MINIMAL + "adapter: {method: clora, rank: 8}\n")
    cfg = load_config(write(tmp_path / "c.yaml", "_base_: base.yaml\nadapter: null\n"))
    assert cfg["adapter"] is None


def test_bare_name_is_looked_up_in_configs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path("scanobjectnn_clora.yaml") == CONFIG_DIR / "scanobjectnn_clora.yaml"
    assert resolve_config_path("scanobjectnn_clora") == CONFIG_DIR / "scanobjectnn_clora.yaml"
    assert resolve_config_path("configs/demo_clora.yaml") == CONFIG_DIR / "demo_clora.yaml"


@pytest.mark.parametrize("path", sorted(p.name for p in CONFIG_DIR.glob("*.yaml")))
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    assert cfg["train"]["epochs"] > 0 and cfg["output_dir"]


def test_scanobjectnn_clora_is_the_public_recipe():
    cfg = load_config("scanobjectnn_clora.yaml")
    assert cfg["dataset"]["variant"] == "PB_T50_RS" and cfg["dataset"]["npoints"] == 2048
    assert cfg["model"]["num_group"] == 128 and cfg["model"]["cls_dim"] == 15
    assert cfg["optimizer"] == {"type": "AdamW", "lr": 5e-4, "weight_decay": 0.05}
    assert cfg["scheduler"]["warmup_epochs"] == 10 and cfg["train"]["epochs"] == 300
    assert cfg["train"]["batch_size"] == 32 and cfg["train"]["grad_clip"] == 10.0
    assert cfg["adapter"]["method"] == "clora"
    modelnet = load_config("modelnet40_full.yaml")
    assert modelnet["dataset"]["npoints"] == 1024 and modelnet["model"]["num_group"] == 64
    seg = load_config("shapenetpart_full.yaml")
    assert (seg["train"]["batch_size"], seg["optimizer"]["lr"], seg["dataset"]["train_split"]) == (16, 2e-4, "trainval")
    assert load_config("scanobjectnn_objbg_clora.yaml")["dataset"]["variant"] == "OBJ_BG"
    assert load_config("scanobjectnn_objonly_full.yaml")["dataset"]["variant"] == "OBJ_ONLY"
    assert load_config("scanobjectnn_clora_coto.yaml")["adapter"]["coto"] is True


def test_schema_is_derived_from_the_sections_and_constructors(tmp_path):
    """A constructor keyword is a config key (no second list); typed sections hold the defaults."""
    from pointclora.models import MODELS, PointMAE
    from pointclora.sections import OptimizerConfig, TrainConfig, build_schema, section

    class Wider(PointMAE):
        def __init__(self, *, width_factor: float = 1.0, **kw):
            super().__init__(**kw)

    schema, limits = build_schema()
    assert schema["train"]["seed"] is int and schema["optimizer"]["lr"] == (int, float)
    assert limits.minimum["train.epochs"] == (1, True) and limits.choices["dataset.on_bad_file"] == ("error", "skip")
    assert "width_factor" not in schema["model"]
    MODELS["Wider"] = Wider
    try:
        assert build_schema()[0]["model"]["width_factor"] == (int, float)
        path = tmp_path / "c.yaml"
        path.write_text(f"_base_: {CONFIG_DIR}/demo_clora.yaml\nmodel: {{width_factor: 2}}\n")
        assert load_config(path)["model"]["width_factor"] == 2
        path.write_text(f"_base_: {CONFIG_DIR}/demo_clora.yaml\nmodel: {{width_factor: wide}}\n")
        with pytest.raises(ConfigError, match=r"c.yaml: key 'model.width_factor' must be int or float"):
            load_config(path)
    finally:
        del MODELS["Wider"]
    train = section(TrainConfig, {"epochs": 3, "batch_size": 4})
    assert (train.seed, train.val_freq, train.grad_clip, train.eval_batch_size) == (0, 1, 10.0, 4)
    assert section(OptimizerConfig, {"lr": 1e-3}).weight_decay == 0.05


@pytest.mark.parametrize("warmup, ok", [(0, True), (3, True), (4, False)])
def test_warmup_longer_than_training_names_both_keys(tmp_path, warmup, ok):
    path = write(tmp_path / "c.yaml", MINIMAL)  # train.epochs: 3
    if ok:  # as many warm-up epochs as epochs is a valid schedule (every epoch warms up)
        assert load_config(path, [f"scheduler.warmup_epochs={warmup}"])["scheduler"]["warmup_epochs"] == warmup
        return
    with pytest.raises(ConfigError, match=r"'scheduler.warmup_epochs' is 4 \(--opts\).*'train.epochs' 3 \(.*c.yaml\)"):
        load_config(path, [f"scheduler.warmup_epochs={warmup}"])


def test_default_warmup_counts_against_a_short_run(tmp_path):
    """No scheduler section: the default 10 warm-up epochs do not fit into 3."""
    path = write(tmp_path / "c.yaml", MINIMAL.replace("scheduler: {warmup_epochs: 0}\n", ""))
    with pytest.raises(ConfigError, match=r"'scheduler.warmup_epochs' is 10 \(the default\)"):
        load_config(path)
