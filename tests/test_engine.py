"""Engine pieces: optimizer groups, cosine schedule, metrics, atomic checkpoints, CSV/plot logs."""
import math
import os

import numpy as np
import pytest
import torch
from torch import nn

from pointclora.engine.checkpoint import (
    atomic_link, atomic_save, load_checkpoint, load_model_state, rng_state, set_rng_state,
)  # fmt: skip
from pointclora.engine.distributed import EpochRandomSampler, ShardSampler
from pointclora.engine.logging import RunLogger, plot_curves, read_csv
from pointclora.engine.metrics import (
    ClassificationMeter, PartSegMeter, part_mask, part_ranges, restrict_to_parts, shape_ious,
)  # fmt: skip
from pointclora.engine.optim import build_optimizer, build_scheduler, cosine_lr, param_groups


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.fc = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def test_param_groups_skip_decay_on_bias_norm_token_and_frozen():
    model = Tiny()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 0.05)
    by_decay = {g["weight_decay"]: sorted(names[id(p)] for p in g["params"]) for g in groups}
    assert by_decay == {0.0: ["cls_token", "fc.bias", "norm.bias", "norm.weight"], 0.05: ["fc.weight"]}


def test_optimizer_rejects_unknown_type_and_no_trainable():
    with pytest.raises(ValueError, match="optimizer.type"):
        build_optimizer(Tiny(), {"type": "SGD", "lr": 0.1})
    frozen = Tiny().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(frozen, {"type": "AdamW", "lr": 0.1})


@pytest.mark.parametrize(
    "epoch, expected",
    [(0, 1e-6), (5, 1e-6 + (1e-3 - 1e-6) * 0.5), (10, 1e-3), (60, 1e-6 + 0.5 * (1e-3 - 1e-6)), (110, 1e-6)],
)
def test_cosine_with_warmup_values(epoch, expected):
    assert cosine_lr(epoch, 1e-3, epochs=110, warmup_epochs=10, min_lr=1e-6, warmup_lr=1e-6) == pytest.approx(expected)


def test_scheduler_steps_and_resumes():
    opt = build_optimizer(Tiny(), {"type": "AdamW", "lr": 1e-3})
    sched = build_scheduler(opt, {"type": "cosine", "warmup_epochs": 2, "min_lr": 0.0, "warmup_lr": 0.0}, epochs=6)
    lrs = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:3] == pytest.approx([0.0, 5e-4, 1e-3])
    assert lrs[3:] == pytest.approx([1e-3 * 0.5 * (1 + math.cos(math.pi * t / 4)) for t in (1, 2, 3)])
    opt2 = build_optimizer(Tiny(), {"type": "AdamW", "lr": 1e-3})
    sched2 = build_scheduler(opt2, {"warmup_epochs": 2, "min_lr": 0.0, "warmup_lr": 0.0}, epochs=6)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == pytest.approx(lrs[-1])
    with pytest.raises(ValueError, match="scheduler.type"):
        build_scheduler(opt, {"type": "step"}, epochs=3)


def test_classification_meter_oa_and_mean_class_acc():
    meter = ClassificationMeter(3)
    logits = torch.eye(3)[[0, 0, 1, 2, 2, 1]]  # predictions 0 0 1 2 2 1
    meter.update(logits, torch.tensor([0, 0, 0, 2, 2, 2]))
    out = meter.compute()
    assert out["oa"] == pytest.approx(100 * 4 / 6)
    assert out["macc"] == pytest.approx(100 * (2 / 3 + 2 / 3) / 2)  # class 1 unseen: not averaged


def test_part_seg_prediction_restricted_to_own_parts():
    mask = part_mask(part_ranges((2, 3)), 5)
    logits = torch.tensor([[[0.0, 1.0, 9.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0, 9.0]]])  # (1, 2, 5)
    assert restrict_to_parts(logits, torch.tensor([0]), mask).tolist() == [[1, 0]]
    assert restrict_to_parts(logits, torch.tensor([1]), mask).tolist() == [[2, 4]]


def test_shape_iou_absent_part_counts_one():
    mask = part_mask(part_ranges((3,)), 3)
    seg = torch.tensor([[0, 0, 1, 1]])
    pred = torch.tensor([[0, 1, 1, 1]])
    # part 0: 1/2, part 1: 2/3, part 2 absent in both: 1
    assert shape_ious(pred, seg, torch.tensor([0]), mask).item() == pytest.approx((0.5 + 2 / 3 + 1) / 3)


