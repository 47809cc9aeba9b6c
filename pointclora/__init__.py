"""pointclora: parameter-efficient fine-tuning of pre-trained point-cloud transformers."""
from .factory import build_model_from_config

__version__ = "0.1.0"
__all__ = ["__version__", "build_model_from_config"]
