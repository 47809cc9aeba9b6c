"""Point-cloud transformer backbones (Point-MAE, Point-BERT), method variants (DAPT, PointGST, IDPT), heads,
pre-training model, checkpoints."""
from .build import MODELS, build_model, config_keys, model_class, register_model
from .dapt import PointMAEDAPT
from .pointgst import PointMAEPGST
from ..weights import WeightsMismatch, load_weights, read_checkpoint, remap_state_dict
from .checkpoint import load_pretrained
from .grouping import Group
from .idpt import PointMAEIDPT
from .layers import Attention, Block, DropPath, Mlp, TransformerDecoder, TransformerEncoder
from .part_seg import PointMAEPartSeg
from .patch_embed import Encoder
from .point_bert import PointBERT
from .point_mae import PointMAE
from .point_mae_pretrain import PointMAEPretrain

__all__ = [
    "MODELS", "build_model", "config_keys", "model_class", "register_model",
    "load_pretrained", "load_weights", "remap_state_dict", "read_checkpoint", "WeightsMismatch",
    "Group", "Encoder", "Attention", "Block", "DropPath", "Mlp", "TransformerDecoder", "TransformerEncoder",
    "PointMAE", "PointBERT", "PointMAEPartSeg", "PointMAEPretrain", "PointMAEDAPT", "PointMAEPGST", "PointMAEIDPT",
]
