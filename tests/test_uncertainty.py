"""MC dropout layer, repeated predictions, their summary, and accuracy against coverage."""
import tl_helpers  # noqa: F401  (first: loads triton before TensorFlow)

import keras
import numpy as np
import pytest

from tl_helpers.evaluate.uncertainty import (MCDropout, accuracy_at_coverage, accuracy_coverage, mc_dropout_head,
                                    mc_predict, plot_accuracy_coverage, plot_mc_predictions,
                                    predictive_summary)


def _dropout_only_model(layer, width: int = 64):
    inputs = keras.Input((width,))
    return keras.Model(inputs, layer(inputs))


def test_mc_dropout_stays_on_at_inference_where_plain_dropout_does_not():
    x = np.ones((2, 64), dtype="float32")
    mc = _dropout_only_model(MCDropout(0.5, seed=3))
    first, second = (np.asarray(mc.predict(x, verbose=0)) for _ in range(2))
    assert not np.allclose(first, second)  # a fresh mask every call
    assert set(np.unique(first)) <= {0.0, 2.0}  # dropped, or kept and scaled by 1/(1-rate)
    assert np.asarray(mc(x, training=False)).min() == 0.0  # training=False is ignored
    plain = _dropout_only_model(keras.layers.Dropout(0.5, seed=3))
    np.testing.assert_array_equal(np.asarray(plain.predict(x, verbose=0)), x)


def test_mc_predict_shape_and_unbiased_mean():
    # 40 passes over many values, not 200 over few: more draws (122,880, not 38,400) from a
    # fifth of the predict calls (each costs ~0.1 s of Keras overhead whatever its size)
    x = np.linspace(1.0, 2.0, 3 * 1024, dtype="float32").reshape(3, 1024)
    samples = mc_predict(_dropout_only_model(MCDropout(0.2, seed=0), 1024), x, passes=40)
    assert samples.shape == (40, 3, 1024)
    # inverted dropout keeps the expectation: the mean of many passes approaches the input
    # (each draw's sd is about 0.5 x 1.5 = 0.75, so the mean of 122,880 draws has sd 0.002)
    assert abs(samples.mean(axis=0).mean() - x.mean()) < 0.02
    assert samples.std(axis=0).mean() > 0.3  # the passes differ: dropout is on
    with pytest.raises(ValueError):
        mc_predict(_dropout_only_model(MCDropout(0.2)), x, passes=0)


def test_mc_dropout_head_survives_saving(tmp_path):
    head = mc_dropout_head(feature_dim=16, n_classes=2, rate=0.2)
    assert [type(layer).__name__ for layer in head.layers[1:]] == ["MCDropout", "Dense", "Dense"]
    assert head.layers[2].units == 4 and head.output_shape == (None, 2)  # Dense(2 x classes), softmax
    path = tmp_path / "head.keras"
    head.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.layers[1], MCDropout)
    probabilities = np.asarray(loaded.predict(np.ones((5, 16), "float32"), verbose=0))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_predictive_summary_by_hand():
    # two passes, two examples, two classes
    samples = np.array([[[0.9, 0.1], [0.4, 0.6]],
                        [[0.7, 0.3], [0.2, 0.8]]])
    table = predictive_summary(samples)
    np.testing.assert_allclose(table.p_mean_0, [0.8, 0.3])
    np.testing.assert_array_equal(table.predicted, [0, 1])
    np.testing.assert_allclose(table.spread, [0.1, 0.1])  # std of (0.9, 0.7) and of (0.6, 0.8)
    np.testing.assert_allclose(table.confidence, [0.8, 0.7])
    np.testing.assert_allclose(table.entropy[0], -(0.8 * np.log(0.8) + 0.2 * np.log(0.2)))
    with pytest.raises(ValueError):
        predictive_summary(samples[0])


