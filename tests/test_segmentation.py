"""ResUNet, Tversky/Dice losses and the Dice scoring conventions, on known masks and real slices."""
import numpy as np
import pandas as pd
import pytest

import tl_helpers  # noqa: F401  (first: loads triton before TensorFlow)
from conftest import shared_data_dir
from tl_helpers.evaluate import metrics
from tl_helpers.techniques import segmentation as seg
from tl_helpers.train.loaders import load_example

import keras  # noqa: I001


@pytest.fixture
def fits_run_eagerly():
    """These tests fit tiny models for a few steps: tracing Keras' train step into a TensorFlow
    graph costs more than the steps themselves (measured: 108 s for this file in graph mode,
    the five tests using this 42 s faster eagerly). What they check does not depend on it, and
    chapter 4's smoke run covers the graph path."""
    if keras.backend.backend() != "tensorflow":
        yield
        return
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


def square(size=8, top=2, left=2, side=4):
    mask = np.zeros((size, size), np.float32)
    mask[top:top + side, left:left + side] = 1
    return mask


def test_tversky_scores_weigh_misses_by_alpha():
    truth = square()[None]
    half = square(side=4)[None].copy()
    half[0, 2:4] = 0  # predicts 8 of the 16 tumour pixels, no false positives
    # TP 8, FN 8, FP 0: alpha 0.7 -> 8 / (8 + 5.6)
    np.testing.assert_allclose(seg.tversky_scores(truth, half), [8 / 13.6])
    np.testing.assert_allclose(seg.tversky_scores(truth, half, alpha=0.5), metrics.dice_scores(truth, half))


def test_soft_tversky_and_dice_match_the_hard_scores_on_binary_masks():
    truth = np.stack([square(), square()])[..., None]
    pred = np.stack([square(), square(left=4)])[..., None]
    dice = keras.ops.convert_to_numpy(seg.dice_coefficient(truth, pred, smooth=0.0))
    np.testing.assert_allclose(dice, [1.0, 0.5], rtol=1e-6)
    index = keras.ops.convert_to_numpy(seg.tversky_index(truth, pred, smooth=0.0))
    np.testing.assert_allclose(index, seg.tversky_scores(truth, pred), rtol=1e-6)
    loss = keras.ops.convert_to_numpy(seg.focal_tversky_loss(smooth=0.0)(truth, pred))
    np.testing.assert_allclose(loss, (1 - index) ** seg.FOCAL_GAMMA, rtol=1e-5)
    assert loss[0] == pytest.approx(0.0, abs=1e-6)


