"""What the Point-MAE method variants share (DAPT, IDPT and PointGST in models/dapt.py, idpt.py,
pointgst.py): built from a backbone with the method's structural fields, their own parameters drawn
from the method config's seed."""
from typing import Any, Dict, List

from torch import nn

from ..adapters.patterns import is_trainable_name
from ..weights import load_weights
from .point_mae import PointMAE


class PointMAEVariant(PointMAE):
    """A Point-MAE that a method (``METHOD``) changes; a subclass defines ``reset_adapter_parameters(seed)``."""

    def reset_adapter_parameters(self, seed: int = 0) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset_adapter_parameters(seed)")

    @classmethod
    def from_backbone(cls, backbone: PointMAE, config) -> "PointMAEVariant":
        """A variant holding a copy of the backbone's tensors (the head too when its width fits), on the
        backbone's device and dtype and in its train / eval mode; the method's structural fields come from
        ``config``, its own parameters are drawn from ``config.seed``."""
        w = next(backbone.parameters())
        fields = {k: getattr(config, k) for k in config.structural_fields}
        model = cls(**backbone_kwargs(backbone), **fields).to(device=w.device, dtype=w.dtype)
        model.reset_adapter_parameters(config.seed)
        copy_backbone_state(model, backbone)
        return model.train(backbone.training)


def copy_backbone_state(variant: nn.Module, backbone: nn.Module) -> List[str]:
    """Copy every backbone tensor whose key and shape the variant shares (``load_weights``); returns
    the keys left out (a task head, the backbone's HEAD_MODULES, whose input width changed). A
    backbone key the variant lacks is an error, and so is a changed shape outside the head."""
    own = variant.state_dict()
    src = backbone.state_dict()
    lacking = [k for k in src if k not in own]
    if lacking:
        raise ValueError(f"{type(variant).__name__} has no place for backbone tensors {lacking[:5]}")
    skipped = [k for k, v in src.items() if v.shape != own[k].shape]
    bad = [k for k in skipped if not is_trainable_name(k, list(getattr(backbone, "HEAD_MODULES", ())))]
    if bad:
        raise ValueError(f"backbone tensors {bad[:5]} do not fit {type(variant).__name__}")
    kept = {k: v for k, v in src.items() if k not in skipped}
    load_weights(variant, f"the {type(backbone).__name__} backbone", state=kept)
    return skipped


def backbone_kwargs(backbone: nn.Module) -> Dict[str, Any]:
    """Constructor keywords of a PointMAE backbone, read from the built model (apply_method has
    checked its class)."""
    last = backbone.blocks.blocks[-1].drop_path
    # the schedule is linspace(0, rate, depth): the last block holds the rate itself
    rate = getattr(last, "drop_prob", 0.0)
    return dict(trans_dim=backbone.trans_dim, depth=backbone.depth, drop_path_rate=rate, cls_dim=backbone.cls_dim,
                num_heads=backbone.num_heads, group_size=backbone.group_size, num_group=backbone.num_group,
                encoder_dims=backbone.encoder_dims, fps_skip_near_origin=backbone.group_divider.skip_near_origin,
                attention=backbone.attention)
