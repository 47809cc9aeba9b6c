"""Behaviour shared by every pointclora model: what it says about itself, weight-decay groups and
frozen BatchNorm.

A model describes itself (timm's ``get_classifier`` / ``group_matcher`` idea), so that no code
outside ``models`` names its modules: ``TASK`` (what the engine trains it for), ``HEAD_MODULES``
(the task head, trained with the adapters: the default ``adapter.trainable_modules``),
``BLOCKS`` (where its transformer blocks are: CoTo's groups), ``REGIONS`` (its first-level
modules by profiler category) and ``ADAPTER_TARGETS`` (the Linear layers LoRA / CLoRA adapt when
``adapter.target_modules`` is not set).

Frozen parts must stay frozen: when the parameters of a BatchNorm layer are all frozen (adapter
tuning freezes the backbone), its running statistics are frozen too. The public PEFT forks keep
updating them because the whole model stays in train mode; here ``train()`` puts such layers back
into eval mode, so the statistics a checkpoint was trained with are the ones used.
"""
from typing import Dict, List, Set, Tuple

from torch import nn

TASKS = ("classification", "part_segmentation", "pretrain")
# The classification head of the Point-MAE family (PointMAE and its method variants): the official
# fine-tuning trains the head and the class token / its position embedding besides the adapters.
# It is those models' HEAD_MODULES and AdapterConfig's default ``trainable_modules``.
CLASSIFICATION_HEAD: Tuple[str, ...] = ("cls_head_finetune", "cls_token", "cls_pos")


def without_weight_decay(name: str, param: nn.Parameter) -> bool:
    """The official rule (Point-MAE ``add_weight_decay``): biases and every parameter with <= 1
    dimension (norm weights) train without weight decay."""
    return param.ndim <= 1 or name.endswith(".bias")


class FrozenBNMixin:
    """Mixin for ``nn.Module`` models: ``no_weight_decay``, ``frozen_bn_modules``,
    ``freeze_backbone_bn`` and a ``train`` that keeps frozen BatchNorm layers in eval mode, plus the
    model's description (class attributes, overridden per model)."""

    TASK: str = "classification"  # one of TASKS
    HEAD_MODULES: Tuple[str, ...] = ()  # module / parameter names of the task head
    BLOCKS: Tuple[str, ...] = ("blocks.blocks",)  # ModuleLists holding the transformer blocks, in order
    REGIONS: Dict[str, str] = {}  # first-level module name -> profiler category (pointclora.profiler.CATEGORIES)
    # adapter method -> the Linear layers it adapts by default (AdapterConfig.target_modules). CLoRA's
    # paper puts one low-rank module on the (normalised) input of the attention and one on the input
    # of the MLP of every block: the inputs of attn.qkv and mlp.fc1 in every pointclora block.
    ADAPTER_TARGETS: Dict[str, Tuple[str, ...]] = {"clora": ("attn.qkv", "mlp.fc1"), "lora": ("attn.qkv",)}

    def transformer_blocks(self) -> List[Tuple[str, nn.Module]]:
        """(dotted name, module) of every transformer block, in forward order."""
        return [(f"{prefix}.{i}", block) for prefix in self.BLOCKS
                for i, block in enumerate(self.get_submodule(prefix))]

    def no_weight_decay(self) -> Set[str]:
        """Names of parameters the official recipe trains without weight decay: biases and every
        parameter with <= 1 dimension (Point-MAE ``add_weight_decay``)."""
        return {name for name, p in self.named_parameters() if without_weight_decay(name, p)}

    def frozen_bn_modules(self) -> List[str]:
        """Names of BatchNorm modules whose affine parameters all have ``requires_grad=False``."""
        names = []
        for name, module in self.named_modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                params = list(module.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    names.append(name)
        return names

    def freeze_backbone_bn(self) -> List[str]:
        """Put every frozen BatchNorm module into eval mode now (running stats stop updating).

        Called automatically by ``train(True)``; call it yourself after freezing parameters of a
        model that is already in train mode. Returns the names of the modules it froze.
        """
        names = self.frozen_bn_modules()
        modules = dict(self.named_modules())
        for name in names:
            modules[name].eval()
        return names

    # False: frozen BatchNorm layers train like the others (the official PEFT scripts; the peer
    # methods' ``freeze_bn_stats: false`` sets it)
    freeze_frozen_bn = True

    def train(self, mode: bool = True):
        nn.Module.train(self, mode)
        if mode and self.freeze_frozen_bn:
            self.freeze_backbone_bn()
        return self
