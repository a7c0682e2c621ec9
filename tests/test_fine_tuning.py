"""Chapter 1's guard on fine-tuning, the definition of a collapsed run and the collapse study."""
import tl_helpers  # noqa: F401  (first: loads triton before TensorFlow)

import keras
import numpy as np
import pytest

from tl_helpers.evaluate.uncertainty import live_hidden_units, mc_dropout_head
from tl_helpers.techniques.fine_tuning import (Snapshot, both_cross_entropies, check_phase1, collapse_rates, collapse_study,
                                               collapsed, compare_frozen_settings, describe_collapse,
                                               fine_tuning_model, guard_phase2, reset_optimizer, sgd, unfreeze)

Y = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
GOOD = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.8, 0.9])  # ranks perfectly, loss ~0.34
FAIR = np.array([0.3, 0.4, 0.45, 0.6, 0.4, 0.55, 0.6, 0.7])  # ranks 0.81, loss ~0.61
CONSTANT = np.full(8, 0.6)  # a dead head: the same answer for every image


def test_collapsed_means_constant_dead_or_no_better_than_chance():
    assert not collapsed(Y, GOOD)
    assert collapsed(Y, CONSTANT)  # constant probabilities
    assert collapsed(Y, GOOD, live_units=0)  # no live unit left, whatever the numbers
    assert collapsed(Y, 1 - GOOD)  # ranked the wrong way round: AUC 0
    assert collapsed(Y, np.tile([0.2, 0.4, 0.6, 0.8], 2))  # both classes alike: AUC 0.5
    assert not collapsed(Y, FAIR) and collapsed(Y, FAIR, auc_at_most=0.9)


def test_guard_keeps_phase_2_only_when_it_lowers_the_validation_loss_with_a_live_head():
    better = guard_phase2(Y, FAIR, GOOD, live_units=3, units=4)
    assert better.kept == "phase 2" and not better.fell_back
    assert better.phase2_val_loss < better.phase1_val_loss
    assert better.phase2_val_roc_auc == 1.0 and not better.collapsed_with_guard
    worse = guard_phase2(Y, GOOD, FAIR, live_units=4)
    assert worse.kept == "phase 1" and worse.fell_back  # alive, but a higher loss
    dead = guard_phase2(Y, FAIR, CONSTANT, live_units=0, units=4)
    assert dead.kept == "phase 1"
    assert dead.collapsed_without_guard and not dead.collapsed_with_guard
    # a lower loss does not save a head without live units
    assert guard_phase2(Y, CONSTANT, GOOD, live_units=0).kept == "phase 1"
    assert "keeps phase 1 (phase 2's head has no live unit)" in dead.describe()
    assert "0 of 4" in dead.describe()
    with pytest.raises(ValueError):
        guard_phase2(Y, GOOD[:7], GOOD, live_units=1)


def test_guard_records_a_collapse_it_could_not_avoid():
    # both candidates at chance: the guard keeps phase 1, which has collapsed too
    both = guard_phase2(Y, CONSTANT, CONSTANT, live_units=0)
    assert both.collapsed_without_guard and both.collapsed_with_guard


def test_collapse_study_and_rates_with_wilson_intervals(capsys):
    outcomes = {1: (FAIR, GOOD, 4), 2: (FAIR, CONSTANT, 0), 3: (GOOD, FAIR, 2), 4: (FAIR, GOOD, 1)}
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    weights = [w.copy() for w in model.get_weights()]

    def recipe(seed):  # trains (here: spoils) the model, as a real recipe would
        model.set_weights([w + seed for w in weights])
        return guard_phase2(Y, *outcomes[seed])

    study = collapse_study(recipe, [2, 3, 4], done={1: guard_phase2(Y, *outcomes[1])}, keep=(model,))
    assert list(study.index) == [1, 2, 3, 4]  # the run's own seed first
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights))  # put back
    assert np.isnan(study.seconds[1]) and (study.seconds[[2, 3, 4]] >= 0).all()
    assert list(study.kept) == ["phase 2", "phase 1", "phase 1", "phase 2"]
    assert study.collapsed_without_guard.tolist() == [False, True, False, False]
    assert "seed 2: without guards collapsed" in capsys.readouterr().out
    rates = collapse_rates(study)
    without, with_guard = rates["collapse_rate_without_guard"], rates["collapse_rate_with_guard"]
    assert without.value == 0.25 and with_guard.value == 0.0
    assert 0.0 < without.low < 0.25 < without.high < 1.0  # Wilson: never a zero-width interval
    assert with_guard.low == 0.0 and 0.3 < with_guard.high < 0.7  # 0 of 4 still allows a lot
    with pytest.raises(ValueError):
        collapse_study(lambda seed: None, [])


