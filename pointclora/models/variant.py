"""What the Point-MAE method variants share (DAPT, IDPT and PointGST in models/dapt.py, idpt.py,
pointgst.py): built from a backbone with the method's structural fields, their own parameters drawn
from the method config's seed."""
from ..adapters.methods import backbone_kwargs, copy_backbone_state
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