def test_pipeline_masks_count_misses_and_false_alarms():
    truth = np.stack([square(), square(), np.zeros((8, 8)), np.zeros((8, 8))])
    segmenter = np.stack([square(), square(), square(), np.zeros((8, 8))])
    flagged = np.array([True, False, True, True])  # a miss, a false alarm, a harmless flag
    scores = metrics.dice_scores(truth, seg.pipeline_masks(flagged, segmenter))
    np.testing.assert_allclose(scores, [1.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError):
        seg.pipeline_masks(flagged[:2], segmenter)


def test_per_patient_dice_and_patient_bootstrap():
    patients = ["b", "a", "a", "b", "b", "c"]
    scores = [0.0, 1.0, 0.5, 0.5, 1.0, 0.9]
    table = seg.per_patient_dice(patients, scores)
    assert list(table.patient) == ["a", "b", "c"]
    assert list(table.slices) == [2, 3, 1]
    np.testing.assert_allclose(table.mean_dice, [0.75, 0.5, 0.9])
    with pytest.warns(metrics.FewGroupsWarning):  # three patients: the value, no interval
        estimate = metrics.bootstrap_ci(np.mean, scores, groups=patients, n_boot=200)
    assert estimate.value == pytest.approx(np.mean(scores)) and np.isnan(estimate.low) and np.isnan(estimate.high)
    many = [f"p{i}" for i in range(metrics.MIN_GROUPS_FOR_INTERVAL) for _ in range(2)]
    spread = np.linspace(0.1, 0.9, len(many))
    estimate = metrics.bootstrap_ci(np.mean, spread, groups=many, n_boot=200)
    assert estimate.low < estimate.value < estimate.high


def test_resunet_output_shape_and_size_check():
    model = seg.build_resunet((32, 32, 3), filters=(4, 8, 16))
    out = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
    assert out.shape == (2, 32, 32, 1)
    assert ((out >= 0) & (out <= 1)).all()
    assert seg.build_resunet((64, 64, 3)).count_params() > 1_500_000  # the ~2M model of the chapter
    with pytest.raises(ValueError):
        seg.build_resunet((36, 36, 3), filters=(4, 8, 16, 32))


def tumour_batch(size=32, count=4):
    """Real LGG tumour slices and masks at `size`, else drawn squares on noise."""
    root = shared_data_dir()
    if root is not None and (root / "lgg_mri_segmentation").is_dir():
        from tl_helpers.data import lgg_slice_table

        table = lgg_slice_table(root / "lgg_mri_segmentation")
        rows = table[table.has_tumour & (table.patient == table.patient.iloc[0])].head(count)
        pairs = [load_example(r.image_path, (size, size), mask_path=r.mask_path) for r in rows.itertuples()]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
    rng = np.random.default_rng(0)
    masks = np.stack([square(size, 8 + i, 8, 12) for i in range(count)])[..., None]
    return rng.normal(100, 20, (count, size, size, 3)).astype(np.float32) + 80 * masks, masks


@pytest.mark.usefixtures("fits_run_eagerly")
def test_focal_tversky_loss_decreases_on_a_real_batch():
    images, masks = tumour_batch()
    assert masks.sum() > 0
    keras.utils.set_random_seed(0)
    model = seg.build_resunet(images.shape[1:], filters=(8, 16, 32))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=seg.focal_tversky_loss(),
                  metrics=[seg.dice_coefficient])
    history = model.fit(seg.standardize_images(images), masks, epochs=15, batch_size=len(images), verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.8 * losses[0]


def test_standardize_images_is_per_image():
    images = np.stack([np.full((4, 4, 3), 10.0), np.arange(48, dtype=np.float32).reshape(4, 4, 3) * 3])
    out = seg.standardize_images(images)
    np.testing.assert_allclose(out[0], 0.0)
    assert out[1].mean() == pytest.approx(0.0, abs=1e-5)
    assert out[1].std() == pytest.approx(1.0, abs=1e-4)


def test_pooled_flat_features_shrinks_the_pool_for_small_maps():
    inputs = keras.Input((16, 16, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(5, 3, strides=8, padding="same")(inputs))  # 2x2x5 map
    frozen = seg.pooled_flat_features(backbone)
    assert frozen.output.shape[-1] == 5
    inputs = keras.Input((64, 64, 3))
    backbone = keras.Model(inputs, keras.layers.Conv2D(5, 3, strides=8, padding="same")(inputs))  # 8x8x5 map
    assert seg.pooled_flat_features(backbone).output.shape[-1] == 2 * 2 * 5


@pytest.mark.usefixtures("fits_run_eagerly")
def test_pretrained_unet_takes_skips_from_the_backbone_and_keeps_its_weights():
    from tl_helpers.train.backbones import get_backbone

    backbone = get_backbone("efficientnet_lite0", input_shape=(64, 64, 3), pooling=None)
    skips = seg.encoder_skip_layers(backbone.model)
    sizes = [tuple(backbone.model.get_layer(name).output.shape[1:3]) for name in skips]
    assert sizes == [(32, 32), (16, 16), (8, 8), (4, 4)]
    before = {w.path: keras.ops.convert_to_numpy(w) for w in backbone.model.weights}
    model = seg.build_pretrained_unet(backbone.model)
    images, masks = tumour_batch(size=64)
    out = model.predict(backbone.preprocess(images), verbose=0)
    assert out.shape == (len(images), 64, 64, 1) and ((out >= 0) & (out <= 1)).all()
    shared = [w for w in model.weights if w.path in before]
    assert len(shared) == len(before)  # the encoder's ImageNet weights are the U-Net's, not copies
    assert all(np.array_equal(keras.ops.convert_to_numpy(w), before[w.path]) for w in shared)
    batchnorms = [layer for layer in backbone.model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)
    keras.utils.set_random_seed(0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=seg.focal_tversky_loss())
    losses = model.fit(backbone.preprocess(images), masks, epochs=8, batch_size=len(images), verbose=0).history["loss"]
    assert losses[-1] < 0.8 * losses[0]
    with pytest.raises(ValueError):
        seg.build_pretrained_unet(get_backbone("efficientnet_lite0", input_shape=(48, 48, 3), pooling=None).model)


def test_volumetric_dice_sums_over_a_patients_slices():
    big, small = square(8, 0, 0, 8), square(8, 0, 0, 2)  # 64 and 4 tumour pixels
    truth = np.stack([big, small, np.zeros((8, 8)), np.zeros((8, 8))])
    pred = np.stack([big, np.zeros((8, 8)), np.zeros((8, 8)), np.zeros((8, 8))])
    table = seg.volumetric_dice(["a", "a", "b", "b"], truth, pred)
    assert list(table.patient) == ["a", "b"] and list(table.slices) == [2, 2]
    # a: 2 * 64 / (68 + 64); slice means would give (1 + 0) / 2; b: nothing to find, nothing found
    np.testing.assert_allclose(table.dice, [128 / 132, 1.0])
    with pytest.raises(ValueError):
        seg.volumetric_dice(["a"], truth, pred)


# --- chapter 4: stage 1 cross-validated by patient (tl.segmentation.cross_validate_head) ---

@pytest.fixture(scope="module")
def lgg_flair_features(tmp_path_factory):
    """Synthetic LGG slices written as files, and three numbers read from each slice: the
    mean, 99.9th percentile and maximum of FLAIR minus pre-contrast (the tumour is brighter in
    FLAIR), standardised."""
    from tl_helpers.data.images import read_image
    from tl_helpers.data.synthetic import synthesize
    from tl_helpers.data.tables import lgg_slice_table

    table = lgg_slice_table(synthesize("lgg_mri_segmentation", tmp_path_factory.mktemp("lgg") / "data"))
    images = [read_image(path).astype(np.float32) / 255 for path in table.image_path]
    excess = [image[..., 1] - image[..., 0] for image in images]
    features = np.array([[e.mean(), np.percentile(e, 99.9), e.max()] for e in excess], np.float32)
    return table, (features - features.mean(axis=0)) / features.std(axis=0)


def test_cross_validate_head_predicts_each_slice_once_from_its_folds_own_patients(lgg_flair_features, tmp_path):
    from sklearn.metrics import roc_auc_score
    from tl_helpers.data.splits import grouped_kfold
    from tl_helpers.train.features import dense_head

    table, features = lgg_flair_features
    seen = []  # what each fold's head was trained and validated on

    def make_head():
        head = dense_head(features.shape[1], outputs=2, hidden_units=(8,))
        head.compile(optimizer="adam", loss="categorical_crossentropy")
        fit = head.fit
        head.fit = lambda x, y, validation_data, **kw: (seen.append((x, validation_data[0])), fit(
            x, y, validation_data=validation_data, **kw))[1]
        return head

    result = seg.cross_validate_head(table, features, make_head, ("sensitivity", 0.95), n_folds=3, seed=1,
                                     patience=5, epochs=20, batch_size=8, checkpoint_dir=tmp_path)
    folds = grouped_kfold(table, "patient", n_folds=3, label_col="has_tumour", seed=1, inner_val_fraction=0.2)
    assert len(seen) == 3 and sorted(p.name for p in tmp_path.iterdir()) == [f"fold{k}.weights.h5" for k in range(3)]
    assert not np.isnan(result.p_positive).any()  # every slice predicted
    for k, fold in enumerate(folds):
        np.testing.assert_array_equal(seen[k][0], features[fold["train"]])
        np.testing.assert_array_equal(seen[k][1], features[fold["val"]])
        test_rows = fold["test"]
        assert set(table.patient.iloc[test_rows]).isdisjoint(table.patient.iloc[fold["train"]])
        row = result.per_fold.loc[k]
        assert row["test slices"] == len(test_rows)
        assert row["test patients"] == table.patient.iloc[test_rows].nunique()
        np.testing.assert_array_equal(result.called[test_rows], result.p_positive[test_rows] >= row.threshold)
    y = table.has_tumour.to_numpy().astype(int)
    report = result.report(at_specificity=0.9, seed=0)
    assert list(report) == ["roc_auc", "sensitivity", "specificity", "sensitivity_at_specificity_90"]
    assert report["roc_auc"].value == pytest.approx(roc_auc_score(y, result.p_positive))
    assert report["sensitivity"].value == pytest.approx(result.called[y == 1].mean())
    assert report["specificity"].value == pytest.approx(1 - result.called[y == 0].mean())
    assert report["roc_auc"].value > 0.8  # the FLAIR excess finds the tumour
    assert result.spread()["sensitivity"].n == 3


def test_dice_report_and_pipeline_report_follow_the_stated_rules():
    patients = np.array(["a", "a", "b", "b"])
    truth = np.stack([square(), square(), square(), np.zeros((8, 8))])
    predicted = np.stack([square(), np.zeros((8, 8)), square(side=2), np.zeros((8, 8))])
    report, per_patient = seg.dice_report(patients, truth, predicted, seed=0)
    slice_dice = metrics.dice_scores(truth, predicted)  # 1, 0, 0.4, 1 (empty on empty)
    np.testing.assert_allclose(slice_dice, [1.0, 0.0, 0.4, 1.0])
    assert report["dice_mean"].value == pytest.approx(0.6)
    assert report["dice_median"].value == pytest.approx(0.7)
    assert list(per_patient.patient) == ["a", "b"]
    np.testing.assert_allclose(per_patient.mean_dice, [0.5, 0.7])
    np.testing.assert_allclose(per_patient.volumetric_dice, [2 * 16 / 48, 2 * 4 / 20])
    assert report["dice_volumetric_per_patient_mean"].value == pytest.approx((2 / 3 + 0.4) / 2)

    # the pipeline: a miss, a hit, a false alarm, a tumour-free slice left alone
    has_tumour = np.array([True, True, False, False])
    flagged = np.array([False, True, True, False])
    truth = np.stack([square(), square(), np.zeros((8, 8)), np.zeros((8, 8))])
    final = seg.pipeline_masks(flagged, np.stack([square()] * 4))
    report, per_slice, volumes = seg.pipeline_report(patients, truth, final, has_tumour, flagged, seed=0)
    assert list(per_slice.outcome) == ["tumour, missed (Dice 0)", "tumour, flagged",
                                       "no tumour, false alarm (Dice 0)", "no tumour, not flagged (Dice 1)"]
    np.testing.assert_allclose(per_slice.dice, [0.0, 1.0, 0.0, 1.0])
    assert report["pipeline_dice_mean"].value == pytest.approx(0.5)
    assert report["pipeline_dice_tumour_mean"].value == pytest.approx(0.5)
    np.testing.assert_allclose(volumes.dice, [2 * 16 / 48, 0.0])
    nothing_drawn = seg.pipeline_report(patients, truth, seg.pipeline_masks(flagged, np.zeros((4, 8, 8))),
                                        has_tumour, flagged)[1]
    assert nothing_drawn.outcome[2] == "no tumour, flagged, nothing drawn (Dice 1)"


# --- chapter 4: training and showing the segmenters, the two-stage masks, the folds' record ---

@pytest.mark.usefixtures("fits_run_eagerly")
def test_fit_segmenter_trains_within_the_time_budget_and_says_what_stopped_it(lgg_flair_features, tmp_path,
                                                                               capsys):
    from tl_helpers.train.loaders import KerasImageDataset

    table = lgg_flair_features[0]
    data = KerasImageDataset(table[table.has_tumour].head(8), x_col="image_path", y_col=None,
                             mask_col="mask_path", class_mode="mask", image_size=(32, 32), batch_size=4,
                             shuffle=False, preprocess=seg.standardize_images)
    keras.utils.set_random_seed(0)
    model = seg.build_resunet((32, 32, 3), filters=(4, 8, 16, 32))
    run = seg.fit_segmenter(model, data, data, tmp_path / "r.weights.h5", patience=50,
                            epochs=3, learning_rate=1e-3, seconds=None, name="tiny")
    assert run.epochs_run == 3 and "dice_coefficient" in run.history.history
    assert capsys.readouterr().out.splitlines()[-1] == "stopped by early stopping or the epoch limit"
    run = seg.fit_segmenter(model, data, data, tmp_path / "r.weights.h5", patience=50,
                            epochs=3, learning_rate=1e-3, seconds=0.0, name="tiny")
    assert run.epochs_run == 1  # a zero budget ends after the first epoch
    assert capsys.readouterr().out.splitlines()[-1] == "stopped by the time budget"
    line = seg.run_line("tiny", run, metrics.Estimate(0.5, 0.4, 0.6))
    best = run.history.history["val_dice_coefficient"][0]
    assert line.startswith("tiny                     1 epochs in ") and line.endswith(
        f"best epoch 1: soft validation Dice {best:.3f}; test mean Dice 0.500")


def test_two_stage_masks_segment_only_the_flagged_slices():
    inputs = keras.Input((8, 8, 3))  # a "segmenter" that draws a full mask on any slice
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: keras.ops.ones_like(x[..., :1]))(inputs))
    seen, predict = [], model.predict
    model.predict = lambda x, **kw: (seen.append(x.copy()), predict(x, **kw))[1]
    images = np.arange(4 * 8 * 8 * 3, dtype=np.float32).reshape(4, 8, 8, 3)
    final = seg.two_stage_masks(model, images, [True, False, True, False], batch_size=2)
    assert final.shape == (4, 8, 8) and final.dtype == bool  # binarize drops the channel
    assert final[[0, 2]].all() and not final[[1, 3]].any()
    assert len(seen) == 1
    np.testing.assert_array_equal(seen[0], images[[0, 2]])  # only the flagged slices
    assert not seg.two_stage_masks(model, images, [False] * 4).any() and len(seen) == 1  # no call


