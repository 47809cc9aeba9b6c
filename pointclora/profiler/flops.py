"""Counting MACs on the real module graph.

A ``TorchDispatchMode`` sees every aten op the model runs (forward and backward);
module hooks say which module is running. Each op gets a cost from
``conventions.build_formulas`` (torch's own matmul/conv/attention formulas plus
handlers for LayerNorm, BatchNorm, GELU and softmax), a kind (linear, conv,
attention, norm, activation, softmax) and a category (patch encoder, positional
embedding, transformer blocks, attention matmuls, head, adapters, other). Calls of
``cuda_ext`` point ops are recorded with their shapes and priced separately by
``point_ops_cost`` (their internal ops are not counted as network MACs).
"""
import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from . import point_ops_cost as point_ops
from .conventions import THOP_KINDS, build_formulas

CATEGORIES = ("patch encoder", "positional embedding", "transformer blocks", "attention matmuls",
              "head", "adapters", "other")

# First attribute name under the model -> category, for a model that does not describe its own
# (`REGIONS` of pointclora's models): the common Point-MAE / Point-BERT / part-seg naming.
REGION_OF_CHILD = {
    "group_divider": "patch encoder", "grouper": "patch encoder", "encoder": "patch encoder",
    "patch_embed": "patch encoder", "reduce_dim": "patch encoder", "tokenizer": "patch encoder",
    "pos_embed": "positional embedding", "pos_embedding": "positional embedding",
    "blocks": "transformer blocks", "norm": "transformer blocks", "transformer": "transformer blocks",
    "cls_head_finetune": "head", "head": "head", "seg_head": "head", "propagation": "head",
    "label_conv": "head", "convs1": "head", "convs2": "head", "convs3": "head", "bns1": "head",
    "bns2": "head", "propagation_0": "head", "dp1": "head", "relu": "head",
}
LAYER_TYPES = (nn.Linear, nn.modules.conv._ConvNd)
_SKIP = {torch.ops.aten.size.default, torch.ops.aten.stride.default, torch.ops.aten.numel.default,
         torch.ops.aten.dim.default, torch.ops.aten.is_contiguous.default, torch.ops.prim.layout.default,
         torch.ops.aten.sym_size.default, torch.ops.aten.sym_stride.default,
         torch.ops.aten.storage_offset.default, torch.ops.aten.sym_numel.default}


@dataclass
class OpRecord:
    """One counted op: where it ran, what it was, its MACs."""
    op: str
    module: str
    kind: str
    category: str
    phase: str  # "forward" or "backward"
    macs: int


@dataclass
class FlopCount:
    """All counted ops of one run plus the point-op calls seen."""
    records: List[OpRecord] = field(default_factory=list)
    point_op_calls: List[point_ops.PointOpCall] = field(default_factory=list)

    def macs(self, phase: str = "forward", kinds: Optional[Sequence[str]] = None) -> int:
        return sum(r.macs for r in self.records
                   if r.phase == phase and (kinds is None or r.kind in kinds))

    def thop_macs(self) -> int:
        """Forward MACs of Linear/Conv layers (adapters' low-rank products included)."""
        return self.macs("forward", THOP_KINDS)

    def by(self, attr: str, phase: str = "forward") -> Dict[str, int]:
        """MACs summed by ``attr`` ("category", "kind", "module" or "op")."""
        out: Dict[str, int] = defaultdict(int)
        for r in self.records:
            if r.phase == phase:
                out[getattr(r, attr)] += r.macs
        return dict(out)


def _is_adapter(module: nn.Module) -> bool:
    """peft-style wrapper (holds ``base_layer``) or any module of ``pointclora.adapters``."""
    return isinstance(getattr(module, "base_layer", None), nn.Module) or \
        type(module).__module__.startswith("pointclora.adapters")


