"""Frozen-feature cache: hits, misses when anything that matters changes, and stacking."""
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data_dir
from tl_helpers import paths
from tl_helpers.train import features
from tl_helpers.train.augment import Augment
from tl_helpers.train.loaders import load_example

import keras  # noqa: I001

IMAGE_SIZE = (48, 48)


def tiny_backbone(seed=0):
    """A small CNN with BatchNorm (inference mode matters) and a pooled output."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(IMAGE_SIZE + (3,))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inputs)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="tiny")


class CountingPreprocess:
    """Scales pixels to [-1, 1] and counts the image batches it saw (not the key's probe)."""

    def __init__(self):
        self.batches = 0

    def __call__(self, images):
        if images.shape[1:3] == IMAGE_SIZE:
            self.batches += 1
        return images / 127.5 - 1.0


@pytest.fixture
def image_files(tmp_path) -> tuple[list[Path], np.ndarray]:
    """Twelve real yes/no MRI files copied to tmp (so one can be changed), with labels."""
    source = shared_data_dir()
    folder = tmp_path / "images"
    folder.mkdir()
    paths, labels = [], []
    if source is not None and (source / "brain_mri_yes_no").is_dir():
        for label, cls in enumerate(["no", "yes"]):
            for path in sorted((source / "brain_mri_yes_no" / cls).iterdir())[:6]:
                paths.append(Path(shutil.copy(path, folder / f"{cls}_{path.name}")))
                labels.append(label)
    else:
        import cv2

        rng = np.random.default_rng(0)
        for index in range(12):
            path = folder / f"synthetic_{index}.png"
            cv2.imwrite(str(path), rng.integers(0, 255, (60, 70, 3), dtype=np.uint8))
            paths.append(path)
            labels.append(index % 2)
    return paths, np.array(labels, dtype="float32")


def test_second_call_loads_the_cache_without_running_the_backbone(image_files, tmp_path):
    paths, _ = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    first = features.extract_features(model, preprocess, paths, IMAGE_SIZE, batch_size=5, cache_dir=tmp_path / "c")
    assert first.shape == (12, 16) and first.dtype == np.float32
    assert preprocess.batches == 3
    again = features.extract_features(model, preprocess, paths, IMAGE_SIZE, batch_size=5, cache_dir=tmp_path / "c")
    assert preprocess.batches == 3  # nothing recomputed
    np.testing.assert_array_equal(first, again)
    # The cached numbers are the backbone's, in inference mode, on the resized images.
    images = np.stack([load_example(p, IMAGE_SIZE)[0] for p in paths[:2]])
    direct = keras.ops.convert_to_numpy(model(images / 127.5 - 1.0, training=False))
    np.testing.assert_allclose(first[:2], direct, atol=1e-5)
    description = list((tmp_path / "c").glob("*.json"))
    assert len(description) == 1 and '"shape": [\n  12,\n  16\n ]' in description[0].read_text()


def test_key_changes_with_the_files_the_size_the_weights_the_preprocessing_and_the_backend(image_files, tmp_path):
    paths, _ = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    key = lambda **kw: features.feature_cache_key(  # noqa: E731
        kw.get("model", model), kw.get("preprocess", preprocess), kw.get("paths", paths),
        kw.get("size", IMAGE_SIZE))[0]
    original = key()
    assert key() == original
    assert key(size=(64, 64)) != original
    assert key(paths=paths[:-1]) != original
    assert key(model=tiny_backbone(seed=1)) != original
    assert key(preprocess=lambda x: x / 255.0) != original
    with pytest.MonkeyPatch.context() as patch:  # the same files and network on the other Keras backend
        other = "torch" if keras.backend.backend() != "torch" else "tensorflow"
        patch.setattr(keras.backend, "backend", lambda: other)
        assert key() != original
    # The same file name with new content (a re-downloaded dataset) is a new key.
    paths[0].write_bytes(paths[1].read_bytes())
    assert key() != original


def test_a_changed_file_is_recomputed(image_files, tmp_path):
    paths, _ = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    first = features.extract_features(model, preprocess, paths, IMAGE_SIZE, batch_size=12, cache_dir=tmp_path)
    paths[0].write_bytes(paths[6].read_bytes())
    second = features.extract_features(model, preprocess, paths, IMAGE_SIZE, batch_size=12, cache_dir=tmp_path)
    assert preprocess.batches == 2
    np.testing.assert_allclose(second[0], first[6], atol=1e-6)
    np.testing.assert_array_equal(second[1:], first[1:])


def test_augmented_views_are_distinct_reproducible_and_cached_separately(image_files, tmp_path):
    paths, _ = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    augment = Augment(rotation_range=20, horizontal_flip=True, brightness_range=(0.8, 1.2))
    plain = features.extract_features(model, preprocess, paths, IMAGE_SIZE, cache_dir=tmp_path)
    views = features.extract_features(model, preprocess, paths, IMAGE_SIZE, views=2, augment=augment,
                                      cache_dir=tmp_path)
    assert views.shape == (2, 12, 16)
    assert not np.allclose(views[0], views[1]) and not np.allclose(views[0], plain)
    recomputed = features.extract_features(model, preprocess, paths, IMAGE_SIZE, views=2, augment=augment,
                                           use_cache=False)
    np.testing.assert_allclose(recomputed, views, atol=1e-6)
    other_seed = features.extract_features(model, preprocess, paths, IMAGE_SIZE, views=2, augment=augment,
                                           seed=1, cache_dir=tmp_path)
    assert not np.allclose(other_seed, views)
    with pytest.raises(ValueError, match="augment"):
        features.extract_features(model, preprocess, paths, IMAGE_SIZE, views=2, cache_dir=tmp_path)


def test_head_trained_on_features_predicts_the_same_once_stacked_on_the_backbone(image_files, tmp_path):
    paths, labels = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    head = features.dense_head(16, 1, hidden_units=(8,), dropout=0.2)
    head.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    phase = features.train_head_on_frozen_backbone(model, preprocess, head, paths[::2], labels[::2],
                                                   paths[1::2], labels[1::2], IMAGE_SIZE, epochs=3,
                                                   batch_size=4, cache_dir=tmp_path)
    assert len(phase.history.history["val_loss"]) == 3
    assert phase.train_features.shape == phase.val_features.shape == (6, 16)
    stacked = features.stack_head(model, head)
    assert stacked.get_layer("head") is head  # shared, not copied: fine-tuning moves both
    images = np.stack([load_example(p, IMAGE_SIZE)[0] for p in paths[1::2]])
    from_images = stacked.predict(preprocess(images), verbose=0)
    from_features = head.predict(phase.val_features, verbose=0)
    np.testing.assert_allclose(from_images, from_features, atol=1e-5)
    assert np.ptp(from_features) > 0  # a constant head would make the comparison empty


def test_views_train_as_more_examples(image_files, tmp_path):
    paths, labels = image_files
    model, preprocess = tiny_backbone(), CountingPreprocess()
    head = features.dense_head(16, 2)
    head.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    phase = features.train_head_on_frozen_backbone(model, preprocess, head, paths[:8], labels[:8], paths[8:],
                                                   labels[8:], IMAGE_SIZE, epochs=1, batch_size=4, views=3,
                                                   augment=Augment(horizontal_flip=True), cache_dir=tmp_path)
    assert phase.train_features.shape == (3, 8, 16)
    assert phase.val_features.shape == (4, 16)
    assert head.optimizer.iterations.numpy() == 6  # 24 examples / batch 4


def test_a_backbone_record_supplies_model_preprocess_and_key_parts(image_files, tmp_path):
    paths, _ = image_files
    backbones = pytest.importorskip("tl_helpers.train.backbones")
    record = backbones.Backbone(name="tiny", framework="keras", model=tiny_backbone(), preprocess=CountingPreprocess(),
                                preprocess_expects="0..255", weights_source="random (test)", feature_dim=16,
                                default_size=48, pooling="avg")
    result = features.extract_features(record, None, paths[:3], IMAGE_SIZE, cache_dir=tmp_path)
    assert result.shape == (3, 16)
    assert '"weights_source": "random (test)"' in next(tmp_path.glob("*.json")).read_text()
    with pytest.raises(ValueError, match="preprocess"):
        features.extract_features(record.model, None, paths[:3], IMAGE_SIZE, cache_dir=tmp_path)


def test_default_cache_dir_is_gitignored_or_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TL_CACHE_DIR", raising=False)
    folder = features.default_cache_dir()
    assert folder == paths.project_root() / ".tl_cache" / "features" == paths.cache_dir("features")
    assert ".tl_cache/" in (paths.project_root() / ".gitignore").read_text().split()
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path))
    assert features.default_cache_dir() == tmp_path.resolve() / "features"


