"""keras_training: the unattended adaptive-LR callback and stop_and_keep_best on real tiny Keras models."""
import os
import subprocess
import sys

import numpy as np
import pytest

# tl_helpers first: its __init__ loads triton before TensorFlow (the other order segfaults).
from tl_helpers.train.keras_training import AdaptiveLearningRate, stop_and_keep_best

import keras  # noqa: I001


def two_blobs(count=300, seed=0):
    """Two overlapping Gaussian classes in 8 dimensions: learnable, not separable."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, count)
    x = rng.normal(size=(count, 8)).astype("float32") + y[:, None].astype("float32") * 0.8
    return x, y.astype("float32")


def tiny_model(learning_rate):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy")
    return model


class WeightRecorder(keras.callbacks.Callback):
    """Copies of the weights at each epoch's start and end (before later callbacks act)."""

    def on_train_begin(self, logs=None):
        self.at_start, self.at_end = [], []

    def on_epoch_begin(self, epoch, logs=None):
        self.at_start.append(self.model.get_weights())

    def on_epoch_end(self, epoch, logs=None):
        self.at_end.append(self.model.get_weights())


def assert_same_weights(left, right):
    assert len(left) == len(right)
    for a, b in zip(left, right):
        np.testing.assert_array_equal(a, b)


def test_huge_learning_rate_is_cut_and_best_weights_come_back():
    x, y = two_blobs()
    model = tiny_model(learning_rate=3.0)  # far too high: the validation loss jumps about
    recorder = WeightRecorder()
    adaptive = AdaptiveLearningRate(factor=0.5, patience=1, dwell=True, verbose=0)
    history = model.fit(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=8,
                        batch_size=32, verbose=0, shuffle=False, callbacks=[recorder, adaptive])
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert adaptive.best_epoch == best + 1
    assert adaptive.best_value == pytest.approx(val_loss[best])
    assert adaptive.lr_changes, "the validation loss never worsened; the test lost its point"
    expected_lr = 3.0 * 0.5 ** len(adaptive.lr_changes)
    assert adaptive.current_lr() == pytest.approx(expected_lr)
    assert history.history["learning_rate"][-1] == pytest.approx(expected_lr)
    # At the end of training the model holds the best epoch's weights.
    assert_same_weights(model.get_weights(), recorder.at_end[best])
    # Dwell: the epoch after a cut starts from the best weights seen so far.
    cut_epoch = adaptive.lr_changes[0][0]
    best_before_cut = int(np.argmin(val_loss[:cut_epoch]))
    if cut_epoch < len(val_loss):
        assert_same_weights(recorder.at_start[cut_epoch], recorder.at_end[best_before_cut])


def test_without_dwell_training_continues_from_the_last_weights():
    x, y = two_blobs()
    model = tiny_model(learning_rate=3.0)
    recorder = WeightRecorder()
    adaptive = AdaptiveLearningRate(dwell=False, verbose=0)
    model.fit(x[:200], y[:200], validation_data=(x[200:], y[200:]), epochs=6, batch_size=32,
              verbose=0, shuffle=False, callbacks=[recorder, adaptive])
    cut_epoch = adaptive.lr_changes[0][0]
    assert_same_weights(recorder.at_start[cut_epoch], recorder.at_end[cut_epoch - 1])


def drive(callback, model, val_losses):
    """Feed the callback a chosen sequence of validation losses, epoch by epoch."""
    callback.set_model(model)
    callback.on_train_begin()
    for epoch, value in enumerate(val_losses):
        callback.on_epoch_end(epoch, {"val_loss": value})
        if model.stop_training:
            return epoch + 1
    return len(val_losses)


def test_patience_and_stop_patience_follow_the_losses_given():
    model = tiny_model(learning_rate=0.1)
    adaptive = AdaptiveLearningRate(factor=0.1, patience=2, stop_patience=2, verbose=0)
    # Improves at 1, 2; flat at 3, 4 (cut at 4); flat at 5, 6 (second cut at 6, then stop).
    stopped_at = drive(adaptive, model, [1.0, 0.9, 0.95, 0.91, 0.92, 0.93, 0.5])
    assert [epoch for epoch, _ in adaptive.lr_changes] == [4, 6]
    assert [lr for _, lr in adaptive.lr_changes] == pytest.approx([0.01, 0.001])
    assert stopped_at == 6 and adaptive.stopped_epoch == 6
    assert adaptive.best_epoch == 2


