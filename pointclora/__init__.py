"""pointclora: parameter-efficient fine-tuning of pre-trained point-cloud transformers."""
import importlib.abc as _abc
import importlib.util as _util
import os as _os
import sys as _sys

__version__ = "0.1.0"

# `datasets/` is installed as pointclora.datasets (setup.py's package_dir). In a source checkout used
# without an editable install (tools/*.py put the checkout first on sys.path, beside a `pip install .`)
# it sits next to the package: this finder, consulted after the normal ones, maps that one name.
# It is registered before the imports below, which need pointclora.datasets.
_CHECKOUT_DATASETS = _os.path.join(_os.path.dirname(_os.path.dirname(_os.path.abspath(__file__))), "datasets")


class _CheckoutDatasetsFinder(_abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "pointclora.datasets" or not _os.path.isfile(_os.path.join(_CHECKOUT_DATASETS, "__init__.py")):
            return None
        return _util.spec_from_file_location(name, _os.path.join(_CHECKOUT_DATASETS, "__init__.py"),
                                             submodule_search_locations=[_CHECKOUT_DATASETS])


if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "datasets")):
    if not any(isinstance(f, _CheckoutDatasetsFinder) for f in _sys.meta_path):
        _sys.meta_path.append(_CheckoutDatasetsFinder())

from .factory import build_model_from_config  # noqa: E402

__all__ = ["__version__", "build_model_from_config"]