def test_accuracy_coverage_keeps_the_most_certain_cases():
    y_true = np.array([1, 1, 0, 0])
    y_pred = np.array([1, 0, 0, 1])  # wrong on the two cases with high uncertainty
    uncertainty = np.array([0.1, 0.9, 0.2, 0.8])
    table = accuracy_coverage(y_true, y_pred, uncertainty, coverages=[1.0, 0.75, 0.5, 0.25])
    assert table.kept.tolist() == [4, 3, 2, 1]
    assert table.referred.tolist() == [0, 1, 2, 3]
    np.testing.assert_allclose(table.accuracy, [0.5, 2 / 3, 1.0, 1.0])
    assert accuracy_at_coverage(y_true, y_pred, uncertainty, 0.5) == (1.0, 2, 2)
    # the same cases ranked the other way round lose accuracy as they refer
    worse = accuracy_coverage(y_true, y_pred, -uncertainty, coverages=[0.5])
    assert worse.accuracy.iloc[0] == 0.0
    default = accuracy_coverage(y_true, y_pred, uncertainty)
    assert default.coverage.iloc[0] == 1.0 and default.coverage.iloc[-1] == pytest.approx(0.1)
    with pytest.raises(ValueError):
        accuracy_coverage(y_true, y_pred, uncertainty[:3])
    with pytest.raises(ValueError):
        accuracy_coverage(y_true, y_pred, uncertainty, coverages=[1.5])


def test_plot_accuracy_coverage(tmp_path):
    table = accuracy_coverage([1, 0, 1], [1, 1, 1], [0.1, 0.5, 0.2])
    fig = plot_accuracy_coverage({"spread": table, "entropy": table}, save=tmp_path / "coverage.png")
    ax = fig.axes[0]
    assert len(ax.lines) == 2
    assert ax.xaxis_inverted()
    assert (tmp_path / "coverage.png").stat().st_size > 1000
    with pytest.raises(ValueError):
        plot_accuracy_coverage({})


def test_plot_mc_predictions_marks_wrong_calls():
    fig = plot_mc_predictions([0.9, 0.45, 0.2], [0.01, 0.2, 0.05], [True, False, True], "yes")
    right, wrong = fig.axes[0].collections
    assert len(right.get_offsets()) == 2 and len(wrong.get_offsets()) == 1
    assert fig.axes[0].get_legend().get_texts()[1].get_text() == "wrong (1)"


def test_without_mc_dropout_shares_the_trained_layers_and_answers_the_same_every_time():
    import keras

    from tl_helpers.evaluate import uncertainty

    keras.utils.set_random_seed(0)
    head = uncertainty.mc_dropout_head(6, 2, rate=0.5, seed=0)
    plain = uncertainty.without_mc_dropout(head)
    x = np.random.default_rng(0).normal(size=(8, 6)).astype("float32")
    once, again = plain.predict(x, verbose=0), plain.predict(x, verbose=0)
    assert np.array_equal(once, again)  # deterministic
    assert not np.array_equal(head.predict(x, verbose=0), head.predict(x, verbose=0))  # MC: not
    head.layers[-1].set_weights([w * 0 for w in head.layers[-1].get_weights()])
    assert np.allclose(plain.predict(x, verbose=0), 0.5)  # the same layer object, not a copy
    with pytest.raises(ValueError, match="expected MCDropout"):
        uncertainty.without_mc_dropout(plain)


def test_live_hidden_units_finds_a_dead_head():
    import keras

    from tl_helpers.evaluate import uncertainty

    head = uncertainty.mc_dropout_head(3, 2, seed=0)
    x = np.abs(np.random.default_rng(1).normal(size=(5, 3))).astype("float32")
    weights, bias = head.layers[2].get_weights()
    head.layers[2].set_weights([np.abs(weights), np.zeros_like(bias)])
    assert uncertainty.live_hidden_units(head, x).all()
    head.layers[2].set_weights([-np.abs(weights), bias - 1])  # every input positive: all off
    assert not uncertainty.live_hidden_units(head, x).any()
