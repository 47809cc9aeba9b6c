"""The three tasks the engine runs, each owning what differs: inputs, loss, metrics, what is logged,
how the best epoch is chosen and the run's final artefacts. One Trainer and one fit loop
(engine/trainer.py, engine/runner.py) serve all three.

Batches are dicts from the datasets: classification {'points' (B, N, C), 'label' (B,)},
part segmentation {'points' (B, N, C), 'category' (B,), 'seg' (B, N)}, pre-training
{'points' (B, N, C)} (labels, if any, ignored).
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Mapping

import torch

from ..adapters import adapter_regularization, save_adapter
from ..datasets.transforms import ScaleTranslate
from ..models import model_class
from .checkpoint import atomic_save, load_checkpoint, load_model_state, write_text_atomic
from .distributed import barrier
from . import protocols as PR
from .logging import plot_curves, write_rows_csv
from .metrics import ClassificationMeter, PartSegMeter, part_mask, part_ranges, restrict_to_parts

EVAL_MASK_SEED = 1234  # pre-training: fixed masks for the validation loss, so epochs compare on the same task
METRIC_NAMES = {"oa": "overall accuracy", "macc": "mean class accuracy", "ins_miou": "instance mIoU",
                "cls_miou": "class mIoU", "acc": "point accuracy"}


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
    keeps_best = True  # ckpt-best.pth is written when the validation metric improves

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

    # ------------------------------------------------------------------ training step
    def train_output(self, model, batch: Mapping) -> torch.Tensor:
        """The forward pass of a training step (run under autocast): logits."""
        return self.forward(model, batch)

    def train_loss(self, base, logits: torch.Tensor, batch: Mapping, regularize: bool, where: str) -> torch.Tensor:
        """The model's own loss (plain or label-smoothed CE), plus the adapters' regulariser (SADE)."""
        loss = base.loss(logits.float(), self.target(batch))
        if isinstance(loss, (tuple, list)):
            loss = loss[0]
        if regularize:
            loss = loss + adapter_regularization(base)
        return loss

    def train_row(self, sums: torch.Tensor) -> dict:
        """sums: (loss * n, correct, n) over the epoch and all ranks -> the logged training values."""
        count = max(sums[2].item(), 1.0)
        return {"train/loss": sums[0].item() / count, "train/acc": 100.0 * sums[1].item() / count}

    def eval_rng(self, info):
        return contextlib.nullcontext()

    def improved(self, best: Mapping, metrics: Mapping) -> bool:
        return not best or metrics[self.select_key] > best[self.select_key]

    def fallback_metrics(self, row: Mapping):
        """What selects the best epoch when there is no validation loader (classification always has one)."""
        return None

    def best_split(self, val_split: str) -> str:
        return val_split

    # ------------------------------------------------------------------ logging
    def header(self, cfg: Mapping, params: Mapping, info, sizes: Mapping, splits, start_epoch: int) -> str:
        method = (cfg.get("adapter") or {}).get("method", "clora") if cfg.get("adapter") else "full fine-tuning"
        return (f"task {self.name} | model {cfg['model']['NAME']} | method {method} | dataset "
                f"{cfg['dataset']['NAME']} ({sizes[splits[0]]} train / {sizes[splits[1]]} val samples) | device "
                f"{info.device} x {info.world_size} | trainable {params['trainable']:,} / {params['total']:,} "
                "parameters" + (f" | resuming after epoch {start_epoch}" if start_epoch else ""))

    def epoch_line(self, epoch: int, epochs: int, row: Mapping) -> str:
        parts = [f"epoch {epoch}/{epochs}", f"loss {row['train/loss']:.4f}", f"train acc {row['train/acc']:.2f}",
                 f"lr {row['lr']:.2e}"]
        parts += [f"{k} {v:.2f}" for k, v in row.items() if k.startswith(("val/", "test/"))]
        if "coto/active_fraction" in row:
            parts.append(f"coto active {row['coto/active_fraction']:.2f}")
        parts.append(f"{row['throughput']:.1f} samples/s, {row['epoch_time_s']:.1f} s")
        return " | ".join(parts)

    def after_checkpoint(self, base, epoch: int, row: Mapping, out: Path) -> None:
        """Files written after each epoch's checkpoint besides it (none for fine-tuning)."""

    # ------------------------------------------------------------------ artefacts
    def finish(self, run) -> dict:
        """Best weights -> adapter file and test metrics (when the test split differs), results.json, summary."""
        trainer, info, out = run.trainer, run.trainer.info, run.out
        _, val_split, test_split = run.splits
        best_path = out / "ckpt-best.pth"
        barrier()
        load_model_state(trainer.base, load_checkpoint(best_path)["model"], best_path)
        test_metrics = {k: v for k, v in trainer.best.items() if k not in ("epoch", "split")}
        if test_split != val_split:
            test_metrics = trainer.evaluate(run.loader(test_split))
        files = {"output_dir": str(out), "best": str(best_path), "last": str(out / "ckpt-last.pth"),
                 "config": str(out / "config.yaml"), "csv": str(out / "metrics.csv"),
                 "plot": str(out / "curves.png"), "results": str(out / "results.json"), **tensorboard_file(out)}
        results = {"task": self.name, "best_epoch": trainer.best.get("epoch"), "selected_on": val_split,
                   "test_split": test_split, "best_val": trainer.best, "test": test_metrics,
                   "parameters": run.params, "train_time_s": run.seconds, "world_size": info.world_size,
                   "files": files, "skipped_files": run.skipped, "resume_overrides": trainer.resume_overrides}
        results["protocols"] = PR.protocols(run.rows, self.metric_keys, self.select_key, val_split != test_split,
                                            trainer.best, test_metrics)
        if val_split == PR.HELDOUT:
            fraction, seed = PR.check_fraction(run.cfg["dataset"]), int(run.cfg["dataset"].get("val_seed") or 0)
            results["heldout"] = {"val_fraction": fraction, "val_seed": seed, "of_split": run.splits[0],
                                  "size": len(run.datasets[val_split])}
        if info.is_main:
            write_rows_csv(out / "metrics.csv", PR.label_rows(run.rows, results["protocols"]))
            plot_curves(run.rows, out / "curves.png")
            if run.adapter_cfg is not None:
                save_adapter(trainer.base, str(out / "adapter-best.safetensors"))
                files["adapter"] = str(out / "adapter-best.safetensors")
            write_text_atomic(out / "results.json", json.dumps(results, indent=2))
            print_summary(results, self)
        barrier()
        return results


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


