"""Where pretrained weights come from: cached files, quick downloads, clear errors; ImageNet class names."""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np


def check_import_order() -> None:
    """Stop with an explanation instead of a segfault when TensorFlow came before triton.

    Used by tl.backbones (chapters 1, 2, 4 and 5).
    """
    # sys.modules["tensorflow"] = None means TensorFlow is blocked, not loaded
    if (sys.modules.get("tensorflow") is not None and "triton" not in sys.modules
            and importlib.util.find_spec("triton") is not None):
        raise RuntimeError(
            "TensorFlow was imported before triton (a torch dependency); importing "
            "torchvision now would crash Python with a segmentation fault. Import "
            "tl_helpers.backbones (or torchvision) before keras/tensorflow, e.g. at the top "
            "of the notebook, or restart and do so.")



DOWNLOAD_TIMEOUT_S = 10.0  # a hub that answers does so within seconds; none here answers at all


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights that are neither cached nor downloadable; the message says how to fix it.

    Used by tl.backbones.get_backbone (chapters 1, 2, 4 and 5).
    """



# ---------------------------------------------------------------- weight files and caches

@dataclass(frozen=True)
class WeightFile:
    """A downloadable pretrained-weights file: its name, where it comes from, its checksum.

    Used by tl.backbones.get_backbone (the paper profile of chapters 1, 2, 4 and 5).
    """

    file_name: str
    url: str
    md5: str | None = None


# Headless ("notop") ImageNet files of keras.applications, as keras 3 names and checks them.
KERAS_WEIGHT_FILES = {
    "xception": WeightFile(
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/xception/"
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "b0042744bf5b25fce3cb969f33bebb97"),
    "resnet50": WeightFile(
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        "4d473c1dd8becc155b73f8504c6f6626"),
    "efficientnetb3": WeightFile(
        "efficientnetb3_notop.h5",
        "https://storage.googleapis.com/keras-applications/efficientnetb3_notop.h5",
        "af6d107764bb5b1abb91932881670226"),
}


def keras_weights_dir() -> Path:
    """Where keras.applications looks for (and saves) weight files: $KERAS_HOME/models or ~/.keras/models.

    Used by tl.backbones.get_backbone (the paper profile of chapters 1, 2 and 4).
    """
    try:  # the value Keras itself fixed at import, so that both agree
        from keras.src.backend.config import keras_home

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras"))
    home = os.path.expanduser(home)
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")  # Keras' own fallback for a read-only home
    return Path(home) / "models"


def torch_weights_dir() -> Path:
    """Where torchvision looks for (and saves) weight files: torch.hub.get_dir()/checkpoints.

    Used by tl.backbones.get_backbone (the paper profile of chapter 5).
    """
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints"


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _how_to_place(weight: WeightFile, folder: Path, what: str) -> str:
    return (f"{what} needs the ImageNet weight file '{weight.file_name}'. It is not in the "
            f"cache folder searched, {folder}, and it could not be downloaded from this "
            f"machine. On a machine with internet access, download\n    {weight.url}\n"
            f"and copy it to\n    {folder / weight.file_name}\n"
            f"(create the folder if needed; the file name must stay as is). Or use the "
            f"offline backbone 'efficientnet_lite0', or weights=None for random weights.")


def ensure_weight_file(weight: WeightFile, folder: Path, what: str,
                       timeout: float = DOWNLOAD_TIMEOUT_S) -> Path:
    """Path of a weight file: from the cache folder, else downloaded into it (short timeout).

    Raises WeightsUnavailableError, naming the file, the folder and the fix, when the
    file is neither there nor downloadable, or when its checksum is wrong.
    Used by tl.backbones.get_backbone (the paper profile of chapters 1, 2, 4 and 5).
    """
    path = folder / weight.file_name
    if not path.is_file():
        partial = path.with_name(path.name + ".part")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with urllib.request.urlopen(weight.url, timeout=timeout) as response, \
                    open(partial, "wb") as out:
                for chunk in iter(lambda: response.read(1 << 20), b""):
                    out.write(chunk)
            partial.replace(path)
        except OSError as error:  # URLError, timeouts and unwritable folders are OSErrors
            partial.unlink(missing_ok=True)
            raise WeightsUnavailableError(
                _how_to_place(weight, folder, what) + f"\n(download error: {error})") from error
    if weight.md5 and _md5(path) != weight.md5:
        raise WeightsUnavailableError(
            f"The weight file {path} is damaged or not the expected one (md5 differs from "
            f"{weight.md5}). Delete it and place a fresh copy.\n"
            + _how_to_place(weight, folder, what))
    return path


# ---------------------------------------------------------------- ImageNet class names

@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, by class index (from timm's ImageNetInfo, stored here)."""
    path = Path(__file__).with_name("imagenet_classes.json")
    return tuple(json.loads(path.read_text(encoding="utf-8")))


def imagenet_class_name(index: int) -> str:
    """Name of one ImageNet-1k class, e.g. 285 -> 'Egyptian cat'."""
    return imagenet_class_names()[int(index)]


def top_k_classes(logits, k: int = 5) -> list[tuple[int, str, float]]:
    """The k best ImageNet classes of one image's logits: (index, name, softmax probability)."""
    logits = np.asarray(logits, dtype=np.float64).reshape(-1)
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    best = np.argsort(-logits)[:k]
    return [(int(i), imagenet_class_name(i), float(probabilities[i])) for i in best]


