"""The book's figures: content checked on real images and masks (synthetic when absent)."""
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import same_color
from PIL import Image
from sklearn.metrics import confusion_matrix, roc_auc_score

from conftest import shared_data_dir
from tl_helpers.evaluate import metrics, plotting
from tl_helpers.data.images import read_image

SHARED_DATA = shared_data_dir() or Path("/nonexistent")
LGG = SHARED_DATA / "lgg_mri_segmentation" / "kaggle_3m"
YES_NO = SHARED_DATA / "brain_mri_yes_no"


def lgg_slices(count: int, with_tumour: bool | None = True):
    """(images, masks, names) of LGG slices from the real data, or synthetic discs."""
    if not LGG.is_dir():
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[:64, :64]
        masks = [((yy - 32) ** 2 + (xx - 30 - i) ** 2 < 100).astype(np.uint8) * 255 for i in range(count)]
        images = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(count)]
        return images, masks, [f"synthetic {i}" for i in range(count)]
    images, masks, names = [], [], []
    for mask_path in sorted(LGG.glob("*/*_mask.tif")):
        mask = read_image(mask_path, channels=1)
        if with_tumour is None or bool(mask.any()) == with_tumour:
            images.append(read_image(str(mask_path).replace("_mask.tif", ".tif")))
            masks.append(mask)
            names.append(mask_path.name)
        if len(images) == count:
            break
    return images, masks, names