def test_best_to_worst_spaces_picks_from_the_highest_score_to_the_lowest():
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.0])
    np.testing.assert_array_equal(seg.best_to_worst(scores, [0, 1, 2, 3, 4], 3), [1, 2, 0])
    np.testing.assert_array_equal(seg.best_to_worst(scores, [5, 0], 1), [0])


def test_out_of_fold_record_puts_the_report_and_the_spread_on_a_real_run_card(tmp_path):
    from tl_helpers.workflow.runcard import RunCard

    per_fold = pd.DataFrame({"roc_auc": [0.8, 0.9], "sensitivity": [1.0, 0.5], "specificity": [0.5, 1.0]})
    y = np.array([1, 1, 0, 0, 1, 0])
    result = seg.OutOfFold(y, np.array([0.9, 0.4, 0.2, 0.6, 0.8, 0.1]), np.array([1, 0, 0, 1, 1, 0], bool), per_fold)
    card = RunCard("04_test", profile="smoke", seed=0)
    report, spread = result.record(card, "stage1_cv", "2-fold", "stage 1", seed=0)
    assert report == result.report(seed=0)
    recorded = card.record["metrics"]
    assert list(recorded) == ["stage1_cv_roc_auc", "stage1_cv_sensitivity", "stage1_cv_specificity"]
    assert recorded["stage1_cv_sensitivity"]["value"] == pytest.approx(2 / 3)
    assert recorded["stage1_cv_sensitivity"]["split"] == "2-fold"
    assert list(spread.index) == ["roc_auc", "sensitivity", "specificity"]
    assert spread.loc["roc_auc", "mean"] == pytest.approx(0.85)
    assert card.record["notes"][-1].startswith("stage 1, spread over the 2 patient folds: roc_auc 0.850 ± ")


