"""tl.loaders on real files: reading (tl.images), Keras batches, PyTorch items and loaders, load_examples."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tl_helpers.data.images import ImageReadError, decode_image, read_image, read_mask
from tl_helpers.train.augment import Augment
from tl_helpers.train.loaders import KerasImageDataset, example_rng, load_example, load_examples, make_torch_loader

SHARED = Path(os.environ.get("TL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BRAIN = SHARED / "brain_tumor_mri_4class" / "Training"
LGG = SHARED / "lgg_mri_segmentation" / "kaggle_3m"
REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not BRAIN.is_dir() or not LGG.is_dir(), reason="shared real data absent")

GEOMETRY = Augment(rotation_range=20, width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.2,
                   shear_range=10, horizontal_flip=True)
AUGMENT = Augment(**{**GEOMETRY.__dict__, "brightness_range": (0.8, 1.2)})


@pytest.fixture(scope="module")
def brain_table():
    """Six real images of each of the four classes, in folder order."""
    rows = [(str(p), d.name) for d in sorted(BRAIN.iterdir()) if d.is_dir()
            for p in sorted(d.glob("*.jpg"))[:6]]
    return pd.DataFrame(rows, columns=["path", "label"])


@pytest.fixture(scope="module")
def lgg_table():
    """Eight real LGG slices whose masks show a tumour: columns path, mask_path."""
    rows = []
    for mask_path in sorted(LGG.glob("TCGA_*/*_mask.tif")):
        if (read_image(mask_path, channels=1) > 0).sum() > 500:
            rows.append((str(mask_path).replace("_mask.tif", ".tif"), str(mask_path)))
        if len(rows) == 8:
            break
    return pd.DataFrame(rows, columns=["path", "mask_path"])


@pytest.fixture(scope="module")
def rgb_image():
    return read_image(sorted((BRAIN / "glioma").glob("*.jpg"))[0])


def iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


def assert_aligned(image_channel, mask):
    """A mask-valued image thresholded at half its range coincides with the mask."""
    shown, marked = image_channel > 0.5 * image_channel.max(), mask > 0.5
    assert iou(shown, marked) > 0.95
    assert np.abs(np.argwhere(shown).mean(0) - np.argwhere(marked).mean(0)).max() < 0.5  # pixels


# --- reading ------------------------------------------------------------------------------

def test_reads_rgba_png_as_rgb(tmp_path, rgb_image):
    rgba = np.dstack([rgb_image, np.full(rgb_image.shape[:2], 255, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(decode_image(tmp_path / "a.png", 3), rgb_image)


def test_reads_16_bit_grayscale_png_scaled_to_8_bit(tmp_path, rgb_image):
    gray16 = rgb_image[..., 0].astype(np.uint16) * 200 + 1000
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    out = decode_image(tmp_path / "g16.png", 3)
    assert out.shape == rgb_image.shape and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out[..., 0], out[..., 2])
    assert np.corrcoef(out[..., 0].ravel(), rgb_image[..., 0].ravel())[0, 1] > 0.99


def test_reads_grayscale_jpeg_as_three_equal_channels_or_one(tmp_path, rgb_image):
    Image.fromarray(rgb_image[..., 0], "L").save(tmp_path / "g.jpg", quality=95)
    rgb = decode_image(tmp_path / "g.jpg", 3)
    gray = decode_image(tmp_path / "g.jpg", 1)
    assert rgb.shape == rgb_image.shape and gray.shape == rgb_image.shape[:2] + (1,)
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], gray[..., 0])
    assert np.abs(gray[..., 0].astype(int) - rgb_image[..., 0]).mean() < 3


def test_reads_tiff(tmp_path, rgb_image):
    Image.fromarray(rgb_image).save(tmp_path / "t.tif")
    assert np.array_equal(decode_image(tmp_path / "t.tif"), rgb_image)
    real = decode_image(sorted(LGG.glob("TCGA_*/*[0-9].tif"))[0])
    assert real.shape == (256, 256, 3) and real.dtype == np.uint8


def test_fast_jpeg_decoding_equals_the_reference_reader(brain_table):
    for path in brain_table["path"][::3]:
        assert np.array_equal(decode_image(path, 3), read_image(path, 3))
        assert np.array_equal(decode_image(path, 1)[..., 0], read_image(path, 1))


@pytest.mark.parametrize("content", [b"", b"not an image at all"])
def test_an_unreadable_file_is_named_in_the_error(tmp_path, brain_table, content):
    bad = tmp_path / "broken_scan.jpg"
    bad.write_bytes(content)
    with pytest.raises(ImageReadError, match="broken_scan.jpg"):
        decode_image(bad)
    table = pd.concat([brain_table.head(3), pd.DataFrame({"path": [str(bad)], "label": ["glioma"]})])
    dataset = KerasImageDataset(table, image_size=(32, 32), batch_size=4, shuffle=False, threads=2)
    with pytest.raises(ImageReadError, match="broken_scan.jpg"):
        dataset[0]


def test_masks_are_read_as_zero_or_one(lgg_table):
    mask = read_mask(lgg_table["mask_path"][0], (100, 80))
    assert mask.shape == (100, 80, 1) and set(np.unique(mask)) == {0, 1}


# --- load_examples: the one batch loader ------------------------------------------------

def test_load_examples_is_the_same_with_one_thread_or_four(brain_table, lgg_table):
    paths = list(brain_table["path"][::2])
    rngs = lambda: [example_rng(11, 0, i) for i in range(len(paths))]  # noqa: E731
    one = load_examples(paths, (48, 40), augment=AUGMENT, rngs=rngs(), threads=1)
    four = load_examples(paths, (48, 40), augment=AUGMENT, rngs=rngs(), threads=4)
    assert len(one) == len(four) == len(paths)
    for (image, mask), (again, again_mask) in zip(one, four):
        assert image.shape == (48, 40, 3) and image.dtype == np.float32 and mask is None and again_mask is None
        np.testing.assert_array_equal(image, again)
    # each example is load_example with its own stream, whatever the thread that ran it
    np.testing.assert_array_equal(one[3][0], load_example(paths[3], (48, 40), augment=AUGMENT, rng=example_rng(11, 0, 3))[0])
    plain = load_examples(paths, (48, 40), threads=4)
    assert sum(not np.array_equal(a[0], b[0]) for a, b in zip(one, plain)) >= len(paths) - 1  # really augmented
    other = load_examples(paths, (48, 40), augment=AUGMENT, rngs=[example_rng(12, 0, i) for i in range(len(paths))], threads=4)
    assert not np.array_equal(one[0][0], other[0][0])


def test_load_examples_moves_masks_with_their_images_in_threads(lgg_table):
    paths, masks = list(lgg_table["mask_path"]), list(lgg_table["mask_path"])  # the image IS the mask
    rngs = lambda: [example_rng(2, 1, i) for i in range(len(paths))]  # noqa: E731
    one = load_examples(paths, (256, 256), augment=GEOMETRY, rngs=rngs(), mask_paths=masks, threads=1)
    four = load_examples(paths, (256, 256), augment=GEOMETRY, rngs=rngs(), mask_paths=masks, threads=4)
    for (image, mask), (again, again_mask) in zip(one, four):
        np.testing.assert_array_equal(image, again)
        np.testing.assert_array_equal(mask, again_mask)
        assert mask.shape == (256, 256, 1) and set(np.unique(mask)) <= {0.0, 1.0}
        assert_aligned(image[..., 0], mask[..., 0])


def test_load_examples_needs_one_rng_per_path_to_augment(brain_table):
    paths = list(brain_table["path"][:3])
    with pytest.raises(ValueError, match="one rng per path"):
        load_examples(paths, (32, 32), augment=AUGMENT)
    with pytest.raises(ValueError, match="one rng per path"):
        load_examples(paths, (32, 32), augment=AUGMENT, rngs=[example_rng(0, 0, 0)])


# --- Keras --------------------------------------------------------------------------------

def test_keras_batches_shapes_dtypes_and_labels(brain_table):
    dataset = KerasImageDataset(brain_table, image_size=(224, 224), batch_size=10, shuffle=False)
    assert dataset.classes == ["glioma", "meningioma", "notumor", "pituitary"]
    assert dataset.class_indices == {"glioma": 0, "meningioma": 1, "notumor": 2, "pituitary": 3}
    assert dataset.labels.tolist() == [i for i in range(4) for _ in range(6)]
    assert len(dataset) == 3
    images, onehot = dataset[0]
    assert images.shape == (10, 224, 224, 3) and images.dtype == np.float32
    assert onehot.shape == (10, 4) and onehot.dtype == np.float32
    assert onehot.argmax(1).tolist() == dataset.labels[:10].tolist()
    assert np.array_equal(images[0], read_image(brain_table["path"][0]).astype(np.float32))
    last_images, last_onehot = dataset[2]
    assert last_images.shape[0] == 4 and last_onehot.shape == (4, 4)  # partial last batch kept
    with pytest.raises(IndexError):
        dataset[3]


def test_keras_class_modes(brain_table):
    common = dict(image_size=(32, 32), batch_size=24, shuffle=False)
    _, sparse = KerasImageDataset(brain_table, class_mode="sparse", **common)[0]
    assert sparse.tolist() == [i for i in range(4) for _ in range(6)]
    two = brain_table[brain_table["label"].isin(["glioma", "notumor"])]
    _, binary = KerasImageDataset(two, class_mode="binary", **common)[0]
    assert binary.dtype == np.float32 and binary.tolist() == [0.0] * 6 + [1.0] * 6
    images_only = KerasImageDataset(brain_table, class_mode=None, **common)
    assert isinstance(images_only[0], np.ndarray) and images_only.labels is not None
    with pytest.raises(ValueError, match="exactly 2 classes"):
        KerasImageDataset(brain_table, class_mode="binary", **common)
    with pytest.raises(ValueError, match="not among classes"):
        KerasImageDataset(brain_table, classes=["glioma", "notumor"], **common)
    with pytest.raises(ValueError, match="column 'image'"):
        KerasImageDataset(brain_table, x_col="image", **common)


def test_given_class_order_is_used(brain_table):
    classes = ["pituitary", "notumor", "meningioma", "glioma"]
    dataset = KerasImageDataset(brain_table, classes=classes, image_size=(32, 32), batch_size=24, shuffle=False)
    _, onehot = dataset[0]
    assert onehot[0].tolist() == [0, 0, 0, 1] and dataset.labels[0] == 3


def test_shuffle_visits_every_image_once_and_changes_each_epoch(brain_table):
    dataset = KerasImageDataset(brain_table, image_size=(16, 16), batch_size=5, shuffle=True, seed=3)
    first = np.concatenate([dataset.batch_positions(i) for i in range(len(dataset))])
    assert sorted(first.tolist()) == list(range(24)) and first.tolist() != list(range(24))
    dataset.on_epoch_end()
    second = np.concatenate([dataset.batch_positions(i) for i in range(len(dataset))])
    assert sorted(second.tolist()) == list(range(24)) and second.tolist() != first.tolist()
    _, onehot = dataset[0]
    assert onehot.argmax(1).tolist() == dataset.labels[dataset.batch_positions(0)].tolist()


def test_same_seed_same_batches_other_seed_other_batches(brain_table):
    def batch(seed, threads):
        dataset = KerasImageDataset(brain_table, image_size=(48, 48), batch_size=8, seed=seed,
                                    augment=AUGMENT, threads=threads)
        dataset.on_epoch_end()
        return dataset[1]

    images, onehot = batch(5, threads=1)
    again, again_onehot = batch(5, threads=4)  # threads must not change the result
    assert np.array_equal(images, again) and np.array_equal(onehot, again_onehot)
    assert not np.array_equal(images, batch(6, threads=1)[0])


def test_augmentation_changes_images_and_preprocess_comes_after(brain_table):
    plain = KerasImageDataset(brain_table, image_size=(64, 64), batch_size=8, shuffle=False)
    augmented = KerasImageDataset(brain_table, image_size=(64, 64), batch_size=8, shuffle=False, seed=0,
                                  augment=AUGMENT, preprocess=lambda x: x / 127.5 - 1.0)
    raw, _ = plain[0]
    out, _ = augmented[0]
    assert out.min() >= -1.0 and out.max() <= 1.0 and out.max() > 0.5
    assert not np.allclose((out + 1.0) * 127.5, raw, atol=1.0)


def test_image_and_mask_batches_are_aligned(lgg_table):
    # The image IS the mask: after the same random transform the two batches must coincide.
    table = lgg_table.assign(path=lgg_table["mask_path"])
    dataset = KerasImageDataset(table, y_col=None, mask_col="mask_path", class_mode="mask",
                                image_size=(256, 256), batch_size=8, seed=1, augment=GEOMETRY)
    images, masks = dataset[0]
    assert images.shape == (8, 256, 256, 3) and masks.shape == (8, 256, 256, 1)
    assert set(np.unique(masks)) == {0.0, 1.0}
    plain = [read_mask(table["mask_path"][p], (256, 256)) for p in dataset.batch_positions(0)]
    assert sum(not np.array_equal(m, p) for m, p in zip(masks, plain)) >= 6  # they really moved
    for image, mask in zip(images, masks):
        assert_aligned(image[..., 0], mask[..., 0])


def test_resized_masks_keep_the_image_grid(lgg_table):
    table = lgg_table.assign(path=lgg_table["mask_path"])
    dataset = KerasImageDataset(table, y_col=None, mask_col="mask_path", class_mode="mask",
                                image_size=(96, 80), batch_size=8, shuffle=False)
    images, masks = dataset[0]
    assert masks.shape == (8, 96, 80, 1)
    assert np.array_equal(images[..., :1] > 127, masks > 0.5)


def test_real_slices_with_their_masks(lgg_table):
    dataset = KerasImageDataset(lgg_table, y_col=None, mask_col="mask_path", class_mode="mask",
                                image_size=(64, 64), batch_size=4, shuffle=False)
    images, masks = dataset[1]
    assert images.shape == (4, 64, 64, 3) and masks.shape == (4, 64, 64, 1)
    assert masks.dtype == np.float32 and set(np.unique(masks)) == {0.0, 1.0}
    assert images.max() > 50  # real MRI content, not blank


def test_from_directory_skips_hidden_folders(tmp_path, rgb_image):
    for name in ("yes", "no", ".ipynb_checkpoints"):
        (tmp_path / name).mkdir()
        for i in range(3):
            Image.fromarray(rgb_image).save(tmp_path / name / f"{name}{i}.png")
    dataset = KerasImageDataset.from_directory(tmp_path, class_mode="binary", image_size=(32, 32),
                                               batch_size=4, shuffle=False)
    assert dataset.classes == ["no", "yes"] and len(dataset.paths) == 6 and len(dataset) == 2
    images, labels = dataset[0]
    assert images.shape == (4, 32, 32, 3) and labels.tolist() == [0, 0, 0, 1]


def test_keras_fit_with_the_torch_backend(brain_table, tmp_path):
    brain_table.to_csv(tmp_path / "table.csv", index=False)
    script = f"""
