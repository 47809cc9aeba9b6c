"""What differs between classification and part segmentation: inputs, targets, meters, votes.

Batches are dicts from the datasets: classification {'points' (B, N, C), 'label' (B,)},
part segmentation {'points' (B, N, C), 'category' (B,), 'seg' (B, N)}.
"""
from __future__ import annotations

from typing import Mapping

import torch

from ..datasets.transforms import ScaleTranslate
from ..models import model_class
from .metrics import ClassificationMeter, PartSegMeter, part_mask, part_ranges, restrict_to_parts


def scale_translate(points: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Point-MAE's PointcloudScaleAndTranslate for test-time voting: per-shape, per-axis scale
    U[2/3, 3/2] and translation U[-0.2, 0.2] of xyz. points: (B, N, C) -> (B, N, C).
    The training augmentation of the same name (datasets.transforms.ScaleTranslate)."""
    return ScaleTranslate()(points, generator)


class ClassificationTask:
    """Shape classification: cross-entropy via model.loss, OA / mAcc, best epoch by OA."""

    name = "classification"
    select_key = "oa"
    metric_keys = ("oa", "macc")

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def to_device(self, batch: Mapping, device: torch.device) -> dict:
        return {k: v.to(device, non_blocking=True) for k, v in batch.items() if torch.is_tensor(v)}

    def forward(self, model, batch: Mapping, points: torch.Tensor | None = None) -> torch.Tensor:
        """returns logits (B, num_classes)."""
        return model(batch["points"] if points is None else points)

    def target(self, batch: Mapping) -> torch.Tensor:
        return batch["label"].long().view(-1)  # (B,)

    def correct(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        """Number of correct predictions in the batch, as a 0-d tensor (no host sync)."""
        return (logits.argmax(-1) == self.target(batch)).sum()

    def count(self, batch: Mapping) -> int:
        return batch["points"].shape[0]

    def new_meter(self, device) -> ClassificationMeter:
        return ClassificationMeter(self.num_classes, device)

    def update(self, meter: ClassificationMeter, logits: torch.Tensor, batch: Mapping) -> None:
        meter.update(logits.float(), self.target(batch))

    def predictions(self, scores: torch.Tensor, batch: Mapping, are_probs: bool = False) -> dict:
        """Arrays of pointclora.io's prediction file: points, label, pred, probs."""
        probs = scores.float() if are_probs else scores.float().softmax(-1)
        return {"points": batch["points"][..., :3].float(), "label": self.target(batch),
                "pred": scores.argmax(-1), "probs": probs}


class PartSegTask(ClassificationTask):
    """ShapeNetPart: per-point CE via model.loss, predictions restricted to the category's parts,
    instance / class mIoU; best epoch by instance mIoU (Point-MAE segmentation/main.py)."""

    name = "part_segmentation"
    select_key = "ins_miou"
    metric_keys = ("ins_miou", "cls_miou", "acc")

    def __init__(self, num_parts: int = 50, parts=None):
        super().__init__(num_parts)
        self.parts = parts or part_ranges()

    def forward(self, model, batch: Mapping, points: torch.Tensor | None = None) -> torch.Tensor:
        """returns logits (B, N, num_parts)."""
        return model(batch["points"] if points is None else points, batch["category"].long().view(-1))

    def target(self, batch: Mapping) -> torch.Tensor:
        return batch["seg"].long()  # (B, N)

    def correct(self, logits: torch.Tensor, batch: Mapping) -> torch.Tensor:
        return (logits.argmax(-1) == self.target(batch)).float().mean(dim=1).sum()  # shapes' point acc

    def new_meter(self, device) -> PartSegMeter:
        return PartSegMeter(self.parts, self.num_classes, device)

    def update(self, meter: PartSegMeter, logits: torch.Tensor, batch: Mapping) -> None:
        meter.update(logits.float(), self.target(batch), batch["category"].long().view(-1))

    def predictions(self, scores: torch.Tensor, batch: Mapping, are_probs: bool = False) -> dict:
        """points, seg, pred_seg (restricted to the category's parts), category."""
        category = batch["category"].long().view(-1)
        pred = restrict_to_parts(scores.float(), category, part_mask(self.parts, self.num_classes))
        return {"points": batch["points"][..., :3].float(), "seg": self.target(batch), "pred_seg": pred,
                "category": category}


def build_task(cfg_model: Mapping, dataset) -> ClassificationTask:
    """The task the model says it is for (its class's TASK): part segmentation or classification.

    Checks that the model's output size matches the dataset (ValueError naming model.cls_dim).
    """
    name = str(cfg_model.get("NAME", ""))
    part_seg = model_class(cfg_model).TASK == "part_segmentation"
    kind = type(getattr(dataset, "dataset", dataset)).__name__  # the loader class behind a SkipBadFiles
    if not getattr(dataset, "labelled", True):
        raise ValueError(f"dataset.NAME={kind} has no labels, but model.NAME={name!r} is trained on labels "
                         "('label' per shape or 'seg' per point); pre-train on it with tools/pretrain.py, "
                         "or fine-tune on a labelled dataset (ScanObjectNN, ModelNet40, ShapeNetPart)")
    if part_seg and getattr(dataset, "seg_classes", None) is None:
        raise ValueError(f"model.NAME={name!r} needs per-point part labels, but dataset.NAME={kind} has none "
                         "(use ShapeNetPart)")
    if part_seg:
        num_parts = int(getattr(dataset, "NUM_PARTS", cfg_model.get("cls_dim", 50)))
        if "cls_dim" in cfg_model and int(cfg_model["cls_dim"]) != num_parts:
            raise ValueError(f"model.cls_dim={cfg_model['cls_dim']} but the dataset has {num_parts} part classes")
        seg_classes = getattr(dataset, "seg_classes", None)
        classes = getattr(dataset, "classes", None)
        parts = None
        if isinstance(seg_classes, Mapping):  # category index order is the dataset's `classes` order
            parts = [list(seg_classes[c]) for c in (classes or seg_classes)]
        return PartSegTask(num_parts, parts)
    classes = getattr(dataset, "classes", None)
    num_classes = int(cfg_model.get("cls_dim", len(classes) if classes else 0))
    wider_ok = getattr(dataset, "wider_head_ok", False)  # few-shot: Point-MAE keeps a 40-way head for 5 classes
    if classes is not None and (num_classes < len(classes) if wider_ok else num_classes != len(classes)):
        raise ValueError(
            f"model.cls_dim={num_classes} but dataset {type(dataset).__name__} has {len(classes)} classes"
        )
    return ClassificationTask(num_classes)
