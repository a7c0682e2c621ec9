"""tl_helpers: the shared helper package of *Transfer learning for medical imaging*.

Chapters call every helper the same way, `tl.<module>.<name>` after `import tl_helpers as tl`
(the datasets: `tl.data.<name>`). Modules live in rooms by concern; a room imports only
from rooms above it in this list, never from one below:

| room | modules | what it holds |
|---|---|---|
| `paths` | | project root, run folders, caches |
| `data/` | `tl.data` (registry, tables, integrity, downloads), `images`, `synthetic`, `splits` | the five datasets: where, what, intact?, tables of files, decoding, look-alikes, splits |
| `train/` | `augment`, `loaders`, `weights`, `lite0`, `backbones`, `features`, `partial_finetune`, `keras_training`, `torch_training` | turning images into a trained model, in Keras and PyTorch |
| `evaluate/` | `metrics`, `uncertainty`, `plotting`, `calibration`, `explain`, `near_duplicates`, `label_noise`, `shortcuts`, `protocol` | the evaluation protocol (threshold and temperature on validation, the test split once, calibration, Grad-CAM cases); numbers with intervals (Dice, bootstraps), MC dropout, figures, calibration, Grad-CAM, leakage, label-noise and shortcut audits |
| `techniques/` | `fine_tuning`, `cropping`, `oversampling`, `imbalance`, `domains`, `segmentation` | what one chapter teaches |
| `serve/` | `model_cards`, `card_schema`, `hub_readme`, `exports`, `predict`, `onnx_predict`, `external` | the trained model outside the notebook: model cards (checked, with a Hugging Face README), export with a reload check, prediction (also with ONNX Runtime alone) and evaluation on any folder |
| `workflow/` | `notebook`, `runcard`, `timing`, `repro`, `profiles`, `runner`, `build`, `captions`, `backlinks`, `floors`, `cli` | running chapters (one stopwatch for where the time went), building the book (with back-links from helpers to the chapters that call them); the smoke floors; the `tl` command |

Modules are imported on first use, so `import tl_helpers as tl` stays fast and pulls in
neither TensorFlow nor PyTorch until a chapter needs one; the PyTorch path (`loaders`,
`augment`, `backbones`, `torch_training`, `metrics`, `plotting`) never imports Keras.
CONTRIBUTING.md has the same map and the project's conventions.
"""
import importlib.util
import sys
from importlib import import_module

__version__ = "0.1.0"

# short name -> module, room by room (the one place that says where a module lives)
MODULES = {
    "paths": "paths",
    "data": "data", "images": "data.images", "synthetic": "data.synthetic", "splits": "data.splits",
    "augment": "train.augment", "loaders": "train.loaders", "weights": "train.weights", "lite0": "train.lite0",
    "backbones": "train.backbones", "features": "train.features", "partial_finetune": "train.partial_finetune",
    "keras_training": "train.keras_training", "torch_training": "train.torch_training",
    "metrics": "evaluate.metrics", "uncertainty": "evaluate.uncertainty", "plotting": "evaluate.plotting",
    "calibration": "evaluate.calibration", "explain": "evaluate.explain",
    "near_duplicates": "evaluate.near_duplicates", "shortcuts": "evaluate.shortcuts",
    "label_noise": "evaluate.label_noise",
    "cropping": "techniques.cropping", "oversampling": "techniques.oversampling",
    "imbalance": "techniques.imbalance", "domains": "techniques.domains",
    "segmentation": "techniques.segmentation", "fine_tuning": "techniques.fine_tuning",
    "protocol": "evaluate.protocol",
    "model_cards": "serve.model_cards", "exports": "serve.exports", "predict": "serve.predict",
    "external": "serve.external", "card_schema": "serve.card_schema",
    "onnx_predict": "serve.onnx_predict", "hub_readme": "serve.hub_readme",
    "notebook": "workflow.notebook", "runcard": "workflow.runcard", "repro": "workflow.repro",
    "profiles": "workflow.profiles", "runner": "workflow.runner", "build": "workflow.build",
    "timing": "workflow.timing", "backlinks": "workflow.backlinks", "cli": "workflow.cli",
    "captions": "workflow.captions", "floors": "workflow.floors",
}
ROOMS = ("paths", "data", "train", "evaluate", "techniques", "serve", "workflow")  # lowest first


def _import_triton_before_tensorflow() -> None:
    """Load triton now, while TensorFlow is not loaded yet.

    Measured here (TensorFlow 2.21, torch 2.14.1): importing triton, which torchvision,
    timm and torch's deterministic mode pull in, after TensorFlow crashes Python with a
    segmentation fault; the other order works. It costs about 0.2 s, once.
    """
    if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import_module("triton")


_import_triton_before_tensorflow()


def __getattr__(name):
    if name in MODULES:
        module = import_module(f"{__name__}.{MODULES[name]}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}; its modules: {', '.join(MODULES)}")


def __dir__():
    return sorted([*globals(), *MODULES])