import sys, keras, numpy as np, pandas as pd
from tl_helpers.train.loaders import KerasImageDataset
from tl_helpers.train.augment import Augment
assert keras.backend.backend() == "torch" and "tensorflow" not in sys.modules
data = KerasImageDataset(pd.read_csv({str(tmp_path / "table.csv")!r}), image_size=(32, 32), batch_size=8,
                         seed=0, augment=Augment(rotation_range=10, horizontal_flip=True),
                         preprocess=lambda x: x / 255.0)
model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(4, activation="softmax")])
model.compile("adam", "categorical_crossentropy")
history = model.fit(data, epochs=2, verbose=0)
assert len(history.history["loss"]) == 2 and data.epoch >= 2  # Keras also calls it when it resets
print("fit ok", model.predict(data, verbose=0).shape)
"""
    env = dict(os.environ, KERAS_BACKEND="torch", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fit ok (24, 4)" in done.stdout


def test_the_module_imports_without_torch_or_keras():
    script = ("import sys, tl_helpers.train.loaders\n"
              "assert 'torch' not in sys.modules, 'torch imported'\n"
              "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'")
    env = dict(os.environ, KERAS_BACKEND="tensorflow", PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


# --- PyTorch ------------------------------------------------------------------------------

def test_torch_items_and_loader(brain_table):
    import torch
    from tl_helpers.train.loaders import TorchImageDataset

    dataset = TorchImageDataset(brain_table, image_size=(40, 48), augment=AUGMENT, seed=0)
    assert isinstance(dataset, torch.utils.data.Dataset) and len(dataset) == 24
    image, label = dataset[7]
    assert image.shape == (3, 40, 48) and image.dtype == torch.float32 and label == 1
    loader = make_torch_loader(dataset, batch_size=10, shuffle=True, seed=0)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [10, 10, 4]
    labels = torch.cat([b[1] for b in batches])
    assert sorted(labels.tolist()) == sorted(dataset.labels.tolist()) and labels.dtype == torch.int64


def test_torch_loader_repeats_with_the_same_seed_also_with_workers(brain_table):
    import torch
    from tl_helpers.train.loaders import TorchImageDataset

    def first_batch(seed, workers):
        dataset = TorchImageDataset(brain_table, image_size=(32, 32), augment=AUGMENT, seed=0)
        return next(iter(make_torch_loader(dataset, batch_size=8, seed=seed, num_workers=workers)))

    for workers in (0, 2):
        images, labels = first_batch(1, workers)
        again, again_labels = first_batch(1, workers)
        assert torch.equal(images, again) and torch.equal(labels, again_labels)
        assert not torch.equal(images, first_batch(2, workers)[0])


def test_torch_image_and_mask_items_are_aligned(lgg_table):
    from tl_helpers.train.loaders import TorchImageDataset

    table = lgg_table.assign(path=lgg_table["mask_path"])
    dataset = TorchImageDataset(table, y_col=None, mask_col="mask_path", image_size=(256, 256),
                                augment=GEOMETRY, seed=4, preprocess=lambda x: x / 255.0)
    for index in range(3):
        image, mask = dataset[index]
        assert image.shape == (3, 256, 256) and mask.shape == (1, 256, 256)
        assert image.max() <= 1.0 and set(mask.unique().tolist()) == {0.0, 1.0}
        assert_aligned(image[0].numpy(), mask[0].numpy())


# --- chapter 4: every batch of an unshuffled dataset, concatenated (tl.loaders.all_batches) ---

def test_all_batches_returns_images_and_masks_in_table_order(lgg_table):
    from tl_helpers.train.loaders import all_batches

    data = KerasImageDataset(lgg_table, x_col="path", y_col=None, mask_col="mask_path", class_mode="mask",
                             image_size=(32, 32), batch_size=3, shuffle=False)
    images, masks = all_batches(data)
    assert images.shape == (8, 32, 32, 3) and masks.shape == (8, 32, 32, 1)  # 3 + 3 + 2
    for i in (0, 4, 7):
        expected_image, expected_mask = load_example(lgg_table.path[i], (32, 32), mask_path=lgg_table.mask_path[i])
        np.testing.assert_array_equal(images[i], expected_image)
        np.testing.assert_array_equal(masks[i], expected_mask)


def test_seconds_to_load_prepares_each_item_once_and_times_it():
    import time

    from tl_helpers.train.loaders import seconds_to_load

    class Slow:
        def __init__(self):
            self.asked = []

        def __getitem__(self, index):
            self.asked.append(index)
            time.sleep(0.02)
            return index

    dataset = Slow()
    seconds = seconds_to_load(dataset, 5)
    assert dataset.asked == [0, 1, 2, 3, 4]
    assert 0.1 <= seconds < 2.0