# --- chapter 4: the segmenter cross-validated on cached encoder features ---------------------

@pytest.mark.usefixtures("fits_run_eagerly")
def test_decoder_on_cached_features_is_the_unet_with_its_encoder_frozen():
    from tl_helpers.train.backbones import get_backbone

    backbone = get_backbone("efficientnet_lite0", input_shape=(64, 64, 3), pooling=None)
    keras.utils.set_random_seed(0)
    unet = seg.build_pretrained_unet(backbone.model, train_encoder=False)
    features = seg.encoder_features(backbone.model)
    shapes = [tuple(output.shape[1:]) for output in features.outputs]
    assert [shape[:2] for shape in shapes] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    decoder = seg.build_unet_decoder(shapes)
    unet_layers = {layer.name: layer for layer in unet.layers}
    copied = [layer for layer in decoder.layers if layer.weights]
    assert copied and all(layer.name in unet_layers for layer in copied)  # the same layers by name
    for layer in copied:
        layer.set_weights(unet_layers[layer.name].get_weights())
    trained = sum(int(np.prod(w.shape)) for w in unet.trainable_weights)
    assert trained == sum(int(np.prod(w.shape)) for w in decoder.trainable_weights)
    images = backbone.preprocess(tumour_batch(size=64)[0])
    np.testing.assert_allclose(decoder.predict(features.predict(images, verbose=0), verbose=0),
                               unet.predict(images, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="feature maps for 4 decoder levels"):
        seg.build_unet_decoder(shapes[1:])


@pytest.mark.usefixtures("fits_run_eagerly")
def test_cross_validate_segmenter_draws_each_slice_from_its_folds_own_patients(lgg_flair_features, tmp_path):
    from tl_helpers.data.splits import grouped_kfold
    from tl_helpers.train.loaders import KerasImageDataset, all_batches

    table = lgg_flair_features[0]
    images, masks = all_batches(KerasImageDataset(
        table, x_col="image_path", y_col=None, mask_col="mask_path", class_mode="mask", image_size=(32, 32),
        batch_size=16, shuffle=False, preprocess=seg.standardize_images))
    # "features" at 1/2 ... 1/32 of the slice: average-pooled images stand in for an encoder's maps
    features = [keras.ops.convert_to_numpy(keras.layers.AveragePooling2D(2 ** level)(images))
                for level in range(1, 6)]
    trained_on = []

    def make_decoder():
        decoder = seg.build_unet_decoder([f.shape[1:] for f in features], decoder_filters=(8, 8, 8, 8))
        fit = decoder.fit
        decoder.fit = lambda x, **kw: (trained_on.append(x.inputs[0]), fit(x, **kw))[1]  # ArrayBatches
        return decoder

    result = seg.cross_validate_segmenter(table, features, masks, make_decoder, n_folds=3, seed=2, patience=3,
                                          epochs=4, batch_size=8, checkpoint_dir=tmp_path)
    folds = grouped_kfold(table, "patient", n_folds=3, label_col="has_tumour", seed=2, inner_val_fraction=0.2)
    tumour = table.has_tumour.to_numpy()
    assert len(trained_on) == 3 and list(result.per_fold.index) == [0, 1, 2]
    for k, fold in enumerate(folds):
        train = fold["train"][tumour[fold["train"]]]  # tumour slices of the fold's training patients only
        np.testing.assert_array_equal(trained_on[k], features[0][train])
        row = result.per_fold.loc[k]
        assert row["test patients"] == table.patient.iloc[fold["test"]].nunique()
        assert row["tumour slices"] == tumour[fold["test"]].sum() and 1 <= row["epochs"] <= 4
    assert result.p_masks.shape == masks.shape[:3] and (result.p_masks > 0).all()  # every slice drawn once
    report, per_patient = result.report(seed=0)
    assert list(per_patient.patient) == sorted(table.patient.unique())
    expected = metrics.dice_scores(masks[tumour, ..., 0], result.p_masks[tumour]).mean()
    assert report["dice_mean"].value == pytest.approx(expected)
    # the pipeline out of fold: a slice nobody flagged gets an empty mask
    flagged = np.zeros(len(table), bool)
    pipeline, per_slice, _ = result.pipeline(flagged, seed=0)
    visible = masks[..., 0].any(axis=(1, 2))  # a tiny tumour can vanish at 32 px: an empty mask, Dice 1
    assert (per_slice.dice[visible] == 0).all() and (per_slice.dice[~visible] == 1).all()
    assert pipeline["pipeline_dice_mean"].value == pytest.approx(1 - visible.mean())
    with pytest.raises(ValueError, match="features of"):
        seg.cross_validate_segmenter(table.head(5), features, masks, make_decoder)


def test_out_of_fold_intervals_resample_patients_when_it_knows_them():
    rng = np.random.default_rng(0)
    y = np.tile([1, 0], 40)
    called = rng.random(80) < np.where(y == 1, 0.8, 0.3)
    per_fold = pd.DataFrame({"roc_auc": [0.8], "sensitivity": [0.8], "specificity": [0.7]})
    p = np.where(called, 0.7, 0.3)
    by_slice = seg.OutOfFold(y, p, called, per_fold).report(seed=0)
    by_patient = seg.OutOfFold(y, p, called, per_fold, np.repeat(np.arange(20), 4)).report(seed=0)
    assert by_patient["sensitivity"].value == pytest.approx(by_slice["sensitivity"].value)
    assert by_patient["sensitivity"] != by_slice["sensitivity"]  # bootstrap over patients, not Wilson
    few = seg.OutOfFold(y, p, called, per_fold, np.repeat(np.arange(4), 20))
    with pytest.warns(metrics.FewGroupsWarning):
        assert np.isnan(few.report(seed=0)["roc_auc"].low)
