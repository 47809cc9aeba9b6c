"""Which epoch's numbers a run reports, said plainly: three protocols.

With `dataset.val_fraction` (datasets/heldout.py) the best epoch is chosen on a held-out,
class-stratified part of the training split, named 'heldout'.

Protocols (the labels of the summary, results.json's `protocols` and metrics.csv's `protocol`):
- `test @ best val epoch`: test metrics of the epoch chosen on a separate validation split;
- `test @ last epoch`: test metrics after the last epoch;
- `best test epoch (public protocol)`: the best test metrics over all epochs, which is what the
  published ScanObjectNN / ModelNet40 / few-shot numbers report (they select on the test split).
Whenever the validation split is not the test split, the test split is evaluated every epoch too
(`test/...` columns), so all three are known.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

from ..datasets.heldout import HELDOUT, check_fraction  # noqa: F401  (the engine's names)

BEST_VAL, LAST, BEST_TEST = "test @ best val epoch", "test @ last epoch", "best test epoch (public protocol)"
PROTOCOLS = (BEST_VAL, LAST, BEST_TEST)


# ---------------------------------------------------------------- the protocols of a run
def _metrics(row: Mapping, prefix: str, keys: Sequence[str]) -> Optional[dict]:
    values = {k: row.get(f"{prefix}/{k}") for k in keys}
    if any(not isinstance(v, (int, float)) or math.isnan(v) for v in values.values()):
        return None
    return {"epoch": int(row["epoch"]), **{k: float(v) for k, v in values.items()}}


def protocols(rows: Sequence[Mapping], keys: Sequence[str], select_key: str, separate_val: bool,
              best: Mapping, test_at_best: Mapping) -> dict:
    """{protocol: {'epoch', metric: value}} from the metrics.csv rows of a finished run.

    Test metrics per epoch are the `test/` columns when the validation split is separate, else
    the `val/` columns (the validation split is the test split). best: the trainer's best (epoch);
    test_at_best: the test metrics of the best weights."""
    prefix = "test" if separate_val else "val"
    evaluated = [m for m in (_metrics(r, prefix, keys) for r in rows) if m is not None]
    out: dict = {}
    if separate_val:
        out[BEST_VAL] = {"epoch": best.get("epoch"), **{k: float(test_at_best[k]) for k in keys}}
    if evaluated:
        out[LAST] = evaluated[-1]
        out[BEST_TEST] = max(evaluated, key=lambda m: m[select_key])  # first of equal maxima, as the trainer
    return out


def label_rows(rows: Sequence[dict], result: Mapping) -> list[dict]:
    """The rows with a 'protocol' column naming the protocols each epoch's numbers stand for."""
    by_epoch: dict = {}
    for label, values in result.items():
        by_epoch.setdefault(values.get("epoch"), []).append(label)
    return [{**r, "protocol": "; ".join(by_epoch.get(int(r["epoch"]), []))} for r in rows]


def summary_lines(result: Mapping, names: Mapping[str, str], keys: Sequence[str]) -> list[str]:
    """One line per protocol: '<protocol> (epoch N): overall accuracy 61.43 %, ...'."""
    lines = []
    for label in PROTOCOLS:
        if label in result:
            values = result[label]
            shown = ", ".join(f"{names.get(k, k)} {values[k]:.2f} %" for k in keys)
            lines.append(f"{label} (epoch {values['epoch']}): {shown}")
    return lines
