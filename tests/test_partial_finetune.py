"""Splitting a backbone at a layer: same outputs, shared weights, skip connections refused."""
import numpy as np
import pytest

import tl_helpers  # noqa: F401  (import order: triton before TensorFlow)
import keras

from tl_helpers.train.lite0 import build_lite0_keras
from tl_helpers.train.partial_finetune import join_models, split_functional_model


@pytest.fixture(scope="module")
def lite0():
    keras.utils.set_random_seed(0)
    return build_lite0_keras(weights=None, include_top=False, pooling="avg", input_shape=(64, 64, 3))


def test_lower_then_upper_is_the_model(lite0):
    lower, upper = split_functional_model(lite0, "block3_2_add")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    maps = lower.predict(x, verbose=0)
    assert maps.shape == (2, 4, 4, 80)
    np.testing.assert_allclose(upper.predict(maps, verbose=0), lite0.predict(x, verbose=0), rtol=1e-4, atol=1e-5)
    joined = join_models(lower, upper)
    np.testing.assert_allclose(joined.predict(x, verbose=0), lite0.predict(x, verbose=0), rtol=1e-4, atol=1e-5)


def test_parts_share_the_weights(lite0):
    _, upper = split_functional_model(lite0, "block4_2_add")
    layer = lite0.get_layer("head_conv")
    assert any(w is layer.kernel for w in upper.weights)
    assert len(upper.trainable_weights) < len(lite0.trainable_weights)


def test_cut_across_a_skip_connection_is_refused(lite0):
    # block3_1's expansion output feeds the block, but block3_1_add also reads block3_0's output
    with pytest.raises(ValueError, match="skip connection"):
        split_functional_model(lite0, "block3_1_expand_relu6")
    with pytest.raises(ValueError, match="no layer named"):
        split_functional_model(lite0, "nope")


# --- chapter 2: BatchNorm keeps what ImageNet taught it -------------------------------------

def test_freeze_batch_norm_freezes_only_the_batch_norm_layers(lite0):
    from tl_helpers.train.partial_finetune import freeze_batch_norm

    _, upper = split_functional_model(lite0, "block4_2_add")
    norms = [layer for layer in upper.layers if isinstance(layer, keras.layers.BatchNormalization)]
    others = [layer for layer in upper.layers if layer.weights and layer not in norms]
    assert freeze_batch_norm(upper) == len(norms) > 0
    assert not any(layer.trainable for layer in norms)
    assert all(layer.trainable for layer in others)
    assert not any(any(w is v for v in upper.trainable_weights) for layer in norms for w in layer.weights)