from tl_helpers.techniques import segmentation  # noqa: E402


# --- chapter 4: one preprocessing against another at equal training (segmentation.head_val_roc_auc) ---

def test_head_val_roc_auc_is_the_fresh_heads_validation_auc_and_repeats_with_its_seed(image_files, tmp_path):
    from sklearn.metrics import roc_auc_score

    paths, labels = image_files
    x = features.extract_features(tiny_backbone(), CountingPreprocess(), paths, IMAGE_SIZE, cache_dir=tmp_path)
    one_hot = keras.utils.to_categorical(labels.astype(int), 2)
    built = []

    def make_head():
        head = features.dense_head(16, 2, hidden_units=(8,))
        head.compile(optimizer="adam", loss="categorical_crossentropy")
        built.append(head)
        return head

    auc = segmentation.head_val_roc_auc(make_head, x[::2], one_hot[::2], x[1::2], one_hot[1::2], epochs=3,
                                    batch_size=4, seed=3)
    assert len(built) == 1
    expected = roc_auc_score(labels[1::2], built[0].predict(x[1::2], verbose=0)[:, 1])
    assert auc.value == pytest.approx(expected) and auc.low <= auc.value <= auc.high
    again = segmentation.head_val_roc_auc(make_head, x[::2], one_hot[::2], x[1::2], one_hot[1::2], epochs=3,
                                      batch_size=4, seed=3)
    assert again == auc  # seeded: the same head, the same number


def test_feature_extraction_shows_its_progress_where_a_reader_watches(image_files, monkeypatch, capsys):
    """A reader's kernel (no $TL_PROGRESS) sees a bar counting images over all views; the
    runner's kernels ($TL_PROGRESS=0) see none."""
    from tl_helpers.train.augment import Augment

    paths, _ = image_files
    monkeypatch.delenv("TL_PROGRESS", raising=False)
    features.extract_features(tiny_backbone(), CountingPreprocess(), paths, IMAGE_SIZE, batch_size=5, views=2,
                              augment=Augment(horizontal_flip=True), use_cache=False)
    shown = capsys.readouterr().err
    assert "features" in shown and "/24" in shown  # 12 images, 2 views
    monkeypatch.setenv("TL_PROGRESS", "0")
    features.extract_features(tiny_backbone(), CountingPreprocess(), paths, IMAGE_SIZE, batch_size=5, use_cache=False)
    assert capsys.readouterr().err == ""
