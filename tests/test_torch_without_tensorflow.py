"""Chapter 5's PyTorch path runs where Keras and TensorFlow cannot even be imported.

A fresh interpreter blocks both (`sys.modules[name] = None` makes every import of them
fail), then reads real PCam patches (a synthetic set when ../shared/data is absent),
builds the torch EfficientNet-Lite0 body with the chapter's head and trains one epoch
with the one-cycle loop on the CPU.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, math, sys
sys.modules["keras"] = None       # any `import keras` now raises ImportError
sys.modules["tensorflow"] = None

import numpy as np
import torch
from torch import nn

import tl_helpers as tl

data_dir = sys.argv[1] or None
report = tl.data.load("pcam", synthetic=data_dir is None, data_dir=data_dir, deep=False)
patches = tl.data.pcam_table(report.root)
rows = patches.groupby("label").head(8).reset_index(drop=True)  # 16 patches, 8 of each label
assert len(rows) == 16 and sorted(rows.label.unique()) == [0, 1]

backbone = tl.backbones.get_backbone("efficientnet_lite0", "torch", weights="imagenet", pooling=None)
transform = tl.torch_training.PatchTransform.for_backbone(backbone, crop=64)
augment = tl.augment.Augment(rotation_range=20, horizontal_flip=True, vertical_flip=True)
train = tl.loaders.TorchImageDataset(rows, image_size=(96, 96), augment=augment, preprocess=transform, seed=0)
valid = tl.loaders.TorchImageDataset(rows, image_size=(96, 96), preprocess=transform, seed=0)
train_loader = tl.loaders.make_torch_loader(train, batch_size=8, shuffle=True, drop_last=True, seed=0)
valid_loader = tl.loaders.make_torch_loader(valid, batch_size=16, shuffle=False, seed=0)

torch.manual_seed(0)
torch.set_num_threads(2)
model = nn.Sequential(backbone.model, tl.torch_training.classifier_head(backbone.feature_dim, hidden=32, classes=2))
history = tl.torch_training.fit_one_cycle(model, train_loader, valid_loader, epochs=1, max_lr=1e-2,
                                          device=torch.device("cpu"), progress=False, verbose=False)
result = tl.torch_training.evaluate(model, valid_loader, torch.device("cpu"))
metrics = tl.metrics.binary_report(result["labels"], result["probabilities"][:, 1], n_boot=50)
figure = tl.plotting.plot_roc(result["labels"], result["probabilities"], class_names=["normal", "tumour"])

blocked = {name: repr(sys.modules.get(name)) for name in ("keras", "tensorflow")}
leaked = sorted(m for m in sys.modules if m.startswith(("keras.", "tensorflow.", "tf_keras")))
print(json.dumps({"source": report.source, "rows": len(rows), "weights": backbone.weights_source,
                  "train_loss": float(history.train_loss.iloc[0]), "valid_loss": float(result["loss"]),
                  "probabilities": list(result["probabilities"].shape), "accuracy": metrics["accuracy"].value,
                  "figure_axes": len(figure.axes), "blocked": blocked, "leaked": leaked}))
"""


def test_pcam_lite0_trains_one_epoch_without_keras_or_tensorflow(tmp_path):
    shared = shared_data_dir()
    data_dir = str(shared) if shared is not None and (shared / "pcam").is_dir() else ""
    env = dict(os.environ, PYTHONPATH=str(REPO), TL_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="2", KERAS_BACKEND="torch")
    done = subprocess.run([sys.executable, "-c", SCRIPT, data_dir], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["source"] == ("real data" if data_dir else result["source"])
    assert data_dir or result["source"].startswith("SYNTHETIC")
    assert result["rows"] == 16 and result["probabilities"] == [16, 2]
    assert "efficientnet-lite0" in result["weights"]  # the ImageNet weights, not random ones
    assert 0 < result["train_loss"] < 10 and 0 < result["valid_loss"] < 10  # finite, and a real loss
    assert 0.0 <= result["accuracy"] <= 1.0 and result["figure_axes"] >= 1
    assert result["blocked"] == {"keras": "None", "tensorflow": "None"}, "Keras or TensorFlow was really imported"
    assert result["leaked"] == []