def assert_png(path: Path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.width > 50 and image.height > 50


def test_image_grid_colours_right_and_wrong_predictions(tmp_path):
    if YES_NO.is_dir():
        paths = sorted((YES_NO / "yes").iterdir())[:4] + sorted((YES_NO / "no").iterdir())[:3]
        images = [read_image(p) for p in paths]
    else:
        images = [np.full((40, 50, 3), 30 * i, np.uint8) for i in range(7)]
    labels = [1, 1, 1, 1, 0, 0, 0]
    predictions = [1, 0, 1, 1, 0, 1, 0]
    fig = plotting.plot_image_grid(images, labels=labels, predictions=predictions,
                                   class_names=["no", "yes"], ncols=4, suptitle="yes/no",
                                   save=tmp_path / "grid.png")
    assert len(fig.axes) == 7  # the 8th cell of the 2x4 grid is not drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:2] == ["yes / yes", "yes / no"]
    assert titles[5] == "no / yes"
    for ax, true, pred in zip(fig.axes, labels, predictions):
        assert same_color(ax.title.get_color(), "green" if true == pred else "red")
    assert fig.get_suptitle() == "yes/no"
    assert_png(tmp_path / "grid.png")


def test_image_grid_labels_only_and_titles_and_grayscale():
    images = [np.linspace(0, 1, 30 * 30).reshape(30, 30), np.zeros((30, 30, 1), np.uint8)]
    fig = plotting.plot_image_grid(images, titles=["a", "b"], labels=["glioma", "notumor"])
    assert [ax.get_title() for ax in fig.axes] == ["a\nglioma", "b\nnotumor"]
    assert all(same_color(ax.title.get_color(), "black") for ax in fig.axes)
    assert fig.axes[0].images[0].get_cmap().name == "gray"
    assert fig.axes[1].images[0].get_array().shape == (30, 30)


def test_image_grid_rejects_predictions_without_labels():
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_image_grid([np.zeros((4, 4))], predictions=[1])


def test_mask_overlay_draws_true_and_predicted_masks_where_they_are(tmp_path):
    images, masks, names = lgg_slices(2)
    # A prediction that misses the mask's top half: Dice must drop below 1 accordingly.
    predicted = []
    for mask in masks:
        rows = np.nonzero(mask.any(axis=1))[0]
        cut = mask.copy()
        cut[: (rows[0] + rows[-1]) // 2] = 0
        predicted.append(cut)
    fig = plotting.plot_mask_overlay(images, masks, predicted, titles=names, save=tmp_path / "masks.png")
    assert len(fig.axes) == 6
    for row, (mask, pred) in enumerate(zip(masks, predicted)):
        image_ax, true_ax, pred_ax = fig.axes[3 * row: 3 * row + 3]
        assert image_ax.get_title() == names[row]
        assert true_ax.get_title() == "true mask"
        true_layer = true_ax.images[1].get_array()
        np.testing.assert_array_equal(true_layer[..., 3] > 0, mask > 127)
        np.testing.assert_allclose(true_layer[mask > 127][0], plotting.to_rgba(plotting.TRUE_MASK_COLOUR, 0.4), atol=1e-6)
        pred_layer = pred_ax.images[1].get_array()
        np.testing.assert_array_equal(pred_layer[..., 3] > 0, pred > 127)
        expected_dice = 2 * (pred > 127).sum() / ((mask > 127).sum() + (pred > 127).sum())
        assert pred_ax.get_title() == f"predicted (Dice {expected_dice:.2f})"
        assert expected_dice < 1
        assert true_ax.collections and pred_ax.collections  # the contours
    assert_png(tmp_path / "masks.png")


def test_mask_overlay_without_prediction_and_with_empty_mask():
    images, masks, _ = lgg_slices(1, with_tumour=False) if LGG.is_dir() else lgg_slices(1)
    empty = [np.zeros_like(masks[0])]
    fig = plotting.plot_mask_overlay(images, empty)
    assert len(fig.axes) == 2
    assert not (fig.axes[1].images[1].get_array()[..., 3] > 0).any()
    assert metrics.dice_scores(empty[0][None], empty[0][None])[0] == 1.0


def test_dice_score_accepts_probabilities_and_0_255():
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 255
    probabilities = np.zeros((10, 10, 1), np.float32)
    probabilities[:5, :5] = 0.9
    assert metrics.dice_scores(truth[None], probabilities[None])[0] == pytest.approx(2 * 25 / (50 + 25))


def test_overlay_title_uses_the_metrics_dice_of_0_255_truth_and_probabilities():
    image = np.full((10, 10), 80, np.uint8)
    truth = np.zeros((10, 10), np.uint8)
    truth[:5] = 255
    probabilities = np.zeros((10, 10, 1), np.float32)
    probabilities[:5, :5] = 0.9
    fig = plotting.plot_mask_overlay([image], [truth], [probabilities])
    expected = metrics.dice_scores(truth[None], probabilities[None])[0]
    assert fig.axes[2].get_title() == f"predicted (Dice {expected:.2f})" == "predicted (Dice 0.67)"
    np.testing.assert_array_equal(fig.axes[2].images[1].get_array()[..., 3] > 0, metrics.binarize(probabilities))


def test_training_curves_continue_phases_on_one_epoch_axis(tmp_path):
    keras = pytest.importorskip("keras")
    frozen = keras.callbacks.History()
    frozen.history = {"loss": [1.0, 0.8, 0.7], "val_loss": [1.1, 0.9, 0.95],
                      "accuracy": [0.5, 0.6, 0.7], "val_accuracy": [0.4, 0.6, 0.65]}
    fine_tune = {"loss": [0.5, 0.4], "val_loss": [0.7, 0.6], "accuracy": [0.8, 0.9], "val_accuracy": [0.7, 0.75]}
    fig = plotting.plot_training_curves({"frozen": frozen, "fine-tune": fine_tune}, save=tmp_path / "c.png")
    assert [ax.get_title() for ax in fig.axes] == ["loss", "accuracy"]
    loss_ax = fig.axes[0]
    curves = [line for line in loss_ax.lines if line.get_marker() == "."]
    xs = sorted(tuple(line.get_xdata()) for line in curves)
    assert xs == [(1, 2, 3), (1, 2, 3), (4, 5), (4, 5)]
    val_second = [line for line in curves if tuple(line.get_xdata()) == (4, 5) and line.get_linestyle() == "--"]
    assert list(val_second[0].get_ydata()) == [0.7, 0.6]
    boundaries = [line.get_xdata()[0] for line in loss_ax.lines if line.get_linestyle() == ":"]
    assert boundaries == [3.5]
    assert {text.get_text() for text in loss_ax.texts} == {"frozen", "fine-tune"}
    assert [t.get_text() for t in loss_ax.get_legend().get_texts()] == ["train", "validation"]
    assert_png(tmp_path / "c.png")


def test_training_curves_single_dict_skips_unrecorded_metric_and_names_missing_ones():
    fig = plotting.plot_training_curves({"loss": [3, 2, 1]}, metrics=("loss", "auc"))
    assert len(fig.axes) == 1
    assert not [line for line in fig.axes[0].lines if line.get_linestyle() == ":"]
    with pytest.raises(ValueError, match="'loss'"):
        plotting.plot_training_curves({"loss": [3, 2, 1]}, metrics=("auc",))


def test_confusion_matrix_matches_sklearn_counts_and_normalises_rows(tmp_path):
    rng = np.random.default_rng(1)
    names = ["glioma", "meningioma", "notumor", "pituitary"]
    y_true = rng.integers(0, 4, 200)
    y_pred = np.where(rng.random(200) < 0.7, y_true, rng.integers(0, 4, 200))
    fig = plotting.plot_confusion_matrix(y_true, y_pred, names, save=tmp_path / "cm.png")
    expected = confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(fig.confusion_matrix, expected)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == [str(v) for v in expected.ravel()]
    assert [t.get_text() for t in ax.get_xticklabels()] == names
    assert_png(tmp_path / "cm.png")
    normalised = plotting.plot_confusion_matrix([names[i] for i in y_true], [names[i] for i in y_pred],
                                                names, normalize=True)
    np.testing.assert_allclose(normalised.confusion_matrix, expected / expected.sum(axis=1, keepdims=True))
    assert "row-normalised" in normalised.axes[0].get_title()


def test_confusion_matrix_names_unknown_labels():
    with pytest.raises(ValueError, match="cat"):
        plotting.plot_confusion_matrix(["cat"], ["no"], ["no", "yes"])


def test_binary_roc_auc_in_legend_equals_sklearn(tmp_path):
    if LGG.is_dir():
        # A real, weak score: how bright the FLAIR channel is, against "slice has tumour".
        with_tumour, _, _ = lgg_slices(30, with_tumour=True)
        without, _, _ = lgg_slices(30, with_tumour=False)
        y_true = np.array([1] * len(with_tumour) + [0] * len(without))
        scores = np.array([image[..., 1].mean() / 255 for image in with_tumour + without])
    else:
        rng = np.random.default_rng(2)
        y_true = rng.integers(0, 2, 100)
        scores = rng.random(100) * 0.5 + y_true * 0.3
    fig = plotting.plot_roc(y_true, scores, class_names=["no tumour", "tumour"], save=tmp_path / "roc.png")
    expected = roc_auc_score(y_true, scores)
    assert fig.aucs == {"tumour": pytest.approx(expected)}
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"tumour (AUC = {expected:.3f})"]
    assert_png(tmp_path / "roc.png")
    two_column = plotting.plot_roc(y_true, np.column_stack([1 - scores, scores]))
    assert two_column.aucs["positive"] == pytest.approx(expected)


def test_multiclass_roc_one_vs_rest_with_one_hot_truth():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 3, 150)
    logits = rng.normal(size=(150, 3)) + np.eye(3)[y_true] * 1.5
    scores = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ["a", "b", "c"]
    fig = plotting.plot_roc(np.eye(3)[y_true], scores, class_names=names)
    expected = [roc_auc_score(y_true == k, scores[:, k]) for k in range(3)]
    for name, auc in zip(names, expected):
        assert fig.aucs[name] == pytest.approx(auc)
    assert fig.aucs["macro"] == pytest.approx(np.mean(expected))
    assert fig.aucs["macro"] == pytest.approx(roc_auc_score(y_true, scores, multi_class="ovr", average="macro"))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [f"{n} (AUC = {a:.3f})" for n, a in zip(names, expected)]