class _ModuleStack:
    """Forward hooks on every submodule keep the stack of (name, module) running now."""

    def __init__(self, model: nn.Module):
        self.regions = getattr(model, "REGIONS", None) or REGION_OF_CHILD
        self.stack: List[Tuple[str, nn.Module]] = []
        self.handles = []
        for name, module in model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._push(name)))
            self.handles.append(module.register_forward_hook(self._pop(), always_call=True))

    def _push(self, name: str) -> Callable:
        def hook(module, args):
            self.stack.append((name, module))
        return hook

    def _pop(self) -> Callable:
        def hook(module, args, output):
            if self.stack and self.stack[-1][1] is module:
                self.stack.pop()
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def in_adapter(self) -> bool:
        """True when running inside an adapter wrapper but not inside its ``base_layer``."""
        for i, (_, module) in enumerate(self.stack):
            if _is_adapter(module):
                inner = self.stack[i + 1][1] if i + 1 < len(self.stack) else None
                if inner is None or inner is not getattr(module, "base_layer", None):
                    return True
        return False

    def region(self) -> str:
        names = [n for n, _ in self.stack if n]
        if not names:
            return "other"
        top = names[0].split(".")[0]
        if top in self.regions:
            return self.regions[top]
        for key, cat in (("head", "head"), ("propagation", "head"), ("block", "transformer blocks"),
                         ("embed", "patch encoder"), ("encoder", "patch encoder")):
            if key in top:
                return cat
        return "other"


class _CountingMode(TorchDispatchMode):
    def __init__(self, tracker: _ModuleStack, result: FlopCount):
        super().__init__()
        self.tracker = tracker
        self.result = result
        self.formulas = build_formulas()

    def _resolve(self, kind: str, in_adapter: bool) -> str:
        if kind != "matmul":
            return kind
        inner = self.tracker.stack[-1][1] if self.tracker.stack else None
        if isinstance(inner, nn.modules.conv._ConvNd):
            return "conv"
        if isinstance(inner, nn.Linear) or in_adapter:
            return "linear"
        return "attention"

    def _record(self, func, args, kwargs, out) -> None:
        backward = torch._C._current_graph_task_id() != -1
        if point_ops.inside_point_op():
            return
        costs = self.formulas[func._overloadpacket](args, kwargs, out)
        in_adapter = not backward and self.tracker.in_adapter()
        region = "adapters" if in_adapter else self.tracker.region()
        module = self.tracker.stack[-1][0] if self.tracker.stack and not backward else ""
        for kind, macs in costs.items():
            kind = self._resolve(kind, in_adapter) if not backward else kind
            category = region
            if kind == "attention" and region == "transformer blocks":
                category = "attention matmuls"
            if backward:
                category, module = "backward", ""
            self.result.records.append(OpRecord(str(func._overloadpacket), module, kind, category,
                                                "backward" if backward else "forward", int(macs)))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in _SKIP or isinstance(func, torch._ops.HigherOrderOperator):
            return NotImplemented
        if func._overloadpacket not in self.formulas:
            r = func.decompose(*args, **kwargs)
            if r is not NotImplemented:
                return r
        out = func(*args, **kwargs)
        if func._overloadpacket in self.formulas:
            self._record(func, args, kwargs, out)
        elif func.namespace == "cuda_ext" and not point_ops.inside_point_op():  # else its wrapper records it
            point_ops.record_dispatched(func, args, out, self.result.point_op_calls)
        return out


@contextlib.contextmanager
def count_ops(model: nn.Module):
    """Context manager yielding a ``FlopCount`` filled with every op run inside it."""
    result = FlopCount()
    tracker = _ModuleStack(model)
    try:
        with point_ops.recording(result.point_op_calls), _CountingMode(tracker, result):
            yield result
    finally:
        tracker.remove()


def _default_loss(output) -> torch.Tensor:
    out = output[0] if isinstance(output, (tuple, list)) else output
    return out.float().sum()


def count_model(model: nn.Module, inputs: Tuple, backward: bool = False,
                loss_fn: Callable = _default_loss) -> FlopCount:
    """Counts one forward pass of ``model(*inputs)`` (and its backward when ``backward``).

    inputs: tuple of model arguments, e.g. ``(points,)`` with points (B, N, 3) float.
    The model runs in eval mode (no dropout, BatchNorm with running stats); training
    mode is restored afterwards. Gradients flow only into parameters with
    ``requires_grad``, so the backward counted is the one a training step really runs.
    """
    if not isinstance(inputs, tuple):
        raise ValueError(f"inputs: expected a tuple of model arguments, got {type(inputs).__name__}")
    was_training = model.training
    model.eval()
    try:
        with torch.set_grad_enabled(backward), count_ops(model) as result:
            output = model(*inputs)
            if backward:
                loss = loss_fn(output)
                if loss.requires_grad:
                    loss.backward()
    finally:
        model.train(was_training)
        if backward:
            model.zero_grad(set_to_none=True)
    return result
