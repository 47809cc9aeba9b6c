"""CoTo progressive activation on a tiny Point-MAE (trans_dim 16, 12 blocks, 2 adapters per block)."""
import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from conftest import randomise_adapters, tiny_model_config
from pointclora.adapters import AdapterConfig, CoToScheduler, adapter_layers, adapter_regularization, apply_adapters
from pointclora.models import build_model

TINY = tiny_model_config(trans_dim=16, encoder_dims=16, depth=12, num_group=8)


def make_model(depth=12):
    torch.manual_seed(0)
    return build_model(dict(TINY, depth=depth)).eval()


def points(seed=1, b=2, n=32):
    return torch.randn(b, n, 3, generator=torch.Generator().manual_seed(seed))


def coto_model(depth=12, method="lora"):
    """Two adapters (attn.qkv, mlp.fc1) in each of `depth` blocks."""
    cfg = AdapterConfig(method=method, rank=2, num_bases=2, sade_weight=0.5, target_modules=["attn.qkv", "mlp.fc1"])
    return apply_adapters(make_model(depth), cfg)


def expected_fraction(p, groups):
    """E[active fraction] when one random block is switched on whenever the draw leaves all off."""
    return p + (1 - p) ** groups / groups


def test_coto_fraction_follows_the_schedule_and_is_never_all_off():
    model = coto_model(depth=12)
    sched = CoToScheduler(model, total_steps=4000, p_start=0.0, ramp_fraction=0.75, seed=3)
    assert sched.probability == 0.0 and sched.active_fraction == 1 / 12  # p = 0: exactly one block stays on
    fractions, probs = [], []
    for _ in range(4000):
        fractions.append(sched.active_fraction)
        probs.append(sched.probability)
        assert any(m.coto_active for _, m in adapter_layers(model))
        sched.step()
    fractions, probs = torch.tensor(fractions), torch.tensor(probs)
    for lo in range(0, 3000, 500):  # windows along the ramp (3000 steps)
        expected = expected_fraction(probs[lo:lo + 500], 12).mean()
        assert abs(fractions[lo:lo + 500].mean() - expected) < 0.03
    assert probs[3000] == 1.0 and torch.all(fractions[3000:] == 1.0)
    assert probs[1500].item() == pytest.approx(0.5)


def test_coto_mask_is_fixed_between_steps_and_blockwise():
    model = coto_model(depth=12).train()
    sched = CoToScheduler(model, total_steps=100, p_start=0.3, seed=1)
    flags = [m.coto_active for _, m in adapter_layers(model)]
    assert flags[0::2] == flags[1::2] == sched.mask.tolist()  # qkv and fc1 of a block share the draw
    assert sched.group_names == [f"blocks.blocks.{i}" for i in range(12)]
    x = points()
    randomise_adapters(model)
    model.cls_head_finetune.eval()  # no head dropout: any difference would come from the adapters
    out1, out2 = model(x), model(x)
    assert [m.coto_active for _, m in adapter_layers(model)] == flags
    torch.testing.assert_close(out1, out2, atol=0, rtol=0)


@pytest.mark.parametrize("method", ["lora", "clora"])
def test_inactive_adapter_gets_no_gradient_and_eval_is_all_on(method):
    model = coto_model(depth=12, method=method)
    randomise_adapters(model)
    x = points()
    model.eval()
    all_on = model(x)
    sched = CoToScheduler(model, total_steps=10, p_start=0.0, seed=0)  # exactly one block on
    model.train()
    model.cls_head_finetune.eval()  # keep BatchNorm statistics fixed, no dropout
    reg = adapter_regularization(model)  # SADE skips switched-off LRMs too
    assert (reg > 0) == (method == "clora")
    (model(x).sum() + reg).backward()
    own = "lora_B" if method == "lora" else "clora_Q"
    on = [getattr(m, own).grad is not None for _, m in adapter_layers(model)]
    assert on == [m.coto_active for _, m in adapter_layers(model)] and sum(on) == 2
    model.eval()
    torch.testing.assert_close(model(x), all_on, atol=0, rtol=0)
    assert sched.active_fraction == 1 / 12


