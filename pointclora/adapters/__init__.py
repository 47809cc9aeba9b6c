"""Parameter-efficient adapters: LoRA, CLoRA (base-space sharing + SADE), linear probing, CoTo,
and the methods that change the block forward (DAPT, PointGST, IDPT; see adapters/methods.py)."""
from .base import AdapterLayer
from .clora import CLoRABank, CLoRALinear, sade_bank, sade_direct, sade_loss
from .config import AdapterConfig
from .coto import CoToScheduler, group_adapters_by_block
from .inject import (
    adapter_layers,
    adapter_regularization,
    adapter_state_dict,
    adapters_disabled,
    apply_adapters,
    count_parameters,
    get_adapter_config,
    load_adapter,
    merge_adapters,
    merge_and_unload,
    read_adapter_config,
    save_adapter,
    unmerge_adapters,
)
from .lora import LoRALinear
from .methods import METHOD_CONFIGS, MethodConfig, register_method
from .dapt import DAPTConfig  # noqa: E402  (registers method 'dapt')
from .pointgst import PointGSTConfig, graph_basis  # noqa: E402  (registers method 'pointgst')
from .idpt import IDPTConfig  # noqa: E402  (registers method 'idpt')

__all__ = [
    "AdapterConfig",
    "AdapterLayer",
    "CLoRABank",
    "CLoRALinear",
    "CoToScheduler",
    "DAPTConfig",
    "IDPTConfig",
    "METHOD_CONFIGS",
    "MethodConfig",
    "PointGSTConfig",
    "graph_basis",
    "register_method",
    "LoRALinear",
    "adapter_layers",
    "adapter_regularization",
    "adapter_state_dict",
    "adapters_disabled",
    "apply_adapters",
    "count_parameters",
    "get_adapter_config",
    "group_adapters_by_block",
    "load_adapter",
    "merge_adapters",
    "merge_and_unload",
    "read_adapter_config",
    "sade_bank",
    "sade_direct",
    "sade_loss",
    "save_adapter",
    "unmerge_adapters",
]
