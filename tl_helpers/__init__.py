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
from importlib import import_module

__version__ = "0.1.0"

_MODULES = {"images", "augment", "data", "synthetic", "repro", "runcard", "profiles", "runner", "book",
            "notebook", "backbones", "generators", "features", "callbacks", "plotting", "metrics"}


def __getattr__(name):
    if name in _MODULES:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
