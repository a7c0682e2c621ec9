"""One call that makes a run repeatable: `seed_everything(seed)`.

It seeds Python's `random`, NumPy, Keras (and through it TensorFlow or the torch backend)
and PyTorch, and asks each framework for deterministic kernels. Frameworks that are not
installed are skipped, and so are frameworks not yet imported unless `import_frameworks`
is set, so a notebook that never uses TensorFlow does not pay for importing it.
"""
from __future__ import annotations

import os
import random
import sys

import numpy as np


def seed_everything(seed: int = 0, deterministic: bool = True, import_frameworks: bool = False) -> dict:
    """Seed every random number generator in play and turn on deterministic ops.

    Returns what was seeded (for the run card). With `deterministic=True` some GPU ops
    run slower or raise if they have no deterministic implementation; that is the price
    of identical numbers from run to run. Used by every chapter (through tl.notebook.start).
    """
    seeded = {"seed": seed, "python": True, "numpy": True}
    os.environ["PYTHONHASHSEED"] = str(seed)  # affects subprocesses (data loader workers)
    random.seed(seed)
    np.random.seed(seed)
    if deterministic:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

    def wanted(module: str) -> bool:
        if module in sys.modules:
            return True
        if not import_frameworks:
            return False
        try:
            __import__(module)
            return True
        except ImportError:
            return False

    if wanted("torch"):
        import torch

        torch.manual_seed(seed)
        if deterministic:
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
            # Deterministic mode imports triton, which crashes Python (SIGSEGV) when
            # TensorFlow was loaded first; `import tl_helpers` loads triton early to avoid it.
            if "tensorflow" not in sys.modules or "triton" in sys.modules:
                torch.use_deterministic_algorithms(True, warn_only=True)
        seeded["torch"] = True
    if wanted("keras"):
        import keras

        keras.utils.set_random_seed(seed)  # seeds python, numpy and the backend
        seeded["keras"] = keras.backend.backend()
    if wanted("tensorflow"):
        import tensorflow as tf

        tf.random.set_seed(seed)
        if deterministic:
            tf.config.experimental.enable_op_determinism()
        seeded["tensorflow"] = True
    return seeded
