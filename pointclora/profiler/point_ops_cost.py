"""Cost of the point ops (FPS, kNN, ball query, grouping), estimated from algorithmic counts.

FLOP counters see nothing of these ops (custom kernels; ``cdist``/``topk``/sort count
0), yet they run on every forward. We record each ``cuda_ext`` call with its shapes
while the model runs and price it from the textbook algorithm, stated as such:

- one squared distance between 3-D points: 8 FLOPs (3 sub, 3 mul, 2 add);
- FPS (N points -> M samples): (M - 1) iterations x N distances to the last pick,
  plus 2 comparisons per point and iteration (min update, argmax);
- brute-force kNN / ball query (M queries, N references): M x N distances, plus
  M x N x ceil(log2 k) comparisons for a k-heap (ball query: 1 comparison each);
- three_nn: like kNN with k = 3; three_interpolate: 3 MACs per output element;
- gather / grouping: no arithmetic, only memory traffic (elements moved).
These are estimates of the algorithm, not measurements of a kernel.
"""
import contextlib
import math
import sys
import threading
from dataclasses import dataclass
from typing import Dict, List

import cuda_ext

DIST_FLOPS = 8  # squared distance between two 3-D points: 3 sub + 3 mul + 2 add
POINT_OPS = ("furthest_point_sample", "knn", "ball_query", "three_nn", "three_interpolate",
             "gather_operation", "grouping_operation", "chamfer_distance")
_state = threading.local()


@dataclass
class PointOpCall:
    """One call of a point op with the sizes that set its cost."""
    name: str
    batch: int
    n: int  # reference points
    m: int  # queries / samples / output points
    k: int = 1  # neighbours, or channels for gather/grouping/interpolate


@dataclass
class PointOpCost:
    name: str
    calls: int
    flops: int
    comparisons: int
    elements_moved: int


def inside_point_op() -> bool:
    return getattr(_state, "depth", 0) > 0


def _describe(name: str, args, out) -> PointOpCall:
    """Sizes of a call from its arguments (shapes as in ``cuda_ext``'s docstrings)."""
    if name == "furthest_point_sample":
        xyz, npoint = args[0], int(args[1])
        return PointOpCall(name, xyz.shape[0], xyz.shape[1], npoint)
    if name == "knn":
        ref, query, k = args[0], args[1], int(args[2])
        return PointOpCall(name, ref.shape[0], ref.shape[1], query.shape[1], k)
    if name == "ball_query":
        nsample, xyz, new_xyz = int(args[1]), args[2], args[3]
        return PointOpCall(name, xyz.shape[0], xyz.shape[1], new_xyz.shape[1], nsample)
    if name in ("three_nn", "chamfer_distance"):
        a, b = args[0], args[1]
        return PointOpCall(name, a.shape[0], b.shape[1], a.shape[1], 3 if name == "three_nn" else 1)
    if name in ("gather_operation", "grouping_operation", "three_interpolate"):
        features, idx = args[0], args[1]
        outputs = math.prod(idx.shape[1:3] if name == "three_interpolate" else idx.shape[1:])
        return PointOpCall(name, features.shape[0], features.shape[2], outputs, features.shape[1])
    raise KeyError(f"point op {name!r}: no cost model; known: {', '.join(POINT_OPS)}")


def call_cost(call: PointOpCall) -> PointOpCost:
    """Algorithmic cost of one call for its whole batch."""
    b, n, m, k = call.batch, call.n, call.m, call.k
    flops = comparisons = moved = 0
    if call.name == "furthest_point_sample":
        flops = b * (m - 1) * n * DIST_FLOPS
        comparisons = b * (m - 1) * n * 2
    elif call.name in ("knn", "three_nn"):
        flops = b * m * n * DIST_FLOPS
        comparisons = b * m * n * max(1, math.ceil(math.log2(max(k, 2))))
    elif call.name == "ball_query":
        flops, comparisons = b * m * n * DIST_FLOPS, b * m * n
    elif call.name == "chamfer_distance":
        flops, comparisons = b * m * n * DIST_FLOPS, 2 * b * m * n
    elif call.name == "three_interpolate":
        flops, moved = b * k * m * 3 * 2, b * k * m * 3
    else:  # gather / grouping: pure memory traffic
        moved = b * k * m
    return PointOpCost(call.name, 1, flops, comparisons, moved)


def summarize(calls: List[PointOpCall], per_sample: bool = True) -> Dict[str, PointOpCost]:
    """Cost per op name, divided by the batch size when ``per_sample``."""
    out: Dict[str, PointOpCost] = {}
    for call in calls:
        c = call_cost(call)
        div = call.batch if per_sample else 1
        prev = out.get(call.name, PointOpCost(call.name, 0, 0, 0, 0))
        out[call.name] = PointOpCost(call.name, prev.calls + 1, prev.flops + c.flops // div,
                                     prev.comparisons + c.comparisons // div,
                                     prev.elements_moved + c.elements_moved // div)
    return out


def estimate_grouping(npoints: int, num_group: int, group_size: int) -> Dict[str, PointOpCost]:
    """Per-sample FPS + kNN cost of Point-MAE's patching without running a model."""
    for name, value in (("npoints", npoints), ("num_group", num_group), ("group_size", group_size)):
        if int(value) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    if num_group > npoints:
        raise ValueError(f"num_group: expected <= npoints ({npoints}), got {num_group}")
    calls = [PointOpCall("furthest_point_sample", 1, npoints, num_group),
             PointOpCall("knn", 1, npoints, num_group, group_size)]
    return summarize(calls)


def record_dispatched(func, args, out, calls: List[PointOpCall]) -> None:
    """A ``cuda_ext::<op>`` registered with torch.library, seen by the dispatch mode."""
    name = func._overloadpacket.__name__
    if name in POINT_OPS:
        calls.append(_describe(name, args, out))


def _wrap(name: str, fn, calls: List[PointOpCall]):
    def wrapper(*args, **kwargs):
        _state.depth = getattr(_state, "depth", 0) + 1
        try:
            out = fn(*args, **kwargs)
        finally:
            _state.depth -= 1
        if not inside_point_op():
            calls.append(_describe(name, args, out))
        return out

    wrapper.__wrapped__ = fn
    return wrapper


def _patch_targets(originals: Dict[str, object]):
    """(module, attribute, original) for every alias of a point op in cuda_ext / pointclora modules."""
    by_id = {id(fn): name for name, fn in originals.items()}
    for mod_name, module in list(sys.modules.items()):
        if module is None or not (mod_name.startswith("cuda_ext") or mod_name.startswith("pointclora")):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in by_id:
                yield module, attr, value


@contextlib.contextmanager
def recording(calls: List[PointOpCall]):
    """Temporarily wraps every ``cuda_ext`` point op (and its aliases) to record its calls."""
    originals = {name: getattr(cuda_ext, name) for name in POINT_OPS if hasattr(cuda_ext, name)}
    by_id = {id(fn): name for name, fn in originals.items()}
    patched = []
    for module, attr, value in _patch_targets(originals):
        setattr(module, attr, _wrap(by_id[id(value)], value, calls))
        patched.append((module, attr, value))
    try:
        yield calls
    finally:
        for module, attr, value in reversed(patched):
            setattr(module, attr, value)


def as_rows(costs: Dict[str, PointOpCost]) -> List[Dict[str, int]]:
    return [{"op": c.name, "calls": c.calls, "flops": c.flops, "comparisons": c.comparisons,
             "elements_moved": c.elements_moved} for c in costs.values()]

