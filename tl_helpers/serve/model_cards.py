"""Trained models that leave the notebook: a model file, a model card beside it, a predictor.

`export_model(model, folder, card)` writes

- the model: a Keras model as `<name>.keras`; a PyTorch model as its weights
  `<name>.safetensors` (no pickle) plus, in the card, the name of a registered architecture
  (`"efficientnet_lite0+classifier_head"`) whose builder makes the same network again, so
  loading needs no notebook code (old `<name>.pt` state dicts still load, weights only);
- `<name>.onnx`, the same network for ONNX Runtime (tl_helpers/serve/onnx_predict.py runs
  it with numpy and Pillow alone; left out, with a warning, where onnx / tf2onnx are missing);
- for the two-stage LGG pipeline, the segmenter as `<name>_segmenter.keras`;
- `<name>.card.json`, the model card (its keys: tl_helpers/serve/card_schema.py): task,
  classes in order, input size and channels, the preprocessing by name and as numbers
  (`input`), the decision threshold chosen on validation, the temperature, the metrics,
  data source, profile, git commit and a sha256 per model file;
- `README.md`, the card in the Hugging Face format (YAML header, intended use, limitations,
  the dataset's licence and citation).

`load_model(card_path)` checks the card (tl.card_schema), the files' sha256 and the network's
shapes against the card, and returns a `Predictor`: `.predict_proba(images)` takes image
files or arrays (any size, gray, RGB or RGBA) and applies the card's numbers itself. A
`.keras` file loads with every Keras backend (TensorFlow, torch). After writing,
`export_model` loads the files back (the ONNX one too) and checks that they predict what the
model in memory predicts, so a model that would not travel fails at export, not later.

Neither Keras nor PyTorch is imported until a model of that framework is saved or loaded.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import sys
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import __version__, paths
from ..data.images import convert_channels, read_image, resize_image, to_channels
from ..evaluate.explain import keras_output_kind, keras_to_numpy
from ..train.backbones import TORCH_BACKBONES
from ..train.loaders import load_examples
from ..train.torch_training import classifier_head, pick_device
from .card_schema import (CARD_SUFFIX, TASKS, ModelCardError, check_card, check_model_shapes,  # noqa: F401
                          input_steps)
from .onnx_predict import center_crop_pixels, normalize_pixels, probabilities, sha256_of

CARD_VERSION = 2  # 2: input numbers, class_index, sha256, onnx_file, temperature, safetensors
EQUALITY_TOLERANCE = 1e-5  # export's check: the loaded files predict what the model in memory does
ONNX_TOLERANCE = 1e-4  # export's check of the ONNX file against the model in memory (probabilities)


# --- architectures: how a PyTorch state dict becomes a network again ---------------------

ARCHITECTURES: dict[str, Callable[[dict], Any]] = {}


def register_architecture(name: str):
    """Decorator: `builder(options) -> torch.nn.Module` becomes known to `load_model` as `name`.

    `options` is the card's `architecture_options` plus `classes` (the number of classes).
    The builder makes the network with random weights; the state dict fills them.
    Used by tl.model_cards (the built-in "<backbone>+classifier_head" of chapter 5).
    """
    def register(builder):
        ARCHITECTURES[name] = builder
        return builder

    return register


def _backbone_with_classifier_head(backbone: str) -> Callable[[dict], Any]:
    def build(options: dict):
        from torch import nn

        from ..train.backbones import get_backbone

        body = get_backbone(backbone, "torch", weights=None, pooling=None)
        head = classifier_head(body.feature_dim, hidden=int(options.get("hidden", 512)),
                               classes=int(options["classes"]), dropout=float(options.get("dropout", 0.5)))
        return nn.Sequential(body.model, head)

    return build


for _name in TORCH_BACKBONES:  # chapter 5: nn.Sequential(backbone body, tl.torch_training.classifier_head)
    register_architecture(f"{_name}+classifier_head")(_backbone_with_classifier_head(_name))


def build_architecture(name: str, options: dict):
    """The registered network `name` with random weights (eval mode).

    Used by tl.model_cards.load_model (chapter 5's exported models).
    """
    if name not in ARCHITECTURES:
        raise ModelCardError(f"unknown architecture {name!r}; registered: {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[name](dict(options)).eval()


# --- the card ------------------------------------------------------------------------------

def git_commit(folder: str | Path | None = None) -> str | None:
    """`git rev-parse HEAD` of the project (or `folder`); None where git or the repository is absent.

    Used by tl.model_cards.export_model (chapters 1 to 5).
    """
    return paths.ask_git("rev-parse", "HEAD", cwd=folder, timeout=10) or None


def to_jsonable(value):
    """Estimates, reports, numpy numbers and paths as plain JSON (NaN becomes null).

    An `Estimate` (or any named tuple with value/low/high) becomes {"value", "low", "high"}.
    Used by tl.model_cards.export_model and tl.external (chapters 1 to 5).
    """
    if hasattr(value, "_asdict"):
        return {key: to_jsonable(item) for key, item in value._asdict().items()}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer, int)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, Path):
        return str(value)
    return value


def _framework(model) -> str:
    """"keras" or "torch" (a Keras model is also a torch Module on the torch backend: Keras first)."""
    keras = sys.modules.get("keras")
    if keras is not None and isinstance(model, keras.Model):
        return "keras"
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(model, torch.nn.Module):
        return "torch"
    raise ModelCardError(f"cannot export a {type(model).__name__}: give a keras.Model or a torch.nn.Module")


def _save(model, framework: str, stem: Path, card: dict) -> str:
    """Write the model file; returns its name (beside the card)."""
    if framework == "keras":
        path = stem.with_suffix(".keras")
        model.save(path)
        card.setdefault("outputs", keras_output_kind(model))
        return path.name
    import torch

    architecture = card.get("architecture")
    if not architecture:
        raise ModelCardError("a PyTorch model's card needs `architecture`, the registered builder that makes "
                             f"the network again; registered: {sorted(ARCHITECTURES)}")
    card.setdefault("architecture_options", {})
    card.setdefault("outputs", "logits")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    rebuilt = build_architecture(architecture, {**card["architecture_options"], "classes": len(card["classes"])})
    try:
        rebuilt.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelCardError(f"the model does not fit architecture {architecture!r} "
                             f"(options {card['architecture_options']}): {str(error)[:500]}") from None
    from safetensors.torch import save_file

    path = stem.with_suffix(".safetensors")
    save_file({key: value.contiguous() for key, value in state.items()}, str(path))
    return path.name


def _export_onnx(model, framework: str, path: Path, card: dict) -> str | None:
    """The network as ONNX (batch size free); None, with a warning, where the exporter is not installed."""
    height, width = [card["crop"]] * 2 if card.get("crop") else card["input_size"]
    shape = (1, height, width, card["channels"])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if framework == "keras":
                _keras_inference(model, np.zeros(shape, np.float32))  # Keras exports only a model already called
                model.export(str(path), format="onnx", verbose=False)
            else:
                import torch

                was_training = model.training
                device = next(model.parameters()).device
                model.eval()
                try:
                    torch.onnx.export(model, (torch.zeros((1, shape[3], height, width), device=device),), str(path),
                                      input_names=["input"], output_names=["output"], dynamo=False,
                                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
                finally:
                    model.train(was_training)
    except ImportError as error:  # onnx, onnxruntime, tf2onnx: requirements.txt; not on every Colab
        warnings.warn(f"no ONNX export for {path.name}: {error} (pip install -r requirements.txt)")
        return None
    return path.name


def export_model(model, folder: str | Path, card: dict, segmenter=None, verify: bool = True) -> Path:
    """Save `model` and its model card into `folder`; returns the card's path.

    card (a dict; what the chapter knows):
        task: "binary", "multiclass", "segmentation" or "two_stage"; name: the files' stem
        (default "model"); classes: in the model's output order (binary: negative, positive);
        input_size: pixels, one number or [height, width]; channels: 1 or 3 (default 3);
        preprocessing: the backbone's name (`tl.backbones.get_preprocess`), or "standardize";
        crop: centre crop after resizing (chapter 5), default none; threshold: P(positive)
        at or above which a case is called positive, chosen on validation (default 0.5);
        head_crop: {"size": pixels} where the chapter cut each scan to the head first
        (chapter 2: tl.cropping.crop_to_brain at CROP_SIZE), default none; temperature:
        fitted on validation (tl.calibration), default none; dataset: its tl.data name
        (for the README); metrics (a tl.metrics report is fine), metrics_on (the test set,
        in words), data_source, profile: recorded as given.
        PyTorch: architecture (a registered name, e.g. "efficientnet_lite0+classifier_head")
        and architecture_options (e.g. {"hidden": 512, "dropout": 0.5}).
        two_stage: the stage-1 classifier is `model`, the segmenter `segmenter` (Keras), with
        card["segmenter"] = {"input_size", "preprocessing" ("standardize"), "mask_threshold"}
        and stage1_threshold (default: threshold).
    The card (checked by tl.card_schema) written adds the framework, the files and their
    sha256, the preprocessing as numbers (`input`), class_index, the time, versions and the
    git commit; README.md is written beside it. With `verify`, the saved files are loaded
    back and must predict what `model` does (to 1e-5; the ONNX file through onnxruntime to
    1e-4) on two noise images; if not, the files are removed and ModelCardError says why.
    Used by chapters 1 to 5 (the last step of a chapter).
    """
    card = check_card(card, "the card given to export_model")
    if (card["task"] == "two_stage") != (segmenter is not None):
        raise ModelCardError("a two_stage card needs `segmenter=` (the stage-2 model), and only it takes one")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / card["name"]
    card["framework"] = _framework(model)
    card["model_file"] = _save(model, card["framework"], stem, card)
    if segmenter is not None:
        seg_framework = _framework(segmenter)
        if seg_framework != "keras":
            raise ModelCardError("the two-stage segmenter must be a Keras model (chapter 4's ResUNet)")
        card["segmenter"]["framework"] = seg_framework
        card["segmenter"]["model_file"] = _save(segmenter, seg_framework, folder / f"{card['name']}_segmenter",
                                                card["segmenter"])
    card["input"] = input_steps(card, card["framework"])
    if segmenter is not None:
        card["segmenter"]["input"] = input_steps(card["segmenter"], "keras")
    card["onnx_file"] = _export_onnx(model, card["framework"], stem.with_suffix(".onnx"), card)
    if segmenter is not None:  # the segmenter travels as ONNX too (its masks checked like stage 1's)
        card["segmenter"]["onnx_file"] = _export_onnx(segmenter, "keras", folder / f"{card['name']}_segmenter.onnx",
                                                      card["segmenter"])
    files = [card["model_file"], card["onnx_file"], *((card.get("segmenter") or {}).get(key)
                                                      for key in ("model_file", "onnx_file"))]
    card["sha256"] = {name: sha256_of(folder / name) for name in files if name}
    versions = {"python": platform.python_version(), "tl_helpers": __version__}
    for package in (("keras",) if card["framework"] == "keras" else ("torch", "timm")):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    card.update(format_version=CARD_VERSION, git_commit=git_commit(),
                created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), versions=versions)
    card_path = folder / f"{card['name']}{CARD_SUFFIX}"
    card_path.write_text(json.dumps(to_jsonable(card), indent=1, allow_nan=False) + "\n")
    if verify:
        try:
            _verify_export(model, segmenter, card_path)
        except ModelCardError:  # a card that does not give the model back must not be left to be used
            for name in (card_path.name, *card["sha256"]):
                (folder / name).unlink(missing_ok=True)
            raise
    from .hub_readme import write_readme

    write_readme(card_path)
    return card_path


def _verify_export(model, segmenter, card_path: Path) -> None:
    """The files, loaded back, must give what the models in memory give."""
    loaded = load_model(card_path)
    rng = np.random.default_rng(0)
    height, width = loaded.input_size
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(2)]
    pairs = [(loaded, model)]
    if segmenter is not None:
        pairs.append((loaded.segmenter, segmenter))
    for predictor, original in pairs:
        batch = predictor.prepare(images)
        fresh = predictor._forward(batch, model=original)
        again = predictor._forward(batch)
        if fresh.shape != again.shape or not np.allclose(fresh, again, atol=EQUALITY_TOLERANCE, rtol=0):
            gap = f"largest difference {np.abs(fresh - again).max():.3g}" if fresh.shape == again.shape else \
                f"output shapes {fresh.shape} and {again.shape}"
            raise ModelCardError(f"{predictor.card_path}: the saved model predicts differently from the model in "
                                 f"memory ({gap}); a layer may not save its weights or configuration, or the model "
                                 "has randomness at inference")
        _check_outputs(predictor, again)
    if loaded.card.get("onnx_file"):
        _verify_onnx(loaded, images)
    if segmenter is not None and loaded.card["segmenter"].get("onnx_file"):
        _verify_segmenter_onnx(loaded, images)


def _verify_segmenter_onnx(loaded: "Predictor", images: list) -> None:
    """The segmenter's ONNX file, run by onnxruntime on the prepared slices, must draw the Keras masks."""
    import onnxruntime

    segmenter = loaded.segmenter
    batch = np.asarray(segmenter.prepare(images), np.float32)
    expected = segmenter._forward(batch)
    path = loaded.card_path.parent / loaded.card["segmenter"]["onnx_file"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    found = np.asarray(session.run(None, {session.get_inputs()[0].name: batch})[0])
    found = found[..., 0] if found.ndim == 4 else found
    if found.shape != expected.shape or not np.allclose(found, expected, atol=ONNX_TOLERANCE, rtol=0):
        gap = f"largest difference {np.abs(found - expected).max():.3g}" if found.shape == expected.shape else \
            f"output shapes {found.shape} and {expected.shape}"
        raise ModelCardError(f"{loaded.card_path}: the segmenter's ONNX file {path.name} draws other masks than "
                             f"the Keras segmenter ({gap}, allowed {ONNX_TOLERANCE})")


def _verify_onnx(loaded: "Predictor", images: list) -> None:
    """The ONNX file, run by onnxruntime from the card's numbers, must give the framework's probabilities."""
    from .onnx_predict import OnnxPredictor

    expected = loaded._forward(loaded.prepare(images, head_crop=False))  # the ONNX predictor takes crops as given
    found = OnnxPredictor(loaded.card_path).predict_proba(images, calibrated=False)
    if found.shape != expected.shape or not np.allclose(found, expected, atol=ONNX_TOLERANCE, rtol=0):
        gap = f"largest difference {np.abs(found - expected).max():.3g}" if found.shape == expected.shape else \
            f"output shapes {found.shape} and {expected.shape}"
        raise ModelCardError(f"{loaded.card_path}: the ONNX file {loaded.card['onnx_file']} predicts differently from "
                             f"the {loaded.framework} model ({gap}, allowed {ONNX_TOLERANCE})")


def _check_outputs(predictor: "Predictor", outputs: np.ndarray) -> None:
    card = predictor.card
    if card["task"] == "segmentation":
        if outputs.ndim != 3:
            raise ModelCardError(f"{predictor.card_path}: a segmenter must output one mask per image, got "
                                 f"shape {outputs.shape}")
        return
    if outputs.ndim != 2 or outputs.shape[1] != len(card["classes"]):
        raise ModelCardError(f"{predictor.card_path}: the model outputs shape {outputs.shape[1:]}, the card "
                             f"names {len(card['classes'])} classes {card['classes']}")


# --- loading ---------------------------------------------------------------------------------

def read_card(card_path: str | Path) -> tuple[dict, Path]:
    """(card, path) from a card file, or from a folder holding exactly one `*.card.json`.

    Used by tl.model_cards.load_model and the tl.predict / tl.external command lines.
    """
    path = Path(card_path)
    if path.is_dir():
        found = sorted(path.glob(f"*{CARD_SUFFIX}"))
        if len(found) != 1:
            raise ModelCardError(f"{path} holds {len(found)} model cards (*{CARD_SUFFIX}); name the one to use")
        path = found[0]
    if not path.is_file():
        raise ModelCardError(f"model card not found: {path}")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelCardError(f"cannot read model card {path}: {error}") from None
    if not isinstance(card, dict):
        raise ModelCardError(f"model card {path} is not a JSON object; was it written by tl.model_cards.export_model?")
    missing = [key for key in ("task", "framework", "model_file", "classes", "input_size", "preprocessing")
               if key not in card]
    if missing:
        raise ModelCardError(f"model card {path} lacks {missing}; was it written by tl.model_cards.export_model?")
    card = check_card(card, path, loading=True)
    if card["task"] == "two_stage" and "input" not in card["segmenter"]:  # an old card: numbers from the name
        card["segmenter"]["input"] = input_steps(card["segmenter"], card["segmenter"].get("framework", "keras"), path)
    return card, path


def check_files(card: dict, card_path: Path) -> None:
    """Every model file the card names: present, and with the sha256 written at export (when the card has them).

    Used by tl.model_cards.load_model.
    """
    for name, expected in (card.get("sha256") or {}).items():
        file = card_path.parent / name
        if not file.is_file():
            raise ModelCardError(f"model file not found: {file} (named by the card {card_path})")
        found = sha256_of(file)
        if found != expected:
            raise ModelCardError(f"{card_path}: `sha256` of {name} is {expected} in the card, but the file's is "
                                 f"{found}: the file was changed or replaced after export; export the model again")


def load_model(card_path: str | Path, device: str | None = None) -> "Predictor":
    """The model a card describes, ready to predict: a `Predictor`.

    `card_path` is the `.card.json` file (or a folder holding one). PyTorch models run on
    `device` (default: the first CUDA GPU if there is one, else the CPU); Keras models
    where their backend puts them. Used by chapters 1 to 5 and the tl.predict / tl.external
    command lines.
    """
    card, path = read_card(card_path)
    check_files(card, path)
    predictor = Predictor(card, path, device)
    _check_shapes(predictor)
    if card["task"] == "two_stage":
        stage2 = dict(card["segmenter"], task="segmentation", classes=["background", "tumour"])
        predictor.segmenter = Predictor(stage2, path, device)
        _check_shapes(predictor.segmenter)
    return predictor


def _check_shapes(predictor: "Predictor") -> None:
    """The loaded network's input and output shapes against its card (tl.card_schema.check_model_shapes)."""
    model, card = predictor.model, predictor.card
    if predictor.framework == "keras":
        check_model_shapes(card, predictor.card_path, tuple(model.input_shape), tuple(model.output_shape))
        return
    import torch

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    channels = convs[0].in_channels if convs else None
    if channels is not None and channels != card["channels"]:
        check_model_shapes(card, predictor.card_path, (None, channels, None, None), (None, len(card["classes"])))
    size = [card["crop"]] * 2 if card.get("crop") else card["input_size"]
    batch = torch.zeros((1, card["channels"], *size), device=predictor.device)
    with torch.no_grad():
        output = model(batch)
    check_model_shapes(card, predictor.card_path, (None, card["channels"], *size), (None, *output.shape[1:]))


def _load_file(card: dict, card_path: Path, device):
    file = card_path.parent / card["model_file"]
    if not file.is_file():
        raise ModelCardError(f"model file not found: {file} (named by the card {card_path})")
    if card["framework"] == "keras":
        import keras

        from ..evaluate import uncertainty  # noqa: F401 - registers MCDropout, which chapter 1's heads use

        try:
            return keras.saving.load_model(file, compile=False)
        except Exception as error:  # noqa: BLE001 - the file, named, is what the reader needs
            raise ModelCardError(f"cannot load Keras model {file}: {error}") from None
    import torch

    options = {**card.get("architecture_options", {}), "classes": len(card["classes"])}
    model = build_architecture(card.get("architecture"), options)
    import pickle

    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file), device="cpu")
        else:  # an old export: a pickled state dict, read as tensors only
            state = torch.load(file, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except pickle.UnpicklingError:  # torch's own message advises weights_only=False: never here
        raise ModelCardError(f"refused to load {file}: it holds pickled Python objects besides tensors, which "
                             "could run code when loaded. Export the model again with "
                             "tl.model_cards.export_model (it saves the state dict only)") from None
    except (RuntimeError, OSError, EOFError, ValueError) as error:
        raise ModelCardError(f"cannot load the state dict {file} into {card.get('architecture')!r}: "
                             f"{str(error)[:500]}") from None
    return model.to(device).eval()


def _keras_inference(model, batch):
    """model(batch) in inference mode, without recording gradients on the torch backend."""
    import keras

    if keras.backend.backend() == "torch":
        import torch

        with torch.no_grad():
            return model(batch, training=False)
    return model(batch, training=False)


@dataclass
class TwoStageResult:
    """The two-stage pipeline on a batch: stage-1 P(positive), which images were flagged, masks.

    masks: (N, H, W) probabilities at the segmenter's size; zero on images not flagged.
    Used by chapter 4 and tl.predict (what Predictor.run_pipeline returns).
    """

    p_positive: np.ndarray
    flagged: np.ndarray
    masks: np.ndarray


class Predictor:
    """A loaded model with its card: predictions from image files or arrays, preprocessing included.

    Attributes: card, card_path, framework, model, classes, input_size (height, width),
    channels, threshold, temperature (None: the card has none), steps (the card's `input`
    numbers), segmenter (the stage-2 Predictor of a two-stage card, else None).
    Images: paths (read with tl.images, any format) or arrays (HxW, HxWx3, HxWx4; uint8 or
    0..255 floats), each cut to the head first where the card says so (`head_crop`), resized
    to the input size as in training, centre-cropped and normalised with the card's numbers.
    Used by chapters 1 to 5 and the tl.predict / tl.external command lines.
    """

    def __init__(self, card: dict, card_path: Path, device: str | None = None):
        self.card = card
        self.card_path = Path(card_path)
        self.framework = card["framework"]
        self.classes = list(card["classes"])
        self.input_size = tuple(int(v) for v in card["input_size"])
        self.channels = int(card.get("channels", 3))
        self.crop = card.get("crop")
        self.threshold = card.get("threshold")
        self.temperature = card.get("temperature")
        self.steps = card["input"]
        self.segmenter: Predictor | None = None
        self.device = pick_device(device) if self.framework == "torch" else None
        self.model = _load_file(card, self.card_path, self.device)

    def __repr__(self) -> str:
        return (f"Predictor({self.card.get('name')!r}, {self.card['task']}, {self.framework}, "
                f"classes={self.classes}, input={self.input_size}, threshold={self.threshold})")

    # images -> model-ready batch
    def load_images(self, images: Sequence, head_crop: bool = True) -> np.ndarray:
        """float32 (N, H, W, C) pixels 0..255 at the input size, before preprocessing.

        `head_crop=False` leaves out the card's crop to the head (images already cropped).
        """
        images = list(images)
        if head_crop and self.steps.get("head_crop"):
            images = [self._head_crop(item) for item in images]
        paths = [i for i, item in enumerate(images) if isinstance(item, (str, Path))]
        loaded = dict(zip(paths, load_examples([images[i] for i in paths], self.input_size, self.channels)))
        out = []
        for index, item in enumerate(images):
            if index in loaded:
                out.append(loaded[index][0])
            else:
                array = to_channels(np.asarray(item), None)
                out.append(convert_channels(resize_image(array, self.input_size), self.channels).astype(np.float32))
        if not out:
            raise ValueError("no images given")
        return np.stack(out)

    def _head_crop(self, item) -> np.ndarray:
        """Chapter 2's crop to the head (tl.cropping.crop_to_brain at the card's size), before resizing."""
        from ..techniques.cropping import crop_to_brain

        options = dict(self.steps["head_crop"])
        size = int(options.pop("size"))
        image = read_image(item, channels=None) if isinstance(item, (str, Path)) else to_channels(np.asarray(item), None)
        return crop_to_brain(image, size=size, **options)

    def prepare(self, images: Sequence, head_crop: bool = True):
        """The model's input for `images`: Keras NHWC float32 numpy; PyTorch an NCHW tensor."""
        pixels = self.load_images(images, head_crop)
        if self.crop:
            pixels = np.stack([center_crop_pixels(image, self.crop) for image in pixels])
        batch = normalize_pixels(pixels, self.steps)
        if self.steps.get("layout") == "NCHW":
            import torch

            return torch.from_numpy(np.ascontiguousarray(batch.transpose(0, 3, 1, 2)))
        return batch

    def _forward(self, batch, model=None) -> np.ndarray:
        """Probabilities (N, K), or masks (N, H, W) for a segmenter, from a prepared batch."""
        model = self.model if model is None else model
        if self.framework == "torch":
            import torch

            was_training = model.training
            device = next(model.parameters()).device
            model.eval()
            try:
                with torch.no_grad():
                    output = model(batch.to(device)).float()
                    if self.card.get("outputs", "logits") == "logits":
                        output = torch.softmax(output, dim=1) if output.shape[1] > 1 else torch.sigmoid(output)
                    output = output.cpu().numpy()
            finally:
                model.train(was_training)
        else:
            import keras

            output = keras_to_numpy(_keras_inference(model, batch))
            if self.card.get("outputs") == "logits":
                output = keras_to_numpy(
                    keras.ops.softmax(output, axis=-1) if output.shape[-1] > 1 else keras.ops.sigmoid(output))
        output = output.astype(np.float64)
        if self.card["task"] == "segmentation":
            return output[..., 0] if output.ndim == 4 else output
        if output.ndim == 2 and output.shape[1] == 1:  # one sigmoid unit: P(positive)
            output = np.concatenate([1.0 - output, output], axis=1)
        return output

    # predictions
    def predict_proba(self, images: Sequence, batch_size: int = 32, calibrated: bool = False) -> np.ndarray:
        """(N, K) class probabilities in the card's class order; a segmenter: (N, H, W) masks.

        `calibrated`: with the card's temperature applied (`calibrate`); the default gives the
        model's own probabilities, the ones the card's threshold was chosen on.
        """
        images = list(images)
        parts = [self._forward(self.prepare(images[start:start + batch_size]))
                 for start in range(0, len(images), batch_size)]
        output = np.concatenate(parts)
        return self.calibrate(output) if calibrated else output

    def calibrate(self, probabilities_: np.ndarray) -> np.ndarray:
        """Probabilities with the logits divided by the card's temperature (unchanged when it has none)."""
        if self.temperature is None or self.card["task"] == "segmentation":
            return probabilities_
        return probabilities(probabilities_, "probabilities", self.temperature)

    def labels_from_proba(self, probabilities: np.ndarray) -> list[str]:
        """Class names: P(positive) >= the card's threshold for binary cards, else the most probable class."""
        probabilities = np.asarray(probabilities)
        if self.card["task"] in ("binary", "two_stage"):
            positive = probabilities[:, 1] >= float(self.threshold)
            return [self.classes[int(p)] for p in positive]
        return [self.classes[int(i)] for i in probabilities.argmax(axis=1)]

    def predict(self, images: Sequence, batch_size: int = 32) -> list[str]:
        """The predicted class name of each image, at the card's threshold."""
        return self.labels_from_proba(self.predict_proba(images, batch_size))

    def run_pipeline(self, images: Sequence, batch_size: int = 32) -> TwoStageResult:
        """Two-stage card: stage 1 on every image, then the segmenter on the flagged ones only."""
        if self.segmenter is None:
            raise ValueError(f"{self.card_path} is a {self.card['task']} card, not a two-stage one")
        images = list(images)
        p_positive = self.predict_proba(images, batch_size)[:, 1]
        flagged = p_positive >= float(self.card["stage1_threshold"])
        masks = np.zeros((len(images), *self.segmenter.input_size), np.float64)
        chosen = np.flatnonzero(flagged)
        if len(chosen):
            masks[chosen] = self.segmenter.predict_proba([images[i] for i in chosen], batch_size)
        return TwoStageResult(p_positive, flagged, masks)

    def predict_masks(self, images: Sequence, batch_size: int = 32) -> np.ndarray:
        """(N, H, W) mask probabilities at the segmenter's size; two-stage: empty where not flagged."""
        if self.card["task"] == "segmentation":
            return self.predict_proba(images, batch_size)
        return self.run_pipeline(images, batch_size).masks

    @property
    def mask_threshold(self) -> float:
        """The probability at which a mask pixel counts as tumour (card's mask_threshold, else 0.5)."""
        card = self.card["segmenter"] if self.segmenter is not None else self.card
        return float(card.get("mask_threshold", 0.5))

