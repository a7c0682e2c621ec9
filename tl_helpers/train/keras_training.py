"""Keras training that runs unattended: an adaptive-LR callback, early stopping that keeps
the best epoch, and one call (`fit_keeping_best`) that fits, restores the best epoch and
times it.

Keras: the EfficientNet article's `LR_ASK` callback keeps the best weights, lowers the
learning rate when the validation loss stops improving, and at a chosen epoch waits for a
person to type "halt" or a number of further epochs. Under papermill or in CI nobody
types. `AdaptiveLearningRate` does the same job with the answers given as parameters
(`ask_epoch`, `extend_by`), and it is backend-neutral: weights are copied with
`get_weights` / `set_weights` and the learning rate is the optimizer's Keras variable,
changed with `.assign`, which works with the TensorFlow, PyTorch and JAX backends alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import keras
import numpy as np


class AdaptiveLearningRate(keras.callbacks.Callback):
    """Keep the best weights by `monitor`, cut the LR when it stops improving, stop on cue.

    - Best weights: copied in memory whenever `monitor` (default val_loss) improves by more
      than `min_delta`; restored when training ends, however it ends.
    - LR: after `patience` epochs without improvement the learning rate is multiplied by
      `factor`; with `dwell=True` the best weights are also restored at that moment, so
      training resumes from the best point at the lower rate.
    - Stopping: `ask_epoch` (1-based) is where the article asked the person at the
      keyboard. `extend_by` is the answer: 0 stops there; n continues n more epochs and
      then stops; a sequence (n1, n2, ...) answers successive asks (at ask_epoch, then at
      ask_epoch + n1, ...), and the asks end when it runs out. `stop_patience` stops after
      that many LR cuts in a row without improvement. `fit(epochs=...)` remains the cap.

    After training: `best_epoch`, `best_value`, `stopped_epoch` (0 if fit ran to the end)
    and `lr_changes`, a list of (epoch, new learning rate).

    Used by chapter 2.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.5, patience: int = 1,
                 dwell: bool = True, min_delta: float = 0.0, ask_epoch: int | None = None,
                 extend_by: int | Sequence[int] = 0, stop_patience: int | None = None,
                 min_lr: float = 0.0, verbose: int = 1):
        super().__init__()
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be between 0 and 1, got {factor}")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.dwell = dwell
        self.min_delta = min_delta
        self.ask_epoch = ask_epoch
        self.extend_by = [extend_by] if isinstance(extend_by, (int, np.integer)) else list(extend_by)
        self.stop_patience = stop_patience
        self.min_lr = min_lr
        self.verbose = verbose

    def on_train_begin(self, logs=None):
        learning_rate = self.model.optimizer.learning_rate
        if not hasattr(learning_rate, "assign"):
            raise TypeError("AdaptiveLearningRate sets the learning rate itself; compile the model "
                            "with a float learning rate, not a LearningRateSchedule")
        self.best_weights = None
        self.best_value = np.inf
        self.best_epoch = 0
        self.stopped_epoch = 0
        self.lr_changes: list[tuple[int, float]] = []
        self._epochs_without_improvement = 0
        self._cuts_without_improvement = 0
        self._next_ask = self.ask_epoch
        self._answers = list(self.extend_by)

    def current_lr(self) -> float:
        return float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))

    def _say(self, message: str) -> None:
        if self.verbose:
            print(message)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        number = epoch + 1  # people count epochs from 1, as Keras prints them
        if self.monitor not in logs:
            raise KeyError(f"AdaptiveLearningRate monitors {self.monitor!r}, which this fit does not "
                           f"log (it logs {sorted(logs)}); pass validation data or set monitor=")
        value = float(logs[self.monitor])
        if value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch = value, number
            self.best_weights = self.model.get_weights()
            self._epochs_without_improvement = 0
            self._cuts_without_improvement = 0
        else:
            self._epochs_without_improvement += 1
            if self._epochs_without_improvement >= self.patience:
                self._cut_learning_rate(number)
        logs["learning_rate"] = self.current_lr()
        if self.stop_patience is not None and self._cuts_without_improvement >= self.stop_patience:
            self._stop(number, f"{self._cuts_without_improvement} LR cuts without improvement")
        elif self._next_ask is not None and number >= self._next_ask:
            self._answer_the_ask(number)

    def _cut_learning_rate(self, number: int) -> None:
        new_lr = max(self.current_lr() * self.factor, self.min_lr)
        self.model.optimizer.learning_rate.assign(new_lr)
        self.lr_changes.append((number, new_lr))
        self._epochs_without_improvement = 0
        self._cuts_without_improvement += 1
        restored = ""
        if self.dwell and self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            restored = f"; back to the weights of epoch {self.best_epoch}"
        self._say(f"epoch {number}: {self.monitor} did not improve on {self.best_value:.4f}, "
                  f"learning rate -> {new_lr:.3g}{restored}")

    def _answer_the_ask(self, number: int) -> None:
        more = self._answers.pop(0) if self._answers else 0
        if more <= 0:
            self._stop(number, "ask_epoch reached, no further epochs asked for")
        else:
            self._next_ask = number + more
            self._say(f"epoch {number}: continuing for {more} more epochs (to epoch {self._next_ask})")

    def _stop(self, number: int, reason: str) -> None:
        self.stopped_epoch = number
        self.model.stop_training = True
        self._say(f"epoch {number}: stopping ({reason})")

    def on_train_end(self, logs=None):
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self._say(f"restored the best weights: epoch {self.best_epoch}, "
                      f"{self.monitor} {self.best_value:.4f}")


