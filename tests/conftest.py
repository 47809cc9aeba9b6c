"""Shared test helpers and fixtures: the single-thread fixture, tiny model configs, non-zero adapters,
broken data files, and the hand-countable tiny Point-MAE of the profiler tests.

Test files import the helpers with `from conftest import ...` (pytest puts tests/ on sys.path); the
checkout's root goes on sys.path here too, for the tests of bench/ and scripts/. Test files import no
other test file.
"""
import contextlib
import importlib.util
import sys
from pathlib import Path
from typing import Optional

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cuda_ext
from pointclora.adapters import adapter_layers
from pointclora.datasets.demo import make_demo_data


REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # `from bench import ...`, `from scripts import ...`


def load_tool(name: str):
    """tools/<name>.py as a module (the tools are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_cli", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def single_thread():
    """Tiny models: one intra-op thread avoids OpenMP contention on the shared 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@pytest.fixture
def one_thread():
    """single_thread() around each test: `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    with single_thread():
        yield


@pytest.fixture(scope="module")
def one_thread_module():
    """single_thread() around a whole module, so module-scoped runs are built under it too."""
    with single_thread():
        yield


# tiny widths for the real model classes: every test builds from this and changes what it needs
TINY_MODEL = dict(trans_dim=48, encoder_dims=48, depth=2, drop_path_rate=0.0, cls_dim=5, num_heads=2,
                  group_size=8, num_group=16)


def tiny_model_config(name: str = "PointMAE", **over) -> dict:
    """A model section with tiny widths: Point-BERT gets its own encoder width (32, bridged by
    reduce_dim), part segmentation depth 3 (three fetched blocks), pre-training no cls_dim."""
    cfg = dict(TINY_MODEL, NAME=name)
    if name == "PointBERT":
        cfg["encoder_dims"] = 32
    if name == "PointMAEPartSeg":
        cfg["depth"] = 3
    if name == "PointMAEPretrain":
        del cfg["cls_dim"]
    cfg.update(over)
    return cfg


def tiny_demo_data(tmp_path_factory, datasets, **sizes) -> Path:
    """Procedural demo data at tiny sizes (2 train, 1 test, 1 val shapes per class of 128 points) in a
    fresh temporary folder, for the end-to-end tests of the tools."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, seed=0, datasets=tuple(datasets),
                   **{"train_per_class": 2, "test_per_class": 1, "val_per_class": 1, "npoints": 128, **sizes})
    return root


def assert_same_model_state(a: Path, b: Path) -> None:
    """The model tensors of two checkpoints are equal, key for key, to the bit (--resume exactness)."""
    sa, sb = (torch.load(p, weights_only=False)["model"] for p in (a, b))
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def break_file(folder: Path, relative: str, text: Optional[str]) -> Path:
    """Delete folder/relative (text None) or overwrite it with `text`; returns the file an error must name."""
    victim = folder / relative
    if text is None:
        victim.unlink()
    else:
        victim.write_text(text)
    return victim


def assert_broken_dataset_named(build, path: Path, error, match: str, hint: str) -> None:
    """Building the dataset and reading every item raises `error` matching `match`, naming `path` and giving
    the download hint."""
    with pytest.raises(error, match=match) as info:
        ds = build()
        [ds[i] for i in range(len(ds))]
    assert str(path) in str(info.value) and hint in str(info.value)


def randomise_adapters(model: nn.Module, seed: int = 2, std: float = 0.3) -> None:
    """Make every adapter non-zero (B of LoRA, Q of CLoRA) so merge / reload checks mean something."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in adapter_layers(model):
            for name, p in layer.named_parameters():
                if not name.startswith("base_layer."):
                    p.copy_(torch.randn(p.shape, generator=gen) * std)


TINY_CLS_MODEL = "trans_dim: 32, num_heads: 2, group_size: 8, num_group: 8, encoder_dims: 32, depth: 2, drop_path_rate: 0.0"
TINY_CLS_TRAIN = "{epochs: 2, batch_size: 4, val_batch_size: 8, num_workers: 0, pin_memory: false, amp: false}"


@pytest.fixture(scope="module")
def tiny_cls_config(tmp_path_factory):
    """A tiny ScanObjectNN config file on tiny demo data (8 groups of 8, 2 blocks, 2 epochs): the sweep's
    and the peer methods' tool tests; derive one with `_base_: <this path>`."""
    root = tmp_path_factory.mktemp("demo")
    make_demo_data(root, seed=0, train_per_class=2, test_per_class=1, npoints=64, datasets=("ScanObjectNN",))
    return write_tiny_scan_config(root / "tiny.yaml", root, npoints=32)