def test_switched_off_adapters_do_no_compute():
    base = make_model(depth=2)
    model = apply_adapters(copy.deepcopy(base), AdapterConfig(method="clora")).train()
    base.train()
    x = points()

    def flops(m):
        with FlopCounterMode(display=False) as counter:
            m(x)
        return counter.get_total_flops()

    for _, layer in adapter_layers(model):
        layer.coto_active = False
    assert flops(model) == flops(base)
    for _, layer in adapter_layers(model):
        layer.coto_active = True
    assert flops(model) > flops(base)


def test_coto_resume_continues_exactly():
    model = coto_model(depth=12)
    a = CoToScheduler(model, total_steps=50, p_start=0.1, seed=7)
    for _ in range(10):
        a.step()
    state = a.state_dict()
    masks_a = []
    for _ in range(10):
        a.step()
        masks_a.append(a.mask.tolist())
    b = CoToScheduler(model, total_steps=50, p_start=0.1, seed=99)
    b.load_state_dict(state)
    assert b.t == 10 and b.mask.tolist() == state["mask"].tolist()
    assert [m.coto_active for _, m in adapter_layers(model)][::2] == state["mask"].tolist()
    masks_b = []
    for _ in range(10):
        b.step()
        masks_b.append(b.mask.tolist())
    assert masks_a == masks_b
    with pytest.raises(KeyError, match="generator"):
        b.load_state_dict({k: v for k, v in state.items() if k != "generator"})


def test_coto_same_seed_same_masks_and_errors():
    m1, m2 = coto_model(depth=12), coto_model(depth=12)
    s1, s2 = CoToScheduler(m1, 20, seed=5), CoToScheduler(m2, 20, seed=5)
    for _ in range(5):
        s1.step(), s2.step()
        assert s1.mask.tolist() == s2.mask.tolist()
    with pytest.raises(ValueError, match="total_steps"):
        CoToScheduler(m1, 0)
    with pytest.raises(ValueError, match="no adapter layers"):
        CoToScheduler(make_model(depth=1), 10)


def test_coto_under_torch_distributed_broadcasts_the_mask(tmp_path):
    import torch.distributed as dist

    model = coto_model(depth=12)
    reference = CoToScheduler(copy.deepcopy(model), total_steps=20, seed=4)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        sched = CoToScheduler(model, total_steps=20, seed=4)
        for _ in range(5):
            assert sched.mask.tolist() == reference.mask.tolist()
            sched.step(), reference.step()
    finally:
        dist.destroy_process_group()


def _coto_masks_on_rank(rank, store, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    calls = []
    broadcast = dist.broadcast
    dist.broadcast = lambda *a, **k: calls.append(1) or broadcast(*a, **k)
    try:
        sched = CoToScheduler(coto_model(depth=6), total_steps=20, seed=rank)  # rank 1: another seed
        masks = [sched.mask.tolist()]
        for _ in range(6):
            sched.step()
            masks.append(sched.mask.tolist())
        torch.save({"masks": masks, "broadcasts": len(calls)}, f"{out}/rank{rank}.pt")
    finally:
        dist.broadcast = broadcast
        dist.destroy_process_group()


def test_coto_ranks_draw_rank0_masks_without_per_step_communication(tmp_path):
    torch.multiprocessing.spawn(_coto_masks_on_rank, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    reference = CoToScheduler(coto_model(depth=6), total_steps=20, seed=0)
    expected = [reference.mask.tolist()]
    for _ in range(6):
        reference.step()
        expected.append(reference.mask.tolist())
    assert r0["masks"] == r1["masks"] == expected
    assert r0["broadcasts"] == r1["broadcasts"] == 1  # the generator state, once