class PretrainTask(ClassificationTask):
    """Unlabelled clouds (Point-MAE pre-training): the model's forward is its Chamfer loss on the
    masked patches; best epoch = lowest validation loss (training loss without a validation split).
    Artefacts: pretrain.pth after every epoch, in the official layout that tools/train.py --ckpts reads."""

    name = "pretrain"
    select_key = "loss"
    metric_keys = ("loss",)
    keeps_best = False

    def __init__(self):
        super().__init__(0)

    def to_device(self, batch: Mapping, device: torch.device) -> dict:
        """batch['points']: (B, N, C) -> {'points': (B, N, 3)} (normals etc. dropped)."""
        return {"points": batch["points"][..., :3].contiguous().to(device, non_blocking=True)}

    def forward(self, model, batch: Mapping, points: torch.Tensor | None = None) -> torch.Tensor:
        return model(batch["points"] if points is None else points)  # scalar Chamfer loss

    def train_output(self, model, batch: Mapping) -> torch.Tensor:
        return self.forward(model, batch).float()

    def train_loss(self, base, loss: torch.Tensor, batch: Mapping, regularize: bool, where: str) -> torch.Tensor:
        if not torch.isfinite(loss):
            raise FloatingPointError(f"pre-training loss is {loss.item()} at {where}; "
                                     "lower optimizer.lr or set train.grad_clip")
        return loss

    def correct(self, loss: torch.Tensor, batch: Mapping) -> torch.Tensor:
        return loss.new_zeros(())

    def train_row(self, sums: torch.Tensor) -> dict:
        return {"train/loss": sums[0].item() / max(sums[2].item(), 1.0)}

    def new_meter(self, device) -> "LossMeter":
        return LossMeter(device)

    def update(self, meter: "LossMeter", loss: torch.Tensor, batch: Mapping) -> None:
        meter.update(loss, batch["points"].shape[0])

    def eval_rng(self, info):
        """Masks of the validation loss from a fixed seed; the global RNG is left untouched."""
        return _seeded_rng(EVAL_MASK_SEED + info.rank, info.device)

    def improved(self, best: Mapping, metrics: Mapping) -> bool:
        return not best or metrics["loss"] < best["loss"]

    def fallback_metrics(self, row: Mapping):
        return {"loss": row["train/loss"]}

    def best_split(self, val_split: str) -> str:
        return "val"

    def header(self, cfg: Mapping, params: Mapping, info, sizes: Mapping, splits, start_epoch: int) -> str:
        return (f"pre-training {cfg['model']['NAME']} (mask ratio {cfg['model'].get('mask_ratio', 0.6)}, "
                f"{cfg['model'].get('mask_type', 'rand')}) on {cfg['dataset']['NAME']} {dict(sizes)} | device "
                f"{info.device} x {info.world_size} | {params['total']:,} parameters"
                + (f" | resuming after epoch {start_epoch}" if start_epoch else ""))

    def epoch_line(self, epoch: int, epochs: int, row: Mapping) -> str:
        parts = [f"epoch {epoch}/{epochs}", f"loss {row['train/loss']:.5f}"]
        if "val/loss" in row:
            parts.append(f"val loss {row['val/loss']:.5f}")
        parts += [f"lr {row['lr']:.2e}", f"{row['throughput']:.1f} samples/s, {row['epoch_time_s']:.1f} s"]
        return " | ".join(parts)

    def after_checkpoint(self, base, epoch: int, row: Mapping, out: Path) -> None:
        export_pretrained(base, epoch, {"loss": row["train/loss"]}, out / "pretrain.pth")

    def finish(self, run) -> dict:
        trainer, out = run.trainer, run.out
        files = {"output_dir": str(out), "pretrained": str(out / "pretrain.pth"), "last": str(out / "ckpt-last.pth"),
                 "config": str(out / "config.yaml"), "csv": str(out / "metrics.csv"),
                 "plot": str(out / "curves.png"), "results": str(out / "results.json"), **tensorboard_file(out)}
        losses = [r["train/loss"] for r in run.rows]
        results = {"task": "pretrain", "epochs": trainer.epochs, "first_loss": losses[0] if losses else None,
                   "final_loss": losses[-1] if losses else None, "best": trainer.best, "parameters": run.params,
                   "train_time_s": run.seconds, "world_size": trainer.info.world_size, "files": files,
                   "skipped_files": run.skipped, "resume_overrides": trainer.resume_overrides}
        if trainer.info.is_main:
            plot_curves(run.rows, out / "curves.png")
            write_text_atomic(out / "results.json", json.dumps(results, indent=2))
            print_pretrain_summary(results, trainer, losses, out)
        barrier()
        return results