def test_sgd_has_keras_2_decay_as_inverse_time_decay():
    optimizer = sgd(0.2, decay=0.01, momentum=0.9)
    assert float(optimizer.momentum) == 0.9
    schedule = keras.optimizers.schedules.deserialize(optimizer.get_config()["learning_rate"])
    assert isinstance(schedule, keras.optimizers.schedules.InverseTimeDecay)
    assert np.isclose(float(schedule(100)), 0.2 / (1 + 0.01 * 100))
    assert np.isclose(float(sgd(0.01).learning_rate), 0.01)  # no decay: a plain rate


def test_unfreeze_keeps_batchnorm_frozen_and_snapshot_restores_shared_weights():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    backbone = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))
    for layer in backbone.layers:
        layer.trainable = False
    trainable = unfreeze(backbone)
    assert backbone.get_layer("conv").trainable and not backbone.get_layer("bn").trainable
    assert trainable == 3 * 3 * 3 * 4 + 4  # the conv's kernel and bias only
    assert unfreeze(backbone, keep_batchnorm_frozen=False) == trainable + 2 * 4
    head = mc_dropout_head(4, 2, seed=0)
    model = keras.Model(backbone.input, head(backbone.output))
    before = [w.copy() for w in model.get_weights()]
    kept = Snapshot(backbone, head)
    for part in (backbone, head):
        part.set_weights([w * 0 for w in part.get_weights()])
    assert not live_hidden_units(head, np.ones((1, 4))).any()  # zeroed: a dead head
    kept.restore()  # the stacked model shares both, so it comes back too
    after = model.get_weights()
    assert len(after) == len(before) and all(np.array_equal(a, b) for a, b in zip(after, before))
    assert any(np.abs(w).sum() > 0 for w in after)


def test_describe_collapse_counts_the_seeds():
    study = collapse_study(lambda seed: guard_phase2(Y, FAIR, CONSTANT if seed == 2 else GOOD,
                                                     live_units=0 if seed == 2 else 4), [1, 2, 3], quiet=True)
    lines = describe_collapse(study).splitlines()
    assert lines[0].startswith("collapse_rate_without_guard: 0.333 (") and lines[0].endswith("(1 of 3 seeds)")
    assert lines[1].startswith("collapse_rate_with_guard: 0.000 (") and lines[1].endswith("(0 of 3 seeds)")


def test_compare_frozen_settings_learns_separable_features_and_spots_a_bad_arm():
    rng = np.random.default_rng(0)
    y_train, y_val = np.repeat([0, 1], 40), np.repeat([0, 1], 20)

    def features(labels, signal):
        x = rng.normal(0, 1, (len(labels), 16)).astype("float32")
        x[:, 0] += signal * (2 * labels - 1)
        return x

    good = (features(y_train, 3.0), features(y_val, 3.0))
    noise = (features(y_train, 0.0), features(y_val, 0.0))
    table = compare_frozen_settings(lambda seed: mc_dropout_head(16, 2, seed=seed), {
        "separable": ("features that carry the label", *good, 0.05, 0.0),
        "noise": ("features without it", *noise, 0.05, 0.0)}, y_train, y_val, epochs=30, batch_size=16)
    assert list(table.index) == ["separable", "noise"]
    assert table.loc["separable", "correct"] >= 36 and table.loc["separable", "accuracy"].value >= 0.9
    assert table.loc["noise", "accuracy"].value < 0.8  # noise: near chance
    assert table.loc["separable", "val_loss"] < table.loc["noise", "val_loss"]


def test_both_cross_entropies_agree_on_a_two_way_softmax():
    targets = np.eye(2, dtype="float32")[[0, 1, 1, 0]]
    predicted = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.5, 0.5]], dtype="float32")
    binary, categorical = both_cross_entropies(targets, predicted)
    expected = -np.mean(np.log([0.9, 0.7, 0.4, 0.5]))
    assert np.isclose(binary, categorical, atol=1e-6) and np.isclose(categorical, expected, atol=1e-6)


