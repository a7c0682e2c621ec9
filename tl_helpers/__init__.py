"""tl_helpers: the shared helper package of *Transfer learning for medical imaging*.

One module per concern, so that chapter notebooks read like prose with code:

- `images`: read any dataset image as a uint8 array, with clear errors;
- `data`: the five datasets (Kaggle slug, layout, counts), locate / verify / download /
  synthesize;
- `repro`: one call that makes a run deterministic;
- `runcard`: what a run was (profile, data, versions, hardware, time, metrics);
- `profiles`: the smoke / cpu / paper parameter sets;
- `runner`: run notebooks headless with papermill;
- `backbones`, `generators`, `features`, `callbacks`, `plotting`: the transfer-learning toolkit.

Modules are imported on first use, so `import tl_helpers as tl` stays fast and does not
pull in TensorFlow or PyTorch until a chapter needs them.
"""
import importlib.util
import sys
from importlib import import_module

__version__ = "0.1.0"


def _import_triton_before_tensorflow() -> None:
    """Load triton now, while TensorFlow is not loaded yet.

    Measured here (TensorFlow 2.21, torch 2.14.1): importing triton, which torchvision,
    timm and torch's deterministic mode pull in, after TensorFlow crashes Python with a
    segmentation fault; the other order works. It costs about 0.2 s, once.
    """
    if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import_module("triton")


_import_triton_before_tensorflow()

_MODULES = {"images", "augment", "data", "domains", "imbalance", "synthetic", "repro", "runcard", "profiles", "runner", "book",
            "notebook", "splits", "backbones", "generators", "features", "callbacks", "plotting", "metrics", "segmentation",
            "torch_training", "uncertainty",
            "cropping", "near_duplicates", "oversampling", "partial_finetune"}


def __getattr__(name):
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
