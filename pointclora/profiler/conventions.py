"""Per-op cost formulas: what one aten op costs, in multiply-accumulates (MACs).

Convention ("ours"), stated in every report:
- matmul family (mm, addmm, bmm, baddbmm, convolution, scaled-dot-product attention):
  exact MACs from ``torch.utils.flop_counter`` (it returns FLOPs = 2 x MACs); bias
  additions are not counted (as in thop, fvcore and torch).
- LayerNorm: 5 MAC-equivalents per element with an affine transform, 4 without;
  BatchNorm: 2 per element in eval mode (folds into scale + shift), 5 / 4 in training
  mode. This is fvcore's convention, so the two can be cross-checked.
- GELU: 1 per element; softmax: 1 per element (DeepSpeed profiler's convention).
- ReLU, max-pool, residual adds, dropout, copies, indexing: 0 (memory-bound).
- Backward of a norm / activation / softmax op costs what its forward costs.
FLOPs = 2 x MACs for every op, MAC-equivalents included.

Each formula returns ``{kind: macs}``; kind "matmul" is later resolved by the module
it runs in into "linear", "conv" or "attention" (a product of two activations).
"""
from math import prod
from typing import Callable, Dict

import torch
from torch.utils import flop_counter

aten = torch.ops.aten

Formula = Callable[..., Dict[str, int]]


def _numel(x) -> int:
    return x.numel() if isinstance(x, torch.Tensor) else 0


def _from_torch(packet, kind: str) -> Formula:
    """Wraps torch's FLOP formula for ``packet`` into MACs of ``kind``."""
    fn = flop_counter.flop_registry[packet]  # registered formulas already accept raw tensors

    def formula(args, kwargs, out):
        return {kind: int(fn(*args, **kwargs, out_val=out)) // 2}

    return formula


def _sdpa(args, kwargs, out):
    """q (B, H, L, E), k (B, H, S, E), v (B, H, S, Ev): QK^T and AV, plus softmax over (B, H, L, S)."""
    q, k, v = args[0], args[1], args[2]
    flops = flop_counter.sdpa_flop_count(tuple(q.shape), tuple(k.shape), tuple(v.shape))
    scores = prod(q.shape[:-1]) * k.shape[-2]
    return {"attention": int(flops) // 2, "softmax": scores}


def _sdpa_backward(args, kwargs, out):
    """grad_out, q, k, v: backward of QK^T and AV (4 products) plus softmax backward."""
    g, q, k, v = args[0], args[1], args[2], args[3]
    flops = flop_counter.sdpa_backward_flop_count(tuple(g.shape), tuple(q.shape), tuple(k.shape), tuple(v.shape))
    scores = prod(q.shape[:-1]) * k.shape[-2]
    return {"attention": int(flops) // 2, "softmax": scores}


def _layer_norm(args, kwargs, out):
    """native_layer_norm(input, shape, weight, bias, eps): fvcore's 5 (affine) or 4 per element."""
    affine = len(args) > 2 and args[2] is not None
    return {"norm": _numel(args[0]) * (5 if affine else 4)}


def _layer_norm_backward(args, kwargs, out):
    """native_layer_norm_backward(grad_out, input, shape, mean, rstd, weight, ...)."""
    affine = len(args) > 5 and args[5] is not None
    return {"norm": _numel(args[0]) * (5 if affine else 4)}


def _batch_norm_cost(x, weight, training) -> Dict[str, int]:
    affine = weight is not None
    per_element = (5 if affine else 4) if training else (2 if affine else 1)
    return {"norm": _numel(x) * per_element}


def _batch_norm(args, kwargs, out):
    """native_batch_norm(input, weight, bias, running_mean, running_var, training, ...)."""
    return _batch_norm_cost(args[0], args[1], bool(args[5]))


def _batch_norm_legit(args, kwargs, out):
    """_native_batch_norm_legit(input, weight, bias, [running_mean, running_var,] training, ...)."""
    training = args[5] if len(args) > 6 else args[3]
    return _batch_norm_cost(args[0], args[1], bool(training))


def _batch_norm_no_training(args, kwargs, out):
    return _batch_norm_cost(args[0], args[1], False)


def _batch_norm_backward(args, kwargs, out):
    """native_batch_norm_backward(grad_out, input, weight, running_mean, running_var, save_mean, save_invstd, train, ...)."""
    return _batch_norm_cost(args[0], args[2], bool(args[7]))


def _per_element(kind: str, index: int = 0) -> Formula:
    def formula(args, kwargs, out):
        return {kind: _numel(args[index])}

    return formula


def _matmul_formulas() -> Dict[object, Formula]:
    """Every op torch's flop counter knows (mm, addmm, bmm, convolution, ...), as kind "matmul"."""
    table = {packet: _from_torch(packet, "matmul") for packet in flop_counter.flop_registry
             if isinstance(packet, torch._ops.OpOverloadPacket)}
    for name in ("_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
                 "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu"):
        if hasattr(aten, name):
            table[getattr(aten, name)] = _sdpa
    for name in ("_scaled_dot_product_efficient_attention_backward", "_scaled_dot_product_flash_attention_backward",
                 "_scaled_dot_product_cudnn_attention_backward",
                 "_scaled_dot_product_flash_attention_for_cpu_backward"):
        if hasattr(aten, name):
            table[getattr(aten, name)] = _sdpa_backward
    return table


def build_formulas() -> Dict[object, Formula]:
    """Op overload packet -> formula returning {kind: MACs}."""
    table = _matmul_formulas()
    table.update({
        aten.native_layer_norm: _layer_norm,
        aten.native_layer_norm_backward: _layer_norm_backward,
        aten.native_batch_norm: _batch_norm,
        aten._native_batch_norm_legit: _batch_norm_legit,
        aten._native_batch_norm_legit_no_training: _batch_norm_no_training,
        aten.native_batch_norm_backward: _batch_norm_backward,
        aten.gelu: _per_element("activation"),
        aten.gelu_backward: _per_element("activation"),
        aten._softmax: _per_element("softmax"),
        aten._softmax_backward_data: _per_element("softmax"),
    })
    return table


CONVENTION_OURS = (
    "ours: MACs of every matmul (Linear, Conv, attention QK^T and AV, adapters) plus "
    "MAC-equivalents for LayerNorm (5/element), BatchNorm (2/element in eval), GELU and "
    "softmax (1/element); ReLU, pooling, adds and indexing count 0; FLOPs = 2 x MACs. "
    "FPS and kNN are not included (estimated separately)."
)
CONVENTION_THOP = (
    "thop-style: MACs of Linear and Conv layers only (adapter low-rank products included), "
    "attention matmuls, norms, activations and softmax excluded; papers usually print this "
    "number and call it FLOPs."
)
CONVENTION_TRAIN = (
    "training step: forward + the backward autograd really runs, counted op by op: frozen "
    "weights get no weight-gradient matmul, and layers below the first trainable parameter "
    "get no backward at all; optimizer update not counted."
)
THOP_KINDS = ("linear", "conv")
