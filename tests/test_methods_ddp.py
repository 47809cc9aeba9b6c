"""DDP for the peer methods: tools/train.py under torchrun with 2 gloo processes, as
test_train.py::test_ddp_two_gloo_processes_match_one_process does for CLoRA + CoTo."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO, load_tool
from pointclora import build_model_from_config
from pointclora.config import load_config

# tiny sizes (tiny_cls_config: 8 groups, 2 blocks); PointGST with CoTo (DDP's find_unused_parameters
# path), IDPT with its BatchNorm-carrying DGCNN prompt generator
PEERS = {
    "pointgst": "adapter: {method: pointgst, rank: 4, local: 4, coto: true, coto_p_start: 0.5}\n",
    "idpt": "adapter: {method: idpt, prompt_layer: 1, prompt_k: 4}\n",
}
TRAIN = load_tool("train")


def train(config, out, *extra: str) -> int:
    return TRAIN.main(["--config", str(config), "--output-dir", str(out), "--device", "cpu", *extra])


# Under DDP each rank's BatchNorm running statistics drift apart (DDP syncs buffers only before
# training forwards); Trainer.evaluate broadcasts rank 0's first, so the per-epoch metrics are those
# of the saved (rank 0) model. Before that fix, IDPT here reported OA 0.0 at epoch 1 while its
# ckpt-best.pth evaluated to 14.3.


@pytest.fixture(scope="module")
def ddp_runs(tiny_cls_config, tmp_path_factory):
    """method -> (config, folder of the 2-rank run, its 2-rank and 1-process test_results) (cached)."""
    cache = {}

    def get(method):
        if method not in cache:
            tmp = tmp_path_factory.mktemp(f"ddp_{method}")
            config = tmp / f"{method}.yaml"
            config.write_text(f"_base_: {tiny_cls_config}\n" + PEERS[method])
            out = tmp / "ddp"
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
            base = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    str(REPO / "tools" / "train.py"), "--config", str(config), "--output-dir", str(out),
                    "--device", "cpu", "--opts", "train.epochs=1"]
            proc = subprocess.run(base, env=env, capture_output=True, text=True, timeout=240)
            assert proc.returncode == 0, proc.stderr[-3000:]
            assert proc.stdout.count("==== summary ====") == 1
            proc = subprocess.run(base + ["--test"], env=env, capture_output=True, text=True, timeout=240)
            assert proc.returncode == 0, proc.stderr[-3000:]
            two = json.loads((out / "test_results.json").read_text())
            assert train(config, out, "--test", "--opts", "train.epochs=1") == 0
            one = json.loads((out / "test_results.json").read_text())
            cache[method] = config, out, two, one
        return cache[method]

    return get


@pytest.mark.parametrize("method", sorted(PEERS))
def test_peer_ddp_two_gloo_processes_match_one_process(method, ddp_runs, tmp_path):
    """2 ranks train one set of files; evaluating its checkpoint with 2 ranks gives exactly the
    single-process metrics; the frozen backbone is the same as after a one-process run."""
    config, out, two, one = ddp_runs(method)
    results = json.loads((out / "results.json").read_text())
    assert results["world_size"] == 2 and two["world_size"] == 2
    assert load_config(out / "config.yaml")["adapter"]["method"] == method
    assert one["world_size"] == 1 and one["metrics"] == two["metrics"]

    # the same seed in one process: the frozen tensors start and stay equal, the trained ones moved
    assert train(config, tmp_path / "one", "--opts", "train.epochs=1") == 0
    ddp = torch.load(out / "ckpt-last.pth", weights_only=False)["model"]
    single = torch.load(tmp_path / "one" / "ckpt-last.pth", weights_only=False)["model"]
    torch.manual_seed(load_config(config)["train"]["seed"])  # as tools/train.py seeds before building
    model = build_model_from_config(config)
    # by state-dict key (IDPT's DGCNN registers each BatchNorm under two names)
    tensors = model.state_dict(keep_vars=True)
    trainable = {k for k, v in tensors.items() if v.requires_grad}
    frozen = [k for k, v in tensors.items() if isinstance(v, torch.nn.Parameter) and not v.requires_grad]
    # official freeze_bn_stats: false: the running statistics train (the checkpoint holds rank 0's)
    stats = [k for k in tensors if k.endswith("running_mean")]
    assert frozen and trainable and set(ddp) == set(single)
    init = model.state_dict()
    assert [k for k in frozen if not (torch.equal(ddp[k], single[k]) and torch.equal(ddp[k], init[k]))] == []
    assert any(not torch.equal(ddp[k], init[k]) for k in trainable)
    assert all(not torch.equal(ddp[k], init[k]) for k in stats)


@pytest.mark.parametrize("method", ["pointgst", "idpt"])
def test_peer_ddp_run_reports_the_metrics_of_its_saved_model(method, ddp_runs):
    """The best epoch's metrics a DDP run recorded are those of its ckpt-best.pth (as the CLoRA test asserts)."""
    _, out, _, one = ddp_runs(method)
    best = torch.load(out / "ckpt-best.pth", weights_only=False)["best"]
    assert all(one["metrics"][k] == best[k] for k in one["metrics"])