def write_tiny_scan_config(path: Path, data: Path, npoints: int, extra: str = "") -> Path:
    """Writes a tiny ScanObjectNN config (TINY_CLS_MODEL, TINY_CLS_TRAIN) on the demo data under `data`,
    sampling `npoints` points, with `extra` YAML appended; returns `path`."""
    path.write_text(f"""_base_: {REPO}/configs/_base_/scanobjectnn.yaml
model: {{{TINY_CLS_MODEL}}}
dataset: {{root: {data}/ScanObjectNN, npoints: {npoints}, train_transforms: [scale_translate]}}
train: {TINY_CLS_TRAIN}
optimizer: {{lr: 2.0e-3}}
scheduler: {{warmup_epochs: 0}}
""" + extra)
    return path


# tiny adapter sections of the peer methods that fit TINY_MODEL (16 groups, 2 blocks)
PEER_SECTIONS = {"dapt": dict(method="dapt", rank=4), "pointgst": dict(method="pointgst", rank=4, local=8),
                 "idpt": dict(method="idpt", prompt_layer=1, prompt_k=8)}


def randomise_trainable(model: nn.Module, seed: int = 3, std: float = 0.1) -> nn.Module:
    """Every trainable tensor non-zero (the up-projections start at zero): the peer methods' adapters,
    prompts and scale-shift factors, and the head."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=gen) * std)
    return model


# ----------------------------------------------------------------------------- profiler's tiny model
# tiny sizes: N points, G groups of K points, width D, depth L, H heads
N, G, K, D, L, H, P, C1, C2, C3, HID, CLS = 64, 8, 4, 16, 2, 2, 8, 8, 12, 20, 10, 5


class TinyGroup(nn.Module):
    def forward(self, xyz):  # xyz: (B, N, 3)
        idx = cuda_ext.furthest_point_sample(xyz, G)  # (B, G) int32
        center = cuda_ext.gather_operation(xyz.transpose(1, 2).contiguous(), idx).transpose(1, 2)  # (B, G, 3)
        _, knn_idx = cuda_ext.knn(xyz, center, K)  # (B, G, K)
        batch = torch.arange(xyz.shape[0]).view(-1, 1, 1)
        return xyz[batch, knn_idx] - center.unsqueeze(2), center  # (B, G, K, 3), (B, G, 3)


class TinyEncoder(nn.Module):
    """Point-MAE's mini-PointNet with tiny widths."""

    def __init__(self):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, C1, 1), nn.BatchNorm1d(C1), nn.ReLU(), nn.Conv1d(C1, C2, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(2 * C2, C3, 1), nn.BatchNorm1d(C3), nn.ReLU(),
                                         nn.Conv1d(C3, D, 1))

    def forward(self, groups):  # groups: (B, G, K, 3)
        B = groups.shape[0]
        x = groups.reshape(B * G, K, 3).transpose(2, 1)  # (B*G, 3, K)
        f = self.first_conv(x)  # (B*G, C2, K)
        g = f.max(dim=2, keepdim=True)[0]  # (B*G, C2, 1)
        f = self.second_conv(torch.cat([g.expand(-1, -1, K), f], dim=1))  # (B*G, D, K)
        return f.max(dim=2)[0].reshape(B, G, D)  # (B, G, D)