@pytest.mark.parametrize("extend_by, last_epoch", [(0, 3), (2, 5), ((2, 1), 6), ((2, 1, 100), 10)])
def test_ask_epoch_answers_stop_or_extend(extend_by, last_epoch):
    x, y = two_blobs(120)
    model = tiny_model(learning_rate=0.01)
    adaptive = AdaptiveLearningRate(ask_epoch=3, extend_by=extend_by, verbose=0)
    history = model.fit(x[:80], y[:80], validation_data=(x[80:], y[80:]), epochs=10,
                        batch_size=40, verbose=0, callbacks=[adaptive])
    assert len(history.epoch) == last_epoch
    assert adaptive.stopped_epoch == (last_epoch if last_epoch < 10 else 0)


def test_missing_validation_loss_is_named():
    x, y = two_blobs(60)
    model = tiny_model(learning_rate=0.01)
    with pytest.raises(KeyError, match="val_loss"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[AdaptiveLearningRate(verbose=0)])


def test_learning_rate_schedule_is_refused():
    model = tiny_model(learning_rate=0.01)
    model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)),
                  loss="binary_crossentropy")
    with pytest.raises(TypeError, match="LearningRateSchedule"):
        drive(AdaptiveLearningRate(verbose=0), model, [1.0])


@pytest.mark.slow
def test_works_with_the_torch_backend():
    pytest.importorskip("torch")
    script = (
        "import numpy as np, keras\n"
        "from tl_helpers.train.keras_training import AdaptiveLearningRate\n"
        "assert keras.backend.backend() == 'torch'\n"
        "keras.utils.set_random_seed(0)\n"
        "m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])\n"
        "m.compile(optimizer=keras.optimizers.SGD(0.1), loss='mse')\n"
        "cb = AdaptiveLearningRate(verbose=0)\n"
        "cb.set_model(m); cb.on_train_begin()\n"
        "w = m.get_weights()\n"
        "cb.on_epoch_end(0, {'val_loss': 1.0})\n"
        "m.set_weights([v + 1 for v in w])\n"
        "cb.on_epoch_end(1, {'val_loss': 2.0})\n"
        "print(cb.current_lr(), float(np.abs(m.get_weights()[0] - w[0]).max()))\n"
    )
    env = dict(os.environ, KERAS_BACKEND="torch")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lr, weight_change = map(float, result.stdout.split()[-2:])
    assert lr == pytest.approx(0.05)
    assert weight_change == 0.0  # dwell put the best weights back


def test_stop_and_keep_best_stops_after_patience_and_saves_the_best_epoch(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="binary_crossentropy")
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    checkpoint = tmp_path / "best.weights.h5"
    # validation labels flipped: the better the model learns, the worse its validation loss
    history = model.fit(x, y, validation_data=(x, 1 - y), epochs=20, verbose=0,
                        callbacks=[record, *stop_and_keep_best(checkpoint, patience=2)])
    val_loss = history.history["val_loss"]
    best = int(np.argmin(val_loss))
    assert len(val_loss) == best + 1 + 2 < 20
    model.load_weights(checkpoint)
    assert not np.array_equal(snapshots[best][0], snapshots[-1][0])
    for loaded, expected in zip(model.get_weights(), snapshots[best]):
        np.testing.assert_array_equal(loaded, expected)


def test_fit_keeping_best_keeps_the_highest_auc_stops_on_the_loss_and_logs_each_epoch(tmp_path, capsys):
    """Chapter 3's rule through the one helper: the best validation ROC AUC is kept (mode max),
    training stops on the validation loss, and every epoch prints one line."""
    from tl_helpers.train.keras_training import fit_keeping_best

    rng = np.random.default_rng(1)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x[:, 0] + 0.5 * rng.normal(size=96) > 0).astype("float32")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=keras.optimizers.SGD(0.3), loss="binary_crossentropy",
                  metrics=[keras.metrics.AUC(name="auc")])
    snapshots = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: snapshots.append(model.get_weights()))
    run = fit_keeping_best(model, tmp_path / "best.weights.h5", patience=3, name="probe", monitor="val_auc",
                           mode="max", stop_monitor="val_loss", extra_callbacks=[record], x=x, y=y,
                           validation_data=(x[:32], y[:32]), epochs=12)
    auc = run.history.history["val_auc"]
    assert run.best_epoch == int(np.argmax(auc)) + 1
    for loaded, expected in zip(model.get_weights(), snapshots[run.best_epoch - 1]):
        np.testing.assert_array_equal(loaded, expected)
    printed = capsys.readouterr().out
    assert printed.count("probe: epoch ") == run.epochs_run
    assert f"probe: epoch 1/12 " in printed and "val_auc" in printed