class LossMeter:
    """Sum of loss * samples and of samples; `tensors()` are summed across ranks."""

    def __init__(self, device):
        self.sums = torch.zeros(2, dtype=torch.float64, device=device)

    def update(self, loss: torch.Tensor, n: int) -> None:
        self.sums[0] += loss.double() * n
        self.sums[1] += n

    def tensors(self) -> list[torch.Tensor]:
        return [self.sums]

    def compute(self) -> dict:
        return {"loss": self.sums[0].item() / max(self.sums[1].item(), 1.0)}


@contextlib.contextmanager
def _seeded_rng(seed: int, device: torch.device):
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def tensorboard_file(out: Path) -> dict:
    """{'tensorboard': tb/} when TensorBoard wrote it (it is optional), else {}."""
    return {"tensorboard": str(out / "tb")} if (out / "tb").is_dir() else {}


def export_pretrained(model: torch.nn.Module, epoch: int, metrics: Mapping, path: Path) -> Path:
    """Writes the official Point-MAE pre-training layout (readable with weights_only=True)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return atomic_save({"base_model": state, "epoch": int(epoch),
                        "metrics": {k: float(v) for k, v in metrics.items()}}, path)


def print_summary(results: Mapping, task) -> None:
    sel, test = results["selected_on"], results["test_split"]
    note = (" (no separate validation split: best epoch chosen on the test split, as in the public protocol)"
            if sel == test else f"; metrics below are on '{test}'")
    held = results.get("heldout")
    if held:
        note = (f" ({held['size']} shapes, {100 * held['val_fraction']:g} % of '{held['of_split']}' per class, "
                f"val_seed {held['val_seed']}){note}")
    print("\n==== summary ====")
    print(f"best epoch {results['best_epoch']} selected on split '{sel}'{note}")
    print("  " + ", ".join(f"{METRIC_NAMES[k]} {results['test'][k]:.2f} %" for k in task.metric_keys))
    for line in PR.summary_lines(results.get("protocols") or {}, METRIC_NAMES, task.metric_keys):
        print(line)
    p = results["parameters"]
    print(f"trainable parameters: {p['trainable']:,} of {p['total']:,} ({100.0 * p['trainable'] / max(p['total'], 1):.2f} %)"
          f"; adapter {p.get('adapter', 0):,}, head {p.get('head', 0):,}")
    print(f"training time: {results['train_time_s']:.1f} s on {results['world_size']} process(es)")
    _print_skipped_and_overrides(results, "s" if len(results.get("skipped_files") or []) > 1 else "")
    print("outputs: " + ", ".join(f"{k} {v}" for k, v in results["files"].items()), flush=True)


def print_pretrain_summary(results: Mapping, trainer, losses: list, out: Path) -> None:
    print("\n==== pre-training summary ====")
    if losses:
        print(f"Chamfer-L2 loss (train, masked patches): epoch 1 {losses[0]:.5f} -> epoch {len(losses)} "
              f"{losses[-1]:.5f}" + (f"; best val {trainer.best['loss']:.5f} (epoch {trainer.best['epoch']})"
                                     if trainer.best.get("split") == "val" else ""))
    print(f"time: {results['train_time_s']:.1f} s on {trainer.info.world_size} process(es) (this run)")
    skipped = results.get("skipped_files") or []
    if skipped:
        print(f"skipped {len(skipped)} bad file(s) (dataset.on_bad_file=skip): " + "; ".join(e["error"] for e in skipped))
    print(f"load it for fine-tuning: python tools/train.py --config <config> --ckpts {out / 'pretrain.pth'}")
    print("outputs: " + ", ".join(f"{k} {v}" for k, v in results["files"].items()), flush=True)


def _print_skipped_and_overrides(results: Mapping, plural: str) -> None:
    skipped = results.get("skipped_files") or []
    if skipped:
        print(f"skipped {len(skipped)} bad file{plural} (dataset.on_bad_file=skip): "
              + "; ".join(e["error"] for e in skipped))
    for entry in results.get("resume_overrides") or []:
        print(f"resumed after epoch {entry['after_epoch']} with --resume-override: {'; '.join(entry['changes'])}")


def build_task(cfg_model: Mapping, dataset, mode: str = "finetune") -> ClassificationTask:
    """The task the model says it is for (its class's TASK): part segmentation or classification.

    Checks that the model's output size matches the dataset (ValueError naming model.cls_dim).
    """
    if mode == "pretrain":
        return PretrainTask()
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
