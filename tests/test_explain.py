"""tl.explain: Grad-CAM looks where the evidence is, in PyTorch and in Keras (TensorFlow and torch backends).

A small CNN is trained for a few seconds to say whether a bright 8x8 square is somewhere
in a 32x32 noise image. On new images with a square, the Grad-CAM heat of the class
"square" must fall mostly inside the square's box (the box is 6% of the image): the check
fails for a map that is uniform, random, or placed by a wrong resize or axis order.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tl_helpers as tl
from conftest import REPO

SIZE, OBJECT = 32, 8
AREA_SHARE = OBJECT * OBJECT / SIZE ** 2  # 0.0625: what heat spread evenly would put in the box


def squares(count: int, seed: int):
    """Noise images (0..80), half with a bright square (+150) at a random place; labels and boxes."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 80, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = np.arange(count) % 2
    boxes = rng.integers(0, SIZE - OBJECT, (count, 2))
    for image, label, (top, left) in zip(images, labels, boxes):
        if label:
            image[top:top + OBJECT, left:left + OBJECT] += 150
    masks = np.stack([tl.explain.box_mask((SIZE, SIZE), top, left, OBJECT, OBJECT) for top, left in boxes])
    return images, labels, masks


TEST_IMAGES, TEST_LABELS, TEST_MASKS = squares(24, seed=1)
POSITIVE = TEST_LABELS == 1


def test_heat_share_inside_counts_heat_not_pixels():
    heat = np.zeros((4, 4))
    heat[0, 0], heat[3, 3] = 3.0, 1.0
    region = tl.explain.box_mask((4, 4), 0, 0, 2, 2)
    assert tl.explain.heat_share_inside(heat, region) == pytest.approx(0.75)
    assert tl.explain.heat_share_inside(np.ones((4, 4)), region) == pytest.approx(region.mean())  # even heat
    assert np.isnan(tl.explain.heat_share_inside(np.zeros((4, 4)), region))
    both = tl.explain.heat_share_inside(np.stack([heat, heat.T]), region.astype(np.uint8) * 255)
    np.testing.assert_allclose(both, [0.75, 0.75])
    # a map at another size is resized (bilinear) to the mask's: a 2x2 map hot in its top-left quarter
    assert tl.explain.heat_share_inside(np.array([[1.0, 0], [0, 0]]), tl.explain.box_mask((8, 8), 0, 0, 4, 4)) > 0.7
    centre = tl.explain.centre_mask((96, 96), 32)
    assert centre.sum() == 32 * 32 and centre[32, 32] and centre[63, 63] and not centre[31, 32] and not centre[64, 64]


def test_pytorch_grad_cam_finds_the_square():
    import torch
    from torch import nn

    torch.manual_seed(0)
    images, labels, _ = squares(256, seed=0)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2) / 255.0).float()
    y = torch.from_numpy(labels)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))
    optimiser = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(5):
        for batch in torch.randperm(len(x)).split(32):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    test = torch.from_numpy(TEST_IMAGES.transpose(0, 3, 1, 2) / 255.0).float()
    assert (model(test).argmax(1).numpy() == TEST_LABELS).mean() >= 0.9
    maps = tl.explain.grad_cam(model, test[POSITIVE], class_index=1)
    assert maps.shape == (POSITIVE.sum(), SIZE, SIZE) and 0 <= maps.min() and maps.max() <= 1
    shares = tl.explain.heat_share_inside(maps, TEST_MASKS[POSITIVE])
    assert np.nanmean(shares) > 5 * AREA_SHARE, shares
    # a frozen body (no parameter needs a gradient) gives the same maps, and the model keeps its mode
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    model.train()
    np.testing.assert_allclose(tl.explain.grad_cam(model, test[POSITIVE], class_index=1), maps, atol=1e-5)
    assert model.training