def test_roc_class_missing_from_truth_is_nan_not_a_crash():
    scores = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1]])
    fig = plotting.plot_roc([0, 1, 0], scores)
    assert np.isnan(fig.aucs["2"])
    assert fig.aucs["0"] == 1.0


def test_phase_names_do_not_overlap_and_long_titles_keep_figures_in_the_column(tmp_path):
    """Chapter 1's phase names ran into each other; long Grad-CAM titles widened figures past the column."""
    phases = {"phase 1: frozen (cached features)": {"loss": [1.0], "val_loss": [1.1]},
              "phase 2: all layers": {"loss": [0.9, 0.8], "val_loss": [1.0, 0.9]}}
    fig = plotting.plot_training_curves(phases, metrics=("loss",))
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    first, second = (text.get_window_extent(renderer) for text in fig.axes[0].texts)
    assert not first.overlaps(second)
    titles = [f"right: meningioma as pituitary, p 0.{n}9 on the test split" for n in range(8)]
    grid = plotting.plot_heatmap_overlay(np.zeros((8, 32, 32)), np.zeros((8, 8, 8)), titles=titles, ncols=4,
                                         save=tmp_path / "heat.png")
    from PIL import Image

    assert max(len(line) for line in grid.axes[0].get_title().split("\n")) <= 20
    assert Image.open(tmp_path / "heat.png").width <= plotting.MAX_WIDTH_IN * plotting.SAVE_DPI + 20


def test_plot_curves_rings_each_best_point_and_tabulates_it():
    import pandas as pd

    curves = {"scratch": pd.Series([0.6, 0.7, 0.65], index=[100, 200, 300]),
              "fine-tuned": pd.Series([0.9, 0.95], index=[1100, 1200])}
    fig = plotting.plot_curves(curves, "films shown", "validation ROC AUC")
    best = fig.best
    assert best.loc["scratch", "best validation ROC AUC"] == 0.7
    assert best.loc["scratch", "at films shown"] == 200
    assert best.loc["fine-tuned", "films shown in all"] == 1200
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["scratch", "fine-tuned"]
    lines = [line for line in ax.lines if line.get_marker() == "."]
    assert lines[0].get_zorder() > lines[1].get_zorder()  # the first stays visible where the second retraces it
    rings = [line for line in ax.lines if line.get_marker() == "o"]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in rings] == [(200, 0.7), (1200, 0.95)]
    with pytest.raises(ValueError):
        plotting.plot_curves({}, "x", "y")