def test_part_seg_meter_instance_and_class_miou():
    meter = PartSegMeter(part_ranges((2, 2)), num_parts=4)
    seg = torch.tensor([[0, 1], [0, 0], [2, 3]])
    category = torch.tensor([0, 0, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([[0, 1], [0, 1], [2, 3]]), 4).float()
    meter.update(logits, seg, category)
    # shapes: 1.0, (0.5 + 0) / 2 = 0.25, 1.0 ; class mIoU: mean(0.625, 1.0)
    out = meter.compute()
    assert out["ins_miou"] == pytest.approx(100 * 2.25 / 3)
    assert out["cls_miou"] == pytest.approx(100 * (0.625 + 1.0) / 2)
    assert out["acc"] == pytest.approx(100 * 5 / 6)


def test_shard_sampler_partitions_without_padding():
    data = list(range(7))
    shards = [list(ShardSampler(data, r, 3)) for r in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    sampler = EpochRandomSampler(data, seed=1)
    sampler.set_epoch(3)
    first = list(sampler)
    sampler.set_epoch(0)
    sampler.set_epoch(3)
    assert list(sampler) == first and sorted(first) == data


def test_atomic_save_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "ckpt.pth"
    atomic_save({"a": 1}, path)
    atomic_save({"a": 2}, path)
    assert torch.load(path)["a"] == 2
    assert os.listdir(tmp_path) == ["ckpt.pth"]

    class Boom:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Boom()}, path)
    assert torch.load(path)["a"] == 2 and os.listdir(tmp_path) == ["ckpt.pth"]


def test_load_checkpoint_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_checkpoint(tmp_path / "absent.pth")
    atomic_save({"model": {}}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match=r"partial.pth.*missing keys"):
        load_checkpoint(tmp_path / "partial.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match=r"does not fit.*shape"):
        load_model_state(nn.Linear(2, 3), nn.Linear(2, 4).state_dict(), "x.pth")


def test_rng_state_round_trip():
    state = rng_state()
    a = (torch.rand(3), np.random.rand(3))
    set_rng_state(state)
    b = (torch.rand(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_run_logger_resume_drops_later_rows_and_plots(tmp_path):
    log = RunLogger(tmp_path)
    for epoch in (1, 2, 3):
        log.log_epoch(epoch, {"train/loss": 1.0 / epoch, "lr": 0.1, "val/oa": 10.0 * epoch})
    log.close()
    log = RunLogger(tmp_path, start_epoch=2)  # resumed from the checkpoint after epoch 2
    log.log_epoch(3, {"train/loss": 0.3, "lr": 0.1, "val/oa": 31.0, "coto/active_fraction": 0.5})
    log.close()
    rows = read_csv(tmp_path / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3] and rows[-1]["val/oa"] == 31.0
    assert math.isnan(rows[0]["coto/active_fraction"])
    png = plot_curves(rows, tmp_path / "curves.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert any(p.name.startswith("events") for p in (tmp_path / "tb").iterdir())


class _Payload:
    def __reduce__(self):
        return (os.makedirs, ("code-ran",))


def test_test_checkpoint_is_read_without_running_code(tmp_path, monkeypatch):
    from pointclora.engine.evaluate import _load_weights

    monkeypatch.chdir(tmp_path)
    model, other = nn.Linear(3, 2), nn.Linear(3, 2)
    own = {"model": other.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 2, "best": {"oa": 50.0},
           "rng": [rng_state()], "config": {"train": {"epochs": 2}}}  # numpy RNG state: a uint32 array
    atomic_save(own, tmp_path / "own.pth")
    assert _load_weights(model, tmp_path / "own.pth") == {"oa": 50.0}
    assert torch.equal(model.weight, other.weight)
    atomic_save({**own, "evil": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="evil.pth is not a PyTorch checkpoint readable with weights_only=True"):
        _load_weights(model, tmp_path / "evil.pth")
    assert not (tmp_path / "code-ran").exists()


def test_load_checkpoint_reads_own_state_and_refuses_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = {"model": {}, "optimizer": {}, "scheduler": {}, "epoch": 1, "best": {}, "rng": [rng_state()], "config": {}}
    atomic_save(own, tmp_path / "ckpt-last.pth")
    assert load_checkpoint(tmp_path / "ckpt-last.pth")["epoch"] == 1
    atomic_save({**own, "evil": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="evil.pth is not a PyTorch checkpoint readable with weights_only=True"):
        load_checkpoint(tmp_path / "evil.pth")
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize("links", [True, False])
def test_atomic_link_gives_a_second_name_that_later_saves_leave_alone(tmp_path, monkeypatch, links):
    if not links:  # a file system without hard links: a copy
        monkeypatch.setattr(os, "link", lambda *a: (_ for _ in ()).throw(OSError("no links")))
    best, last = tmp_path / "ckpt-best.pth", tmp_path / "ckpt-last.pth"
    atomic_save({"epoch": 1}, last)
    atomic_save({"epoch": 2}, best)
    atomic_link(best, last)
    assert torch.load(last)["epoch"] == 2 and sorted(os.listdir(tmp_path)) == ["ckpt-best.pth", "ckpt-last.pth"]
    assert os.path.samefile(best, last) == links
    atomic_save({"epoch": 3}, last)  # the next epoch, not an improvement
    assert torch.load(best)["epoch"] == 2 and torch.load(last)["epoch"] == 3