class TinyAttention(nn.Module):
    def __init__(self, sdpa: bool):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D, bias=False)
        self.proj = nn.Linear(D, D)
        self.sdpa = sdpa

    def forward(self, x):  # x: (B, T, D)
        B, T, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, D/H)
        if self.sdpa:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1) * (D // H) ** -0.5).softmax(dim=-1)  # (B, H, T, T)
            out = attn @ v  # (B, H, T, D/H)
        return self.proj(out.transpose(1, 2).reshape(B, T, D))


class TinyMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class TinyBlock(nn.Module):
    def __init__(self, sdpa: bool):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(D), TinyAttention(sdpa)
        self.norm2, self.mlp = nn.LayerNorm(D), TinyMlp()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyBlocks(nn.Module):
    def __init__(self, sdpa: bool):
        super().__init__()
        self.blocks = nn.ModuleList(TinyBlock(sdpa) for _ in range(L))

    def forward(self, x, pos):
        for block in self.blocks:
            x = block(x + pos)
        return x


class TinyPointMAE(nn.Module):
    """Point-MAE naming: group_divider, encoder, pos_embed, blocks.blocks[i], norm, cls_head_finetune."""

    def __init__(self, sdpa: bool = False):
        super().__init__()
        self.group_divider, self.encoder = TinyGroup(), TinyEncoder()
        self.cls_token, self.cls_pos = nn.Parameter(torch.zeros(1, 1, D)), nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Sequential(nn.Linear(3, P), nn.GELU(), nn.Linear(P, D))
        self.blocks, self.norm = TinyBlocks(sdpa), nn.LayerNorm(D)
        self.cls_head_finetune = nn.Sequential(nn.Linear(2 * D, HID), nn.BatchNorm1d(HID), nn.ReLU(),
                                               nn.Linear(HID, CLS))

    def forward(self, pts):  # pts: (B, N, 3)
        neighborhood, center = self.group_divider(pts)
        tokens = self.encoder(neighborhood)  # (B, G, D)
        B = tokens.shape[0]
        x = torch.cat([self.cls_token.expand(B, -1, -1), tokens], dim=1)  # (B, T, D)
        pos = torch.cat([self.cls_pos.expand(B, -1, -1), self.pos_embed(center)], dim=1)  # (B, T, D)
        x = self.norm(self.blocks(x, pos))
        feat = torch.cat([x[:, 0], x[:, 1:].max(1)[0]], dim=-1)  # (B, 2D)
        return self.cls_head_finetune(feat)


class TinyLoRA(nn.Module):
    """peft-style wrapper: base_layer + lora_A/lora_B, merge folds B @ A into the base weight."""

    def __init__(self, base_layer: nn.Linear, r: int):
        super().__init__()
        self.base_layer, self.merged = base_layer, False
        self.lora_A = nn.Linear(base_layer.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base_layer.out_features, bias=False)
        nn.init.normal_(self.lora_B.weight)

    def forward(self, x):
        if self.merged:
            return self.base_layer(x)
        return self.base_layer(x) + self.lora_B(self.lora_A(x))

    @torch.no_grad()
    def merge(self):
        self.base_layer.weight += self.lora_B.weight @ self.lora_A.weight
        self.merged = True


def add_lora(model: TinyPointMAE, r: int):
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.blocks.blocks:
        block.attn.qkv = TinyLoRA(block.attn.qkv, r)
    for p in model.cls_head_finetune.parameters():
        p.requires_grad_(True)
    return model


T = G + 1  # tokens: cls + groups
EXPECTED = {
    "conv": G * K * (3 * C1 + C1 * C2 + 2 * C2 * C3 + C3 * D),
    "linear": G * (3 * P + P * D) + L * T * (D * 3 * D + D * D + 2 * D * 4 * D) + 2 * D * HID + HID * CLS,
    "attention": L * 2 * T * T * D,
    "norm": G * K * (C1 + C3) * 2 + HID * 2 + (2 * L + 1) * T * D * 5,  # BN eval 2/elt, LN 5/elt
    "softmax": L * H * T * T,
    "activation": G * P + L * T * 4 * D,  # GELU 1/elt
}


def profiler_points(batch: int = 1) -> torch.Tensor:
    return torch.rand(batch, N, 3, generator=torch.Generator().manual_seed(0))
