"""Load pre-trained weights into a pointclora model: ``load_pretrained``, ``pointclora.weights``'
``load_weights`` (every official layout and prefix, one mismatch message) plus a log of what it
loaded and left out."""
from __future__ import annotations

import logging
import os
from typing import List, Tuple

from torch import nn

from ..weights import load_weights

logger = logging.getLogger(__name__)


def load_pretrained(model: nn.Module, path: str | os.PathLike, strict: bool = False) -> Tuple[List[str], List[str]]:
    """Load the checkpoint at ``path`` into ``model``; returns (missing_keys, unexpected_keys), both
    logged. Any shape mismatch, and with ``strict=True`` any missing or unexpected key, is a
    WeightsMismatch (a ValueError and a KeyError) naming the file; nothing is loaded then."""
    missing, unexpected = load_weights(model, path, strict=strict)
    logger.info("loaded %s into %s: %d tensors", os.fspath(path), type(model).__name__,
                len(model.state_dict()) - len(missing))
    if missing:
        logger.info("missing keys (%d): %s", len(missing), ", ".join(missing))
    if unexpected:
        logger.info("unexpected keys (%d): %s", len(unexpected), ", ".join(unexpected))
    return missing, unexpected
