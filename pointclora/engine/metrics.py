"""Evaluation metrics kept as sums, so that ranks can all-reduce them exactly.

Classification: overall accuracy (OA) and mean class accuracy (mAcc) from a confusion matrix.
Part segmentation (ShapeNetPart): predictions are restricted to the parts of the object's own
category, per-shape IoU averages the category's parts (a part absent from both label and
prediction counts IoU 1), instance mIoU averages shapes and class mIoU averages categories —
the protocol of PointNet++ / Point-MAE segmentation/main.py.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

# Part ids of the 16 ShapeNetPart categories in their standard (alphabetical synset-file) order:
# Airplane, Bag, Cap, Car, Chair, Earphone, Guitar, Knife, Lamp, Laptop, Motorbike, Mug,
# Pistol, Rocket, Skateboard, Table; 50 parts in all.
SHAPENET_PART_COUNTS = (4, 2, 2, 4, 4, 3, 3, 2, 4, 2, 6, 2, 3, 3, 3, 3)


def part_ranges(counts: Sequence[int] = SHAPENET_PART_COUNTS) -> list[list[int]]:
    """Contiguous part ids per category: counts (2, 3) -> [[0, 1], [2, 3, 4]]."""
    out, start = [], 0
    for n in counts:
        out.append(list(range(start, start + n)))
        start += n
    return out


def part_mask(parts: Sequence[Sequence[int]], num_parts: int) -> torch.Tensor:
    """returns (K, P) bool: mask[k, p] is True when part p belongs to category k."""
    mask = torch.zeros(len(parts), num_parts, dtype=torch.bool)
    for k, ids in enumerate(parts):
        mask[k, list(ids)] = True
    return mask


class ClassificationMeter:
    """Confusion matrix of (target, prediction) counts; `tensors()` are summed across ranks."""

    def __init__(self, num_classes: int, device: torch.device | str = "cpu"):
        self.num_classes = num_classes
        self.conf = torch.zeros(num_classes, num_classes, dtype=torch.float64, device=device)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        """logits: (B, C) float; target: (B,) int64."""
        pred = logits.argmax(dim=-1)
        idx = target.long() * self.num_classes + pred  # (B,)
        self.conf += torch.bincount(idx, minlength=self.num_classes**2).view(self.num_classes, -1)

    def tensors(self) -> list[torch.Tensor]:
        return [self.conf]

    def compute(self) -> dict:
        """returns {'oa', 'macc'} in percent; mAcc averages classes seen in the targets."""
        support = self.conf.sum(dim=1)
        total = support.sum().clamp(min=1)
        oa = self.conf.diag().sum() / total
        seen = support > 0
        macc = (self.conf.diag()[seen] / support[seen]).mean() if seen.any() else torch.tensor(0.0)
        return {"oa": 100.0 * oa.item(), "macc": 100.0 * macc.item()}


def restrict_to_parts(logits: torch.Tensor, category: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """logits: (B, N, P); category: (B,) int64; mask: (K, P) bool. returns pred (B, N) int64
    chosen only among the parts of each shape's own category."""
    allowed = mask.to(logits.device)[category.long()]  # (B, P)
    masked = logits.masked_fill(~allowed[:, None, :], float("-inf"))  # (B, N, P)
    return masked.argmax(dim=-1)


def shape_ious(pred: torch.Tensor, seg: torch.Tensor, category: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred, seg: (B, N) int64; category: (B,). returns (B,) float64 mean IoU over each shape's parts."""
    num_parts = mask.shape[1]
    pred_1h = torch.nn.functional.one_hot(pred.long(), num_parts).bool()  # (B, N, P)
    seg_1h = torch.nn.functional.one_hot(seg.long(), num_parts).bool()  # (B, N, P)
    inter = (pred_1h & seg_1h).sum(dim=1).double()  # (B, P)
    union = (pred_1h | seg_1h).sum(dim=1).double()  # (B, P)
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))  # absent part: 1
    own = mask.to(pred.device)[category.long()].double()  # (B, P)
    return (iou * own).sum(dim=1) / own.sum(dim=1)


class PartSegMeter:
    """Sums of shape IoUs per category and point accuracy; `tensors()` are summed across ranks."""

    def __init__(self, parts: Sequence[Sequence[int]] | None = None, num_parts: int = 50,
                 device: torch.device | str = "cpu"):
        self.mask = part_mask(parts or part_ranges(), num_parts).to(device)
        k = self.mask.shape[0]
        self.iou_sum = torch.zeros(k, dtype=torch.float64, device=device)
        self.count = torch.zeros(k, dtype=torch.float64, device=device)
        self.points = torch.zeros(2, dtype=torch.float64, device=device)  # correct, total

    def update(self, logits: torch.Tensor, seg: torch.Tensor, category: torch.Tensor) -> None:
        """logits: (B, N, P); seg: (B, N) int64; category: (B,) int64."""
        pred = restrict_to_parts(logits, category, self.mask)
        ious = shape_ious(pred, seg, category, self.mask)
        self.iou_sum.index_add_(0, category.long(), ious)
        self.count.index_add_(0, category.long(), torch.ones_like(ious))
        self.points[0] += (pred == seg).sum()
        self.points[1] += seg.numel()

    def tensors(self) -> list[torch.Tensor]:
        return [self.iou_sum, self.count, self.points]

    def compute(self) -> dict:
        """returns {'ins_miou', 'cls_miou', 'acc'} in percent."""
        seen = self.count > 0
        ins = self.iou_sum.sum() / self.count.sum().clamp(min=1)
        cls = (self.iou_sum[seen] / self.count[seen]).mean() if seen.any() else torch.tensor(0.0)
        acc = self.points[0] / self.points[1].clamp(min=1)
        return {"ins_miou": 100.0 * ins.item(), "cls_miou": 100.0 * cls.item(), "acc": 100.0 * acc.item()}


def reduce_meter(meter, all_reduce: Callable[[torch.Tensor], None]) -> None:
    """Sums a meter's tensors in place with `all_reduce` (e.g. torch.distributed.all_reduce)."""
    for t in meter.tensors():
        all_reduce(t)