@pytest.fixture(scope="module")
def keras_model(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    images, labels, _ = squares(256, seed=0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="features")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(images, labels, epochs=5, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("keras_cam") / "squares.keras"
    model.save(path)
    return model, path


def test_keras_grad_cam_finds_the_square_on_tensorflow(keras_model):
    import keras

    model, _ = keras_model
    assert keras.backend.backend() == "tensorflow"
    assert (model.predict(TEST_IMAGES, verbose=0).argmax(1) == TEST_LABELS).mean() >= 0.9
    maps = tl.explain.grad_cam(model, TEST_IMAGES[POSITIVE], class_index=1)
    assert maps.shape == (POSITIVE.sum(), SIZE, SIZE)
    assert np.nanmean(tl.explain.heat_share_inside(maps, TEST_MASKS[POSITIVE])) > 5 * AREA_SHARE
    # the same layers with the body nested inside (a backbone as one layer) give the same maps
    body = keras.Model(model.inputs, model.get_layer("features").output)
    nested = keras.Sequential([keras.Input((SIZE, SIZE, 3)), body, *model.layers[-2:]])
    np.testing.assert_allclose(tl.explain.grad_cam(nested, TEST_IMAGES[POSITIVE], class_index=1), maps, atol=1e-5)
    figure = tl.plotting.plot_heatmap_overlay(TEST_IMAGES[POSITIVE][:4] / 255.0, maps[:4],
                                              regions=TEST_MASKS[POSITIVE][:4], titles=["a", "b", "c", "d"])
    assert len(figure.axes) == 4


def test_keras_grad_cam_gives_the_same_maps_on_the_torch_backend(keras_model, tmp_path):
    model, path = keras_model
    expected = tl.explain.grad_cam(model, TEST_IMAGES[POSITIVE], class_index=1)
    np.save(tmp_path / "images.npy", TEST_IMAGES[POSITIVE])
    script = ("import json, sys, numpy as np, keras, tl_helpers as tl\n"
              "model = keras.saving.load_model(sys.argv[1])\n"
              "maps = tl.explain.grad_cam(model, np.load(sys.argv[2]), class_index=1)\n"
              "print(json.dumps({'backend': keras.backend.backend(), 'maps': maps.tolist()}))\n")
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "images.npy")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["backend"] == "torch"
    np.testing.assert_allclose(np.array(result["maps"]), expected, atol=1e-4)


def test_grad_cam_takes_a_loaded_predictor_and_its_image_files(tmp_path, keras_model):
    """The exported model explains files directly: the predictor prepares them (here: PNGs of the squares)."""
    from PIL import Image

    model, _ = keras_model
    # keras.applications EfficientNet's preprocessing passes 0..255 pixels on, which is what this model takes
    card = tl.model_cards.export_model(model, tmp_path, {"task": "binary", "classes": ["empty", "square"],
                                                         "input_size": SIZE, "preprocessing": "efficientnetb3"})
    files = []
    for index in np.flatnonzero(POSITIVE)[:4]:
        files.append(tmp_path / f"square{index}.png")
        Image.fromarray(np.round(TEST_IMAGES[index]).astype(np.uint8)).save(files[-1])
    maps = tl.explain.grad_cam(tl.model_cards.load_model(card), files, class_index=1)
    direct = tl.explain.grad_cam(model, np.round(TEST_IMAGES[np.flatnonzero(POSITIVE)[:4]]), class_index=1)
    np.testing.assert_allclose(maps, direct, atol=1e-4)


# --- chapter 2: the heat inside a region, in words ---------------------------------------

def test_describe_heat_share_summarises_the_maps_with_heat():
    regions = np.zeros((4, 4, 4), dtype=bool)
    regions[:, :2, :] = True  # the top half of each map
    heat = np.zeros((4, 4, 4))
    heat[0, :2] = 1.0                      # all heat inside: 1.0
    heat[1] = 1.0                          # spread evenly: 0.5
    heat[2, 3] = 1.0                       # all outside: 0.0
    share = tl.explain.heat_share_inside(heat, regions)  # the fourth map has no heat: NaN
    text = tl.explain.describe_heat_share(share, regions, region="the head", unit="scans")
    assert text == ("share of the Grad-CAM heat inside the head: median 0.50 (quartiles 0.25 to 0.75) "
                    "over 3 scans, where the head covers a median 0.50 of the image; below half on 1 scans")
    cold = tl.explain.describe_heat_share([np.nan], regions[:1], unit="scans")
    assert cold.startswith("no Grad-CAM map of the 1 scans has any heat")
    with pytest.raises(ValueError, match="expected one H x W mask per share"):
        tl.explain.describe_heat_share(share, regions[0])


# --- chapter 4: the Grad-CAM heat-share summary (tl.explain.heat_share_summary) ---

def test_heat_share_summary_gives_the_median_over_maps_with_heat_and_counts_in_one_line():
    masks = np.stack([tl.explain.box_mask((4, 4), 0, 0, 2, 2)] * 3)  # each covers 0.25
    heat = np.zeros((3, 4, 4))
    heat[0, 0, 0], heat[0, 3, 3] = 3.0, 1.0  # 0.75 inside
    heat[1, 3, 3] = 1.0  # 0 inside; map 2 has no heat
    median, line = tl.explain.heat_share_summary(heat, masks)
    assert median == pytest.approx(0.375)  # median of 0.75 and 0, map 2 left out
    assert line == ("median share of the Grad-CAM heat inside the true mask 0.38 (over 2 of 3 "
                    "slices whose map has heat), where the mask covers a median 0.250 of the "
                    "slice; more than half the heat inside on 1 slices; more heat inside than "
                    "its area would give on 1")
    assert tl.explain.heat_share_summary(np.zeros((2, 4, 4)), masks[:2]) == (
        None, "none of the 2 Grad-CAM maps has any heat")


# --- chapter 5 (issue 23): the heat-share table per group -------------------------------------

def test_heat_share_table_summarises_each_group_without_maps_lacking_heat():
    heat = np.zeros((4, 4, 4))
    heat[0, 1:3, 1:3] = 1.0  # all inside the centre
    heat[1] = 1.0  # spread evenly: a quarter inside
    heat[2, 0, 0] = 1.0  # all outside
    centre = tl.explain.centre_mask((4, 4), 2)
    share = tl.explain.heat_share_inside(heat, centre)  # map 3 has no heat: NaN
    assert np.isnan(share[3])
    table = tl.explain.heat_share_table(share, centre.mean(), {
        "all": np.ones(4, bool), "first two": np.array([1, 1, 0, 0], bool),
        "no heat only": np.array([0, 0, 0, 1], bool)})
    assert list(table.index) == ["all", "first two"]
    assert table.loc["all", "maps with heat"] == 3 and table.loc["first two", "maps with heat"] == 2
    assert table.loc["all", "median share inside"] == pytest.approx(0.25)
    assert table.loc["first two", "median share inside"] == pytest.approx(0.625)
    assert table.loc["all", "share above the area's"] == pytest.approx(1 / 3)


def test_case_titles_say_right_or_wrong_the_true_class_and_what_it_was_called():
    y_true, called = np.array([1, 0, 1, 2]), np.array([1, 1, 0, 0])
    p = np.array([0.91, 0.62, 0.2, 0.4])
    assert tl.explain.case_titles([0, 1, 2], y_true, called, ["none", "tumour"], p) == [
        "right: tumour, p 0.91", "WRONG: none, p 0.62", "WRONG: tumour, p 0.20"]
    assert tl.explain.case_titles([3, 0], y_true, called, ["glioma", "meningioma", "none"]) == [
        "WRONG: none as glioma", "right: meningioma"]
    heat_inside = ["in 40%", "in 5%", "in 90%", "in 0%"]  # chapter 5: the heat inside the centre
    assert tl.explain.case_titles([2, 1], y_true, called, ["normal", "tumour"], p, heat_inside) == [
        "WRONG: tumour, p 0.20, in 90%", "WRONG: normal, p 0.62, in 5%"]