def _small_backbone():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x))


def test_fine_tuning_model_is_compiled_once_and_its_optimizer_reset_on_the_next_call():
    backbone, head = _small_backbone(), mc_dropout_head(4, 2, seed=0)
    x = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    y = np.eye(2, dtype="float32")[np.arange(16) % 2]
    model = fine_tuning_model(backbone, head, lambda: sgd(0.01, decay=0.1))
    assert backbone.get_layer("conv").trainable and not backbone.get_layer("bn").trainable
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert int(model.optimizer.iterations) == 4
    assert any(np.abs(np.asarray(v)).sum() > 0 for v in model.optimizer.variables if "momentum" in v.path)
    train_function = model.train_function
    again = fine_tuning_model(backbone, head, lambda: sgd(0.01, decay=0.1))
    assert again is model and again.train_function is train_function  # no new trace
    assert int(model.optimizer.iterations) == 0  # as a fresh optimizer starts
    assert all(np.abs(np.asarray(v)).sum() == 0 for v in model.optimizer.variables)
    other = fine_tuning_model(backbone, mc_dropout_head(4, 2, seed=1), lambda: sgd(0.01))
    assert other is not model  # another head: its own model


def test_reset_optimizer_keeps_a_plain_learning_rate():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0)
    reset_optimizer(model.optimizer)
    assert int(model.optimizer.iterations) == 0
    assert np.isclose(float(model.optimizer.learning_rate), 0.05)


def test_phase1_check_trains_again_from_fresh_heads_while_collapsed(capsys):
    trained = []

    def train(seed):  # seeds 107 and 207 collapse in this made-up world, 307 does not
        trained.append(seed)
        return (seed, "run")

    alive_first = check_phase1((7, "run"), train, lambda result: False, seed=7)
    assert alive_first.restarts == 0 and alive_first.kept == (7, "run") and trained == []
    check = check_phase1((7, "run"), train, lambda result: result[0] in (7, 107, 207), seed=7, attempts=5)
    assert trained == [107, 207, 307] and check.seeds == [7, 107, 207, 307]
    assert check.collapsed == [True, True, True, False] and check.restarts == 3 and check.kept == (307, "run")
    assert "phase 1 (seed 7) collapsed on validation" in capsys.readouterr().out
    trained.clear()
    capped = check_phase1((7, "run"), train, lambda result: True, seed=7, attempts=2, quiet=True)
    assert trained == [107] and capped.kept == (107, "run")  # the last one is kept, collapsed or not
    assert capsys.readouterr().out == ""
    with pytest.raises(ValueError):
        check_phase1((7, "run"), train, lambda result: True, seed=7, attempts=0)


def test_phase1_check_puts_both_recipes_on_one_record():
    plain = guard_phase2(Y, CONSTANT, CONSTANT, live_units=0)  # phase 1 dead, phase 2 too
    guarded = guard_phase2(Y, FAIR, GOOD, live_units=3)  # after a fresh phase 1
    check = check_phase1(("dead", None), lambda seed: ("alive", None), lambda r: r[0] == "dead", seed=1)
    record = check.decision(plain, guarded)
    assert record.collapsed_without_guard and not record.collapsed_with_guard
    assert record.phase1_collapsed and record.phase1_restarts == 1 and record.kept == "phase 2"
    assert "phase 1 collapsed on validation and was trained again 1 time;" in record.describe()
    with pytest.raises(ValueError):
        check.decision(plain)  # a restart needs the guard's decision after it
    alive = check_phase1(("alive", None), None, lambda r: False, seed=1).decision(guarded)
    assert not alive.phase1_collapsed and alive.phase1_restarts == 0 and alive == guarded
    study = collapse_study(lambda seed: record if seed == 2 else alive, [1, 2, 3], quiet=True)
    rates = collapse_rates(study)
    assert rates["collapse_rate_phase1"].value == pytest.approx(1 / 3)
    assert rates["collapse_rate_without_guard"].value == pytest.approx(1 / 3)
    assert rates["collapse_rate_with_guard"].value == 0.0