def stop_and_keep_best(checkpoint, patience: int, monitor: str = "val_loss", mode: str = "min",
                       stop_monitor: str | None = None, min_delta: float = 0.0) -> list:
    """EarlyStopping, and a checkpoint of the best epoch's weights.

    The checkpoint keeps the epoch with the best `monitor` (lowest for mode "min", highest for
    "max") in `checkpoint` (a path ending in `.weights.h5`), so `model.load_weights(checkpoint)`
    after `fit` gives the best epoch rather than the last. Training stops after `patience`
    epochs without improvement of `stop_monitor` (default: `monitor`; chapter 3 keeps the best
    validation ROC AUC and stops on the validation loss). Used by tl.keras_training.fit_keeping_best.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
    stop_monitor = stop_monitor or monitor
    stop_mode = mode if stop_monitor == monitor else ("min" if stop_monitor.endswith("loss") else "max")
    return [keras.callbacks.EarlyStopping(monitor=stop_monitor, mode=stop_mode, patience=patience, min_delta=min_delta),
            keras.callbacks.ModelCheckpoint(str(checkpoint), monitor=monitor, mode=mode, save_best_only=True,
                                            save_weights_only=True)]


class TimeBudget(keras.callbacks.Callback):
    """Stop training once `seconds` of wall-clock time have passed (checked at each epoch's end).

    Gives two models the same cost rather than the same number of epochs: a model that is
    slow per epoch gets fewer of them. An epoch that has begun is finished, so a run may
    overshoot by up to one epoch; `predicted_stop` avoids that by not starting an epoch that
    the mean epoch time so far says would end past the budget. `stopped_early` says whether
    the budget (rather than the epoch limit or another callback) ended the run. `clock` is
    the time source (seconds, only differences matter; default `time.perf_counter`): tests
    pass one that advances per epoch, so they do not depend on the machine's speed.
    Taught in chapter 4 (the pretrained U-Net and the from-scratch ResUNet at equal cost).
    """

    def __init__(self, seconds: float, predicted_stop: bool = True, clock=time.perf_counter):
        super().__init__()
        self.seconds = float(seconds)
        self.predicted_stop = predicted_stop
        self.clock = clock
        self.started = None
        self.epochs = 0
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self.started, self.epochs, self.stopped_early = self.clock(), 0, False

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        elapsed = self.clock() - self.started
        next_end = elapsed + (elapsed / self.epochs if self.predicted_stop else 0.0)
        if next_end > self.seconds:
            self.stopped_early = True
            self.model.stop_training = True

    @property
    def elapsed(self) -> float:
        """Seconds since training began (0 before it did)."""
        return 0.0 if self.started is None else self.clock() - self.started


class EpochLog(keras.callbacks.Callback):
    """One line per epoch (`name: epoch 3/15 loss 0.412 val_loss 0.388 (2.1 s)`), so a reader
    watching a long cell, or the runner's log, sees training move. Keras's own progress bar
    floods a notebook with carriage returns; this prints one flushed line instead.
    Used by tl.keras_training.fit_keeping_best (chapters 1 to 4).
    """

    def __init__(self, name: str = "training", clock: Callable[[], float] = time.perf_counter):
        super().__init__()
        self.name, self.clock = name, clock
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = self.clock()

    def on_epoch_end(self, epoch, logs=None):
        total = (self.params or {}).get("epochs")
        values = " ".join(f"{key} {value:.4g}" for key, value in (logs or {}).items()
                          if key.endswith(("loss", "accuracy", "auc")))
        print(f"{self.name}: epoch {epoch + 1}{f'/{total}' if total else ''} {values} "
              f"({self.clock() - self.started:.1f} s)", flush=True)


@dataclass
class TrainingRun:
    """What `fit_keeping_best` did: the Keras History, the best epoch (1-based) and the time."""

    history: Any
    best_epoch: int
    epochs_run: int
    seconds: float

    def best_and_last(self, metric: str = "val_loss") -> tuple[float, float]:
        """`metric` at the best epoch (the model kept) and at the last one (the model a
        plain `fit` leaves). Taught in chapter 1."""
        values = self.history.history[metric]
        return float(values[self.best_epoch - 1]), float(values[-1])


def fit_keeping_best(model, checkpoint, patience: int, name: str = "training", fit: Callable | None = None,
                     extra_callbacks: Sequence = (), monitor: str = "val_loss", mode: str = "min",
                     stop_monitor: str | None = None, min_delta: float = 0.0, quiet: bool = False,
                     **fit_arguments) -> TrainingRun:
    """Fit, restore the best epoch (of `monitor`, `mode` "min" or "max"), time it, say so in one line.

    By default it calls `model.fit(**fit_arguments, verbose=0)` with `stop_and_keep_best`'s
    callbacks (plus `extra_callbacks`); pass `fit=lambda callbacks: ...` to train another way
    (a head on cached features, say) with those callbacks. Afterwards the model holds the
    weights of its best epoch, not of its last. One line per epoch shows progress (EpochLog;
    `quiet=True` for none). The one way to keep the best Keras epoch. Used by chapters 1, 3 and 4."""
    callbacks = [*stop_and_keep_best(checkpoint, patience, monitor, mode, stop_monitor, min_delta), *extra_callbacks]
    if not quiet:
        callbacks.append(EpochLog(name))
    started = time.perf_counter()
    if fit is None:
        history = model.fit(**{"verbose": 0, **fit_arguments}, callbacks=callbacks)
    else:
        history = fit(callbacks)
    model.load_weights(str(checkpoint))
    seconds = time.perf_counter() - started
    values = history.history
    best = int(np.argmin(values[monitor]) if mode == "min" else np.argmax(values[monitor]))
    epochs_run = len(values["loss"])
    shown = ", ".join(f"{key} {values[key][best]:.3f}" for key in values if key.startswith("val_"))
    if not quiet:
        print(f"{name}: {epochs_run} epochs in {seconds:.0f} s; best epoch {best + 1}: {shown}")
    return TrainingRun(history, best + 1, epochs_run, seconds)


def by_films(history, batch_size: int, start: int = 0, metric: str = "val_auc"):
    """`metric` after each epoch of a Keras fit, as a pandas Series indexed by the training
    images presented so far (epoch x steps per epoch x `batch_size`, plus `start`: images
    seen before this fit, in an earlier domain say).

    Runs with epochs of different lengths, or with a pretraining, are then compared at equal
    presentations instead of equal epochs; the last index is the fit's whole budget. Needs
    the History `fit` returned (its `params["steps"]`). Used by chapter 3.
    """
    import pandas as pd

    steps = (getattr(history, "params", None) or {}).get("steps")
    if not steps:
        raise ValueError("the history does not say how many steps an epoch had (params['steps'])")
    values = history.history[metric]
    films = start + steps * batch_size * np.arange(1, len(values) + 1)
    return pd.Series(values, index=pd.Index(films, name="images presented"), name=metric)


def predict_rows(model, x, batch_size: int = 256) -> np.ndarray:
    """The model's outputs for the rows of an array, in inference mode, `batch_size` rows at
    a time (float32), flattened: P(positive) per row for a one-unit sigmoid. Used by
    chapter 3.
    """
    batches = (np.asarray(x[i:i + batch_size], np.float32) for i in range(0, len(x), batch_size))
    return np.concatenate([keras.ops.convert_to_numpy(model(batch, training=False)) for batch in batches]).ravel()


# --- chapter 3: what a checkpoint on a metric Keras does not log does ------------------

@dataclass
class CheckpointProbe:
    """What `probe_checkpoint` saw. Used by chapter 3."""
    logged: list
    said: list
    written: bool
    holds_last: bool | None
    monitor: str = "val_acc"

    def summary(self) -> str:
        """What was logged, what the checkpoint said, and what its file holds, in words."""
        said = (f"the metrics Keras {keras.__version__} logged: {self.logged}; ModelCheckpoint("
                f"monitor={self.monitor!r}, save_best_only=True) said: {self.said}; ")
        return said + (f"the file was written; it holds the last epoch's weights: "
                       f"{self.holds_last} (a checkpoint of every epoch, not of the best)"
                       if self.written else "the file was never written: loading it fails")


def probe_checkpoint(model, checkpoint, monitor: str, **fit_arguments) -> CheckpointProbe:
    """Fit a compiled `model` with only ModelCheckpoint(monitor, save_best_only=True).

    An article that monitors "val_acc" under a Keras that logs "val_accuracy" gets a
    warning, not an error. This reports the metrics Keras logged, the first sentence of
    each warning naming `monitor`, whether the weights file was written, and if so whether
    it holds the last epoch's weights (a checkpoint of every epoch, not of the best).
    Used by chapter 3.
    """
    import warnings
    from pathlib import Path

    checkpoint = Path(checkpoint)
    checkpoint.unlink(missing_ok=True)
    saver = keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, mode="max",
                                            save_best_only=True, save_weights_only=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(**{"verbose": 0, **fit_arguments}, callbacks=[saver])
    said = sorted({str(w.message).split(".")[0] for w in caught if monitor in str(w.message)})
    holds_last = None
    if checkpoint.exists():
        saved = keras.models.clone_model(model)
        saved.load_weights(checkpoint)
        holds_last = all(np.array_equal(a, b)
                         for a, b in zip(saved.get_weights(), model.get_weights()))
    return CheckpointProbe(sorted(history.history), said, checkpoint.exists(), holds_last, monitor)
