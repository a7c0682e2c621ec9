"""seed_everything makes NumPy, PyTorch and Keras runs repeat exactly."""
import subprocess
import sys

import numpy as np

from tl_helpers.workflow.repro import seed_everything

TRAIN_TWICE = """
import numpy as np, keras, torch
from tl_helpers.workflow.repro import seed_everything
def train():
    seed_everything(5)
    x = np.random.rand(64, 8).astype('float32'); y = (x.sum(1) > 4).astype('float32')
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, activation='relu'),
                              keras.layers.Dropout(0.3), keras.layers.Dense(1, activation='sigmoid')])
    model.compile('adam', 'binary_crossentropy')
    history = model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return history.history['loss'][-1], float(torch.rand(1))
a, b = train(), train()
print(a, b, flush=True)
print(a == b, flush=True)
"""


def test_numpy_and_python_repeat():
    seed_everything(7)
    a = np.random.rand(3)
    seed_everything(7)
    assert np.array_equal(a, np.random.rand(3))


def test_keras_training_and_torch_repeat_exactly():
    result = subprocess.run([sys.executable, "-c", TRAIN_TWICE], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr[-2000:]
