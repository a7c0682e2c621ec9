"""Chapter 1's two-phase recipe with two guards: when training collapses, and how often.

Phase 1 trains a small head on a frozen backbone; phase 2 unfreezes everything and trains on.
On 150 images either phase can kill every ReLU unit of the head: a unit whose input stays
negative outputs zero and gets no gradient, and a head with none left gives every image the
same probability (a *collapsed* run; the first version of chapter 1 lost one seed of three
that way). The second version guarded phase 2 only; its collapse studies found every collapse
already in phase 1 (3 of 30 seeds), so the third checks phase 1 too and trains it again from
a fresh head while it has collapsed. This module holds the pieces that make the recipe safe,
and measure it:

    sgd(0.001, decay=1e-4)                    # Keras 2's SGD(lr=, decay=) in Keras 3 terms
    unfreeze(backbone_model)                  # every layer trains, BatchNorm kept frozen
    fine_tuning_model(backbone_model, head, lambda: sgd(0.001))  # compiled once, reset after
    kept = Snapshot(backbone_model, head)     # weights in memory; kept.restore() goes back
    decision = guard_phase2(is_positive_val, p_phase1, p_phase2, live_units)
    check = check_phase1(first, train_phase1, has_collapsed, seed, attempts=3)  # fresh heads
    check.decision(plain, guarded)            # the phase-1 check's outcome on the record
    study = collapse_study(recipe, seeds)     # one row per seed: both candidates on validation
    collapse_rates(study)                     # {"collapse_rate_without_guard": Estimate, ...}

Both guards are rules fixed before they are measured, decided on the validation split alone.
Phase 1's check: when the trained head has collapsed on validation (`collapsed`), phase 1 runs
again from a new initialisation (another seed), at most `attempts` times in all. Phase 2's
guard: keep phase 2 only when its validation loss is below phase 1's (the same images, the
same kind of prediction) and its head has at least one live unit; else go back to phase 1's
weights (the frozen backbone and the head trained on it).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from ..evaluate.metrics import Estimate, _roc_auc, proportion

COLLAPSE_AUC = 0.55  # a validation ROC AUC at or below this counts as collapsed
_CONSTANT = 1e-6  # predictions spread less than this across images are constant


def sgd(learning_rate: float, decay: float = 0.0, momentum: float = 0.9):
    """SGD with momentum; Keras 2's `decay=` as the schedule lr / (1 + decay * step).

    Keras 3 has no `lr=` or `decay=` arguments: `learning_rate=` takes the rate and the old
    per-step decay is `InverseTimeDecay` with one-step granularity, the same formula.
    Used by chapter 1.
    """
    import keras

    if decay:
        learning_rate = keras.optimizers.schedules.InverseTimeDecay(
            learning_rate, decay_steps=1, decay_rate=decay)
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)


def unfreeze(model, keep_batchnorm_frozen: bool = True) -> int:
    """Make every layer of `model` trainable, BatchNormalization layers excepted when asked.

    With batches of 20, re-estimating BatchNorm statistics on the fly undoes part of the
    pretraining; frozen, its layers stay in inference mode with the ImageNet statistics.
    Returns how many weights are now trainable. Used by tl.fine_tuning.fine_tuning_model (chapter 1).
    """
    import keras

    for layer in model.layers:
        layer.trainable = not (keep_batchnorm_frozen and isinstance(layer, keras.layers.BatchNormalization))
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def reset_optimizer(optimizer) -> None:
    """Put a built Keras optimizer back to its start: step count and every slot (momentum,
    moments) at zero, the learning rate (or its schedule) kept. Used by tl.fine_tuning.fine_tuning_model (chapter 1).
    """
    rate = getattr(optimizer, "_learning_rate", None)
    for variable in optimizer.variables:
        if variable is not rate and variable.name != "learning_rate":
            variable.assign(np.zeros(variable.shape, dtype=variable.dtype))


_FINE_TUNING_MODELS: dict = {}  # (id(backbone model), id(head)) -> (backbone model, head, compiled model)


def fine_tuning_model(backbone_model, head, optimizer: Callable, keep_batchnorm_frozen: bool = True,
                      loss: str = "categorical_crossentropy", metrics=("accuracy",)):
    """The head on the backbone (tl.features.stack_head), `unfreeze`d and compiled with `optimizer()`.

    Called again for the same backbone model and head, it returns the same compiled model with
    its optimizer put back to the start (`reset_optimizer`) instead of a new one: a new Keras
    model traces its training step again, about ten seconds for EfficientNet-Lite0 on two
    cores, which the collapse study would pay for every seed. A fresh optimizer and a reset one
    are the same (zero steps, zero momentum). Used by chapter 1.
    """
    from ..train.features import stack_head

    unfreeze(backbone_model, keep_batchnorm_frozen)
    key = (id(backbone_model), id(head))
    known = _FINE_TUNING_MODELS.get(key)
    if known is not None and known[0] is backbone_model and known[1] is head:
        model = known[2]
        if model.optimizer.built:
            reset_optimizer(model.optimizer)
        return model
    model = stack_head(backbone_model, head)
    model.compile(optimizer=optimizer(), loss=loss, metrics=list(metrics))
    _FINE_TUNING_MODELS[key] = (backbone_model, head, model)
    return model


class Snapshot:
    """The weights of some Keras models, copied into memory now; `restore()` puts them back.

    Models that share layers (a head stacked on a backbone) come back together. Used by
    chapter 1 (the guard falls back to phase 1's weights; the collapse study starts every
    seed from the ImageNet weights and gives the run its own model back at the end).
    """

    def __init__(self, *models):
        self.models = models
        self.weights = [model.get_weights() for model in models]

    def restore(self) -> None:
        for model, weights in zip(self.models, self.weights):
            model.set_weights(weights)


def frozen_head_check(head, optimizer, train_features, y_train, val_features, y_val, epochs: int,
                      batch_size: int = 32, seed: int = 0, passes: int = 30) -> tuple[int, float]:
    """Train a fresh head on cached features; (correct validation images, validation loss).

    `head` is an untrained `mc_dropout_head`, compiled here with `optimizer` and categorical
    cross-entropy, then fitted for `epochs` (no early stopping) on `train_features` (views
    allowed) with integer labels `y_train`. It is scored by its MC-dropout mean of `passes`
    passes on `val_features` (N, D): how many of the N it gets right (argmax), and the
    cross-entropy of that mean. Phase 1 costs seconds this way, so settings can be compared
    on the validation split. Used by tl.fine_tuning.compare_frozen_settings (chapter 1).
    """
    import keras

    from ..evaluate.uncertainty import mc_predict
    from ..train.features import fit_head_on_features

    classes = int(head.outputs[0].shape[-1])
    head.compile(optimizer=optimizer, loss="categorical_crossentropy")
    fit_head_on_features(head, train_features, keras.utils.to_categorical(y_train, classes), val_features,
                         keras.utils.to_categorical(y_val, classes), epochs=epochs, batch_size=batch_size, seed=seed)
    mean = mc_predict(head, val_features, passes).mean(axis=0)
    y_val = np.asarray(y_val)
    loss = -np.mean(np.log(np.clip(mean[np.arange(len(y_val)), y_val], 1e-7, 1.0)))
    return int((mean.argmax(axis=1) == y_val).sum()), float(loss)


def compare_frozen_settings(new_head: Callable, arms: dict, y_train, y_val, epochs: int, batch_size: int = 32,
                            seed: int = 0, passes: int = 30, momentum: float = 0.9) -> pd.DataFrame:
    """Phase 1 under several settings, each scored on validation (`frozen_head_check`).

    `arms`: {name: (label, train_features, val_features, learning_rate, decay)}; every arm
    gets a fresh head from `new_head(seed)` and SGD with `momentum` (`sgd`). Returns one row
    per arm (index: name): its label, correct images, `accuracy` (an Estimate with its
    Wilson interval, tl.metrics.proportion) and the validation loss. Used by chapter 1 (the
    article's preprocessing and learning rate against ours).
    """
    rows = []
    for name, (label, x_train, x_val, learning_rate, decay) in arms.items():
        correct, loss = frozen_head_check(new_head(seed), sgd(learning_rate, decay, momentum), x_train, y_train,
                                          x_val, y_val, epochs, batch_size, seed=seed, passes=passes)
        rows.append({"arm": name, "label": label, "correct": correct,
                     "accuracy": proportion(correct, len(y_val)), "val_loss": loss})
    return pd.DataFrame(rows).set_index("arm")


def both_cross_entropies(targets, predicted) -> tuple[float, float]:
    """Keras' binary and categorical cross-entropy of the same one-hot `targets` and
    probabilities `predicted`, each averaged over the examples.

    On a two-way softmax they are the same number: each binary term is minus the
    log-probability of the true class. Used by chapter 1 (the article's loss).
    """
    import keras

    return tuple(float(keras.ops.mean(loss(targets, predicted)))
                 for loss in (keras.losses.binary_crossentropy, keras.losses.categorical_crossentropy))


def _cross_entropy(is_positive: np.ndarray, p_positive: np.ndarray) -> float:
    p = np.clip(np.asarray(p_positive, dtype=np.float64), 1e-7, 1 - 1e-7)
    return float(-np.mean(np.where(is_positive, np.log(p), np.log1p(-p))))


def collapsed(is_positive, p_positive, live_units: int | None = None, auc_at_most: float = COLLAPSE_AUC) -> bool:
    """Whether a binary model has collapsed on these (validation) images.

    Collapsed: its head has no live hidden unit (`live_units == 0`), or its probabilities
    are constant across the images, or their ROC AUC is at most `auc_at_most` (chance, or
    the wrong way round). `guard_phase2` records it for both candidates. Taught in chapter 1.
    """
    is_positive, p_positive = np.asarray(is_positive, dtype=bool), np.asarray(p_positive, dtype=np.float64)
    if live_units == 0 or np.ptp(p_positive) < _CONSTANT:
        return True
    return _roc_auc(is_positive, p_positive) <= auc_at_most


@dataclass
class GuardDecision:
    """What `guard_phase2` saw on the validation split, and which model it kept.

    `kept` is "phase 2" or "phase 1"; losses are the mean cross-entropy of each candidate's
    validation predictions, `*_val_roc_auc` their ROC AUC, `live_units` of `units` the hidden
    ReLU units of the phase-2 head that respond to a validation image. `collapsed_without_guard`
    is the phase-2 model's state (what the recipe without a guard delivers),
    `collapsed_with_guard` the kept model's. When phase 1's check (`check_phase1`) trained
    phase 1 again, `phase1_restarts` says how often, `phase1_collapsed` is True, and
    `collapsed_without_guard` is that of phase 2 trained on the first, collapsed phase 1 (the
    recipe with no guard at all). Used by chapter 1.
    """

    kept: str
    phase1_val_loss: float
    phase2_val_loss: float
    phase1_val_roc_auc: float
    phase2_val_roc_auc: float
    live_units: int
    units: int | None
    collapsed_without_guard: bool
    collapsed_with_guard: bool
    phase1_collapsed: bool = False
    phase1_restarts: int = 0

    @property
    def fell_back(self) -> bool:
        return self.kept == "phase 1"

    def describe(self) -> str:
        """One line: both candidates on validation and the rule's choice."""
        units = f"{self.live_units} of {self.units}" if self.units is not None else f"{self.live_units}"
        why = ("phase 2's head has no live unit" if self.live_units == 0 else
               "phase 2 did not lower the validation loss" if self.fell_back else
               "phase 2 lowered the validation loss and its head is alive")
        restarted = (f"phase 1 collapsed on validation and was trained again "
                     f"{self.phase1_restarts} time{'s' * (self.phase1_restarts > 1)}; "
                     if self.phase1_restarts else "")
        return (f"{restarted}guard, on validation: phase 1 loss {self.phase1_val_loss:.3f}, ROC AUC "
                f"{self.phase1_val_roc_auc:.3f}; phase 2 loss {self.phase2_val_loss:.3f}, ROC AUC "
                f"{self.phase2_val_roc_auc:.3f}, live hidden units {units} -> keeps {self.kept} ({why})")


def guard_phase2(is_positive, p_phase1, p_phase2, live_units: int, units: int | None = None,
                 auc_at_most: float = COLLAPSE_AUC) -> GuardDecision:
    """The guard on fine-tuning, decided on validation: keep phase 2 or go back to phase 1.

    `p_phase1`, `p_phase2`: each candidate's P(positive) for the same validation images,
    predicted the same way (phase 1: the head on the frozen backbone; phase 2: after
    fine-tuning). Phase 2 is kept only when its head has a live hidden unit (`live_units` > 0)
    and its validation cross-entropy is strictly below phase 1's; otherwise phase 1 is kept.
    The caller restores phase 1's weights when `decision.fell_back`. Whether each candidate
    has collapsed (`collapsed`, with `auc_at_most`) is recorded beside the decision, not used
    by it. Taught in chapter 1.
    """
    is_positive = np.asarray(is_positive, dtype=bool)
    p_phase1, p_phase2 = (np.asarray(p, dtype=np.float64) for p in (p_phase1, p_phase2))
    if not (len(is_positive) == len(p_phase1) == len(p_phase2)):
        raise ValueError(f"{len(is_positive)} labels, {len(p_phase1)} and {len(p_phase2)} predictions")
    loss1, loss2 = _cross_entropy(is_positive, p_phase1), _cross_entropy(is_positive, p_phase2)
    kept = "phase 2" if int(live_units) > 0 and loss2 < loss1 else "phase 1"
    collapsed1 = collapsed(is_positive, p_phase1, auc_at_most=auc_at_most)
    collapsed2 = collapsed(is_positive, p_phase2, int(live_units), auc_at_most)
    return GuardDecision(kept, loss1, loss2, _roc_auc(is_positive, p_phase1), _roc_auc(is_positive, p_phase2),
                         int(live_units), units, collapsed2, collapsed1 if kept == "phase 1" else collapsed2)


@dataclass
class Phase1Check:
    """What `check_phase1` did: the phase-1 result kept, and the seeds it was trained with.

    `kept` is the last `train(seed)` result (a (head, run) pair in chapter 1); `seeds` the
    seeds phase 1 was trained with, the first one's result included (one seed: it did not
    collapse); `collapsed` whether each of them collapsed on validation. Used by chapter 1.
    """

    kept: tuple
    seeds: list = field(default_factory=list)
    collapsed: list = field(default_factory=list)

    @property
    def restarts(self) -> int:
        return len(self.seeds) - 1

    def decision(self, plain: GuardDecision, guarded: GuardDecision | None = None) -> GuardDecision:
        """One record of the recipe with both guards, for `collapse_study`.

        `plain`: phase 2's guard after the first phase 1; `guarded`: after the phase 1 kept
        here, when there was a restart (else `plain` is the whole story). The record keeps
        `plain`'s phase-2 state as the recipe without guards and `guarded`'s kept model as the
        recipe with them.
        """
        first_collapsed = bool(self.collapsed[0]) if self.collapsed else False
        if not self.restarts:
            return replace(plain, phase1_collapsed=first_collapsed)
        if guarded is None:
            raise ValueError("phase 1 was trained again: pass the guard's decision after it")
        return replace(guarded, collapsed_without_guard=plain.collapsed_without_guard,
                       phase1_collapsed=first_collapsed, phase1_restarts=self.restarts)


def check_phase1(first: tuple, train: Callable[[int], tuple], has_collapsed: Callable[[tuple], bool],
                 seed: int, attempts: int = 3, quiet: bool = False, seed_step: int = 100) -> Phase1Check:
    """Phase 1's check, decided on validation: train again from a fresh head while it collapsed.

    `first` is phase 1 trained with `seed`; while `has_collapsed(result)` says the latest
    result collapsed on the validation split (`collapsed`: no live unit, constant output or
    ROC AUC at chance), phase 1 is trained again with `train(seed + k * seed_step)`, a new
    initialisation of the head (k = 1, 2, ...), at most `attempts` trainings in all; the last
    one is kept, collapsed or not. Prints a line per restart unless `quiet`. Taught in
    chapter 1.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    check = Phase1Check(first, [int(seed)], [bool(has_collapsed(first))])
    while check.collapsed[-1] and len(check.seeds) < attempts:
        next_seed = int(seed) + len(check.seeds) * seed_step
        if not quiet:
            print(f"phase 1 (seed {check.seeds[-1]}) collapsed on validation: trained again "
                  f"from a fresh head (seed {next_seed})", flush=True)
        check.kept = train(next_seed)
        check.seeds.append(next_seed)
        check.collapsed.append(bool(has_collapsed(check.kept)))
    return check


def collapse_study(recipe: Callable[[int], GuardDecision], seeds: Iterable[int], done: dict | None = None,
                   keep: tuple = (), quiet: bool = False) -> pd.DataFrame:
    """Run `recipe(seed)` for each seed; one row per seed of what its guard saw on validation.

    `recipe` trains phases 1 and 2 from the same starting weights with that seed and returns
    `guard_phase2`'s decision. `done` holds decisions already made ({seed: decision}, e.g. the
    run's own, listed first); `keep` are Keras models whose weights are put back afterwards
    (`Snapshot`), so the run carries on with its own model. The table (index: seed) has the
    decision's fields and the seconds each seed's training took (NaN for `done`); a line per
    seed is printed as it finishes (`quiet=True`: none). Taught in chapter 1.
    """
    kept = Snapshot(*keep)
    rows = []
    for seed in [*(done or {}), *seeds]:
        started = time.perf_counter()
        decision = (done or {}).get(seed) or recipe(int(seed))
        seconds = float("nan") if seed in (done or {}) else time.perf_counter() - started
        rows.append({"seed": int(seed), **asdict(decision), "seconds": seconds})
        if not quiet:
            flags = ["collapsed" if state else "alive"
                     for state in (decision.collapsed_without_guard, decision.collapsed_with_guard)]
            restarts = (f"phase 1 collapsed, trained again {decision.phase1_restarts}x; "
                        if decision.phase1_restarts else "")
            kept_auc = decision.phase2_val_roc_auc if decision.kept == "phase 2" else decision.phase1_val_roc_auc
            print(f"seed {seed}: without guards {flags[0]}; {restarts}with them {flags[1]} (kept "
                  f"{decision.kept}, val ROC AUC {kept_auc:.3f})"
                  + ("" if np.isnan(seconds) else f", {seconds:.0f} s"), flush=True)
    kept.restore()
    if not rows:
        raise ValueError("no seeds to study")
    return pd.DataFrame(rows).set_index("seed")


def collapse_rates(study: pd.DataFrame) -> dict[str, Estimate]:
    """The share of seeds whose model collapsed on validation, without and with the guards.

    Keys `collapse_rate_without_guard` (phase 2 on the first phase 1, no guard),
    `collapse_rate_with_guard` (the model the guards kept) and, when the study recorded it,
    `collapse_rate_phase1` (the first phase 1 alone), each an Estimate with its Wilson 95%
    interval (tl.metrics.proportion) over the seeds of `collapse_study`'s table. Taught in
    chapter 1.
    """
    n = len(study)
    rates = {f"collapse_rate_{name}_guard": proportion(int(study[f"collapsed_{name}_guard"].sum()), n)
             for name in ("without", "with")}
    if "phase1_collapsed" in study:
        rates["collapse_rate_phase1"] = proportion(int(study.phase1_collapsed.sum()), n)
    return rates


def describe_collapse(study: pd.DataFrame) -> str:
    """`collapse_rates` of a study in words: one line per rate with its count of seeds.

    Taught in chapter 1.
    """
    rates = collapse_rates(study)
    columns = {"collapse_rate_without_guard": "collapsed_without_guard",
               "collapse_rate_with_guard": "collapsed_with_guard", "collapse_rate_phase1": "phase1_collapsed"}
    return "\n".join(f"{name}: {rate} ({int(study[columns[name]].sum())} of {len(study)} seeds)"
                     for name, rate in rates.items())