def test_time_budget_stops_training_after_its_seconds():
    from tl_helpers.train.keras_training import TimeBudget

    class EpochClock:  # each epoch takes exactly 0.2 s, however busy the machine is
        now = 0.0

        def __call__(self):
            return self.now

    x = np.zeros((8, 2), "float32")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    clock = EpochClock()
    slow = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: setattr(clock, "now", clock.now + 0.2))
    budget = TimeBudget(0.5, predicted_stop=False, clock=clock)
    history = model.fit(x, x[:, :1], epochs=50, verbose=0, callbacks=[slow, budget])
    assert budget.stopped_early and len(history.history["loss"]) == 3  # ends at 0.2, 0.4, 0.6 > 0.5
    assert budget.elapsed == pytest.approx(0.6)
    predicted = TimeBudget(0.5, clock=clock)  # does not start an epoch that would end past the budget
    history = model.fit(x, x[:, :1], epochs=50, verbose=0, callbacks=[slow, predicted])
    assert predicted.stopped_early and len(history.history["loss"]) == 2  # a third would end at 0.6
    roomy = TimeBudget(60, clock=clock)
    assert len(model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[slow, roomy]).history["loss"]) == 3
    assert not roomy.stopped_early


# --- chapter 3: a checkpoint on a metric this Keras does not log -----------------------

def test_probe_checkpoint_on_a_metric_keras_does_not_log(tmp_path):
    from tl_helpers.train.keras_training import probe_checkpoint

    x, y = two_blobs(count=120)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(x.shape[1:]), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    seen = probe_checkpoint(model, tmp_path / "probe.weights.h5", "val_acc", x=x, y=y, epochs=2,
                            validation_data=(x, y))
    assert "val_accuracy" in seen.logged and "val_acc" not in seen.logged
    assert seen.said and all("val_acc" in said for said in seen.said)  # a warning, no error
    assert seen.written == (tmp_path / "probe.weights.h5").exists()
    assert seen.holds_last in ((True,) if seen.written else (None,))
    assert "val_acc" in seen.summary() and "logged" in seen.summary()
    # the logged name: a real checkpoint, which need not hold the last epoch
    seen = probe_checkpoint(model, tmp_path / "probe.weights.h5", "val_accuracy", x=x, y=y,
                            epochs=2, validation_data=(x, y))
    assert seen.said == [] and seen.written


def test_by_films_indexes_each_epoch_by_the_images_presented_so_far():
    """Chapter 3's budget axis: an epoch of 5 steps of 8 images presents 40 images; a run that
    began after another domain's 1,000 images starts its count there."""
    from tl_helpers.train.keras_training import by_films

    x, y = two_blobs(count=40)
    model = tiny_model(0.01)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=[keras.metrics.AUC(name="auc")])
    history = model.fit(x, y, batch_size=8, epochs=3, validation_data=(x, y), verbose=0)
    curve = by_films(history, 8, start=1000)
    assert list(curve.index) == [1040, 1080, 1120]
    assert list(curve) == history.history["val_auc"]
    assert list(by_films(history, 8, metric="loss").index) == [40, 80, 120]
    with pytest.raises(ValueError, match="steps"):
        by_films(keras.callbacks.History(), 8)


def test_predict_rows_gives_the_models_outputs_in_batches():
    from tl_helpers.train.keras_training import predict_rows

    x, _ = two_blobs(count=37)
    model = tiny_model(0.01)
    expected = keras.ops.convert_to_numpy(model(x, training=False)).ravel()
    p = predict_rows(model, x, batch_size=10)  # 4 batches, the last one short
    assert p.shape == (37,)
    np.testing.assert_allclose(p, expected, rtol=1e-6, atol=1e-7)
