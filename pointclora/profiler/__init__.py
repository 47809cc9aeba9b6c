"""Profiler: MACs/FLOPs on the real module graph, point-op cost, latency and memory, reports."""
from .flops import CATEGORIES, FlopCount, OpRecord, count_model, count_ops

__all__ = ["CATEGORIES", "FlopCount", "OpRecord", "count_model", "count_ops"]
