"""Render profiles as a text table, markdown or JSON; ``--compare`` puts several in one table.

Every rendering states the counting conventions, so a number is never shown without
what it counts.
"""
import json
from typing import List, Sequence, Tuple

from .summary import ProfileResult

FORMATS = ("table", "markdown", "json")
Section = Tuple[str, List[str], List[List[str]]]


def _g(x: float) -> str:
    return f"{x / 1e9:.3f}"


def _m(x: float) -> str:
    return f"{x / 1e6:.3f}"


def _pct(x: float, total: float) -> str:
    return f"{100.0 * x / total:.1f}%" if total else "-"


def _train(r: ProfileResult, x: int) -> str:
    """Merged adapters are an inference-time form: a training step of it is not meaningful."""
    return "- (merged: inference only)" if r.mode == "merged" else _g(x)


def _overview(r: ProfileResult) -> Section:
    p = r.params
    rows = [["parameters total / trainable (M)", f"{_m(p['total'])} / {_m(p['trainable'])}"]]
    if "adapter" in p:
        rows.append(["parameters adapter / head (M)", f"{_m(p['adapter'])} / {_m(p.get('head', 0))}"])
    rows += [
        ["forward GMACs (ours)", _g(r.macs)],
        ["forward GFLOPs (ours, 2 x MACs)", _g(r.flops)],
        ["forward GMACs (thop-style, Linear/Conv only)", _g(r.thop_macs)],
        ["training step GFLOPs (forward + backward)", _train(r, r.train_flops)],
        ["  of which backward GFLOPs", _train(r, 2 * r.train_backward_macs)],
        ["point ops MFLOPs (FPS, kNN, ...: estimated, not in totals)", _m(r.point_ops_flops)],
    ]
    title = f"{r.name}: {r.points} points, {r.groups if r.groups is not None else '?'} groups, {r.mode}, per sample"
    return title, ["quantity", "value"], rows


def _shares(r: ProfileResult) -> Section:
    rows = [[c, _m(v), _pct(v, r.macs)] for c, v in r.categories.items() if v]
    rows += [[f"kind: {k}", _m(v), _pct(v, r.macs)] for k, v in r.kinds.items() if v]
    return "forward MACs by category and by kind (ours)", ["part", "MMACs", "share"], rows


def _point_ops(r: ProfileResult) -> Section:
    rows = [[o["op"], str(o["calls"]), f"{o['flops']:,}", f"{o['comparisons']:,}", f"{o['elements_moved']:,}"]
            for o in r.point_ops]
    return ("point ops per sample, estimated from algorithmic operation counts",
            ["op", "calls", "FLOPs", "comparisons", "elements moved"], rows)


def _latency(r: ProfileResult) -> Section:
    rows = []
    for phase, d in r.latency.items():
        mem = d.get("peak_memory_bytes")
        rows.append([phase, f"{d['median_ms']:.2f}", f"{d['throughput']:.1f}",
                     f"{mem / 2**20:.0f}" if mem else "-", d.get("memory_kind", "-"), d.get("device", "-"),
                     str(d.get("batch", "-"))])
    return ("latency (median after warm-up)",
            ["phase", "median ms", "samples/s", "peak MiB", "memory", "device", "batch"], rows)


def _per_module(r: ProfileResult) -> Section:
    rows = [[m or "(model)", _m(v), _pct(v, r.macs)]
            for m, v in sorted(r.per_module.items(), key=lambda kv: -kv[1]) if v]
    return "forward MACs per module (innermost module running the op)", ["module", "MMACs", "share"], rows


def sections(r: ProfileResult) -> List[Section]:
    out = [_overview(r), _shares(r)]
    if r.point_ops:
        out.append(_point_ops(r))
    if r.latency:
        out.append(_latency(r))
    if r.per_module:
        out.append(_per_module(r))
    return out


def _conventions(results: Sequence[ProfileResult]) -> List[str]:
    conv = results[0].conventions
    return [f"{k}: {v}" if not v.startswith(k) else v for k, v in conv.items()]


def render_text(title: str, headers: List[str], rows: List[List[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([title, line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def render_markdown(title: str, headers: List[str], rows: List[List[str]]) -> str:
    body = ["| " + " | ".join(headers) + " |", "|" + "|".join(["---"] + ["---:"] * (len(headers) - 1)) + "|"]
    body += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return f"**{title}**\n\n" + "\n".join(body)


def format_result(r: ProfileResult, fmt: str = "table") -> str:
    return format_sections(sections(r), [r], fmt)


def format_sections(secs: List[Section], results: Sequence[ProfileResult], fmt: str, as_list: bool = False) -> str:
    """JSON: one object for a single profile, a list when ``as_list`` (``--compare``)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "json":
        return json.dumps([r.to_dict() for r in results] if as_list else results[0].to_dict(), indent=2)
    render = render_text if fmt == "table" else render_markdown
    notes = _conventions(results)
    tail = "\n".join(("- " if fmt == "markdown" else "  ") + n for n in notes)
    return "\n\n".join([render(*s) for s in secs] + ["Conventions:\n" + tail])


def compare_section(results: Sequence[ProfileResult]) -> Section:
    headers = ["config", "mode", "points", "params (M)", "trainable (M)", "GMACs ours", "GFLOPs ours",
               "GMACs thop-style", "adapters GMACs", "train-step GFLOPs", "point-op MFLOPs (est.)"]
    rows = [[r.name, r.mode, str(r.points), _m(r.params["total"]), _m(r.params["trainable"]), _g(r.macs),
             _g(r.flops), _g(r.thop_macs), _g(r.categories.get("adapters", 0)), _train(r, r.train_flops).split(" ")[0],
             _m(r.point_ops_flops)] for r in results]
    return "comparison, per sample", headers, rows


def format_compare(results: Sequence[ProfileResult], fmt: str = "table") -> str:
    if not results:
        raise ValueError("--compare: expected at least one config")
    return format_sections([compare_section(results)], results, fmt, as_list=True)
