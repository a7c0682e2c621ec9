"""torch_training: centre crop, patch transform, head, one-cycle schedule and loop, confident mistakes."""
from __future__ import annotations

import warnings
from pathlib import Path

import tl_helpers  # noqa: F401  (loads triton before anything imports TensorFlow)

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tl_helpers.train import torch_training as tt
from tl_helpers.data.images import decode_image
from tl_helpers.train.loaders import TorchImageDataset, make_torch_loader


def _pcam_rows(root, n_per_class: int) -> pd.DataFrame:
    from tl_helpers.data import pcam_table

    table = pcam_table(root)
    return table.groupby("label").head(n_per_class).reset_index(drop=True)


@pytest.fixture(scope="module")
def pcam_root(tmp_path_factory):
    """The real PCam patches when they are here, else a synthetic set in the Kaggle layout (.tif)."""
    from conftest import shared_data_dir
    from tl_helpers.data import synthetic

    real = shared_data_dir()
    if real is not None and (real / "pcam").is_dir():
        return real / "pcam"
    return synthetic.synthesize("pcam", tmp_path_factory.mktemp("pcam") / "pcam", seed=0)


# --- centre crop and the patch transform -----------------------------------------------------

def test_center_crop_takes_the_middle_of_a_real_patch(shared_data):
    path = _pcam_rows(shared_data / "pcam", 1).path[0]
    image = decode_image(path)
    assert image.shape == (96, 96, 3)
    crop = tt.center_crop(image, 49)
    assert crop.shape == (49, 49, 3)
    # 96 - 49 = 47 pixels to cut: 24 before (rounded half to even) and 23 after, as torchvision does
    np.testing.assert_array_equal(crop, image[24:73, 24:73])
    assert tt.center_crop(image, None) is image
    np.testing.assert_array_equal(tt.center_crop(image, 32), image[32:64, 32:64])


def test_center_crop_rejects_a_crop_larger_than_the_image():
    with pytest.raises(ValueError, match="does not fit"):
        tt.center_crop(np.zeros((10, 12, 3)), 11)


def test_center_crop_agrees_with_torchvision():
    from torchvision.transforms.functional import center_crop as tv_crop

    image = np.arange(96 * 96 * 3, dtype=np.float32).reshape(96, 96, 3)
    for size in (49, 32, 95):
        ours = tt.center_crop(image, size)
        theirs = tv_crop(torch.from_numpy(image).permute(2, 0, 1), [size, size]).permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(ours, theirs)


def test_patch_transform_uses_the_backbones_normalisation(shared_data):
    from tl_helpers.train.backbones import torch_normalize_imagenet

    class FakeBackbone:
        preprocess = torch_normalize_imagenet()

    transform = tt.PatchTransform.for_backbone(FakeBackbone(), crop=49)
    image = decode_image(_pcam_rows(shared_data / "pcam", 1).path[0]).astype(np.float32)
    out = transform(image)
    assert out.shape == (49, 49, 3) and out.dtype == np.float32
    expected = FakeBackbone.preprocess(torch.from_numpy(image[24:73, 24:73] / 255.0).permute(2, 0, 1))
    np.testing.assert_allclose(out, expected.permute(1, 2, 0).numpy(), atol=1e-5)
    assert tt.PatchTransform(None, (0.5,) * 3, (0.5,) * 3)(image).shape == (96, 96, 3)


def test_dataset_with_patch_transform_yields_cropped_normalised_tensors(pcam_root):
    rows = _pcam_rows(pcam_root, 4)
    transform = tt.PatchTransform(49, (0.5,) * 3, (0.5,) * 3)
    dataset = TorchImageDataset(rows, image_size=(96, 96), preprocess=transform, seed=0)
    image, label = dataset[0]
    assert tuple(image.shape) == (3, 49, 49)
    assert -1.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert label == int(rows.label[0])


# --- the head ---------------------------------------------------------------------------------

def test_classifier_head_layers_and_output():
    head = tt.classifier_head(64, hidden=16, classes=2)
    kinds = [type(layer).__name__ for layer in head]
    assert kinds == ["AdaptiveAvgPool2d", "Flatten", "BatchNorm1d", "Dropout", "Linear", "ReLU",
                     "BatchNorm1d", "Dropout", "Linear"]
    assert head[3].p == 0.5 and head[4].out_features == 16 and head[8].out_features == 2
    head.eval()
    assert tuple(head(torch.randn(5, 64, 2, 2)).shape) == (5, 2)


# --- the loop -----------------------------------------------------------------------------------

def _tiny_model():
    torch.manual_seed(0)
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU())
    return nn.Sequential(body, tt.classifier_head(8, hidden=8))


def _loaders(root, n_per_class=8, batch_size=4):
    rows = _pcam_rows(root, n_per_class)
    transform = tt.PatchTransform(32, (0.5,) * 3, (0.5,) * 3)
    dataset = TorchImageDataset(rows, image_size=(96, 96), preprocess=transform, seed=0)
    train = make_torch_loader(dataset, batch_size, shuffle=True, seed=0, drop_last=True)
    valid = make_torch_loader(dataset, batch_size, shuffle=False, seed=0)
    return rows, train, valid


def test_one_cycle_is_stepped_after_the_optimiser_and_follows_the_schedule(pcam_root):
    _, train, _ = _loaders(pcam_root)
    model = _tiny_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, epochs=2, steps_per_epoch=len(train))
    used = []  # the learning rate each optimiser step actually uses
    optimizer.register_step_pre_hook(lambda opt, args, kwargs: used.append(opt.param_groups[0]["lr"]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would raise
        for _ in range(2):
            tt.train_one_epoch(model, train, optimizer, torch.device("cpu"), scheduler, progress=False)
    assert len(used) == 2 * len(train)
    assert used[0] == pytest.approx(0.1 / 25)  # the schedule's first rate is used, not skipped
    # the rates used are the schedule's values 0, 1, ..., n-1, in order
    reference = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.1, epochs=2, steps_per_epoch=len(train))
    expected = []
    for _ in used:
        expected.append(reference.param_groups[0]["lr"])
        reference.step()
        schedule.step()
    np.testing.assert_allclose(used, expected, rtol=1e-12)
    assert max(used) > 0.09 and used[-1] < used[0]  # warmed up, then annealed below the start


def test_fit_one_cycle_learns_real_patches_and_reports_each_epoch(pcam_root):
    rows, train, valid = _loaders(pcam_root)
    model = _tiny_model()
    before = tt.evaluate(model, valid, torch.device("cpu"))["loss"]
    history = tt.fit_one_cycle(model, train, valid, epochs=6, max_lr=0.05, device=torch.device("cpu"),
                               progress=False, verbose=False)
    assert list(history.columns) == ["epoch", "train_loss", "valid_loss", "accuracy", "seconds"]
    assert history.epoch.tolist() == [1, 2, 3, 4, 5, 6]
    after = tt.evaluate(model, valid, torch.device("cpu"))
    assert after["loss"] < before
    assert after["loss"] == pytest.approx(history.valid_loss.iloc[-1])
    # evaluation keeps dataset order: labels come back as the dataframe has them
    np.testing.assert_array_equal(after["labels"], rows.label.to_numpy())
    assert after["probabilities"].shape == (len(rows), 2)
    np.testing.assert_allclose(after["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_patch_transform_bgr_reverses_the_channels_of_a_real_patch(shared_data):
    image = decode_image(_pcam_rows(shared_data / "pcam", 1).path[0]).astype(np.float32)
    rgb = tt.PatchTransform(None, (0.5,) * 3, (0.5,) * 3)(image)
    bgr = tt.PatchTransform(None, (0.5,) * 3, (0.5,) * 3, channel_order="BGR")(image)
    np.testing.assert_allclose(bgr, rgb[..., ::-1])
    assert not np.allclose(bgr, rgb)  # a stained patch is not gray: the order matters
    assert "BGR" in repr(tt.PatchTransform(49, (0.5,) * 3, (0.5,) * 3, channel_order="BGR"))
    with pytest.raises(ValueError, match="channel_order"):
        tt.PatchTransform(None, (0.5,) * 3, (0.5,) * 3, channel_order="GBR")


def test_channels_last_gives_the_same_logits_and_training(pcam_root):
    rows, train, valid = _loaders(pcam_root)
    torch.manual_seed(0)
    plain = _tiny_model()
    fast = _tiny_model()
    fast.load_state_dict(plain.state_dict())
    a = tt.evaluate(plain, valid, torch.device("cpu"))
    fast.to(memory_format=torch.channels_last)
    b = tt.evaluate(fast, valid, torch.device("cpu"), channels_last=True)
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-4)
    np.testing.assert_allclose(a["probabilities"], torch.softmax(torch.from_numpy(a["logits"]), 1).numpy(), atol=1e-6)
    history = tt.fit_one_cycle(fast, train, valid, epochs=2, max_lr=0.05, device=torch.device("cpu"),
                               progress=False, verbose=False, channels_last=True)
    assert len(history) == 2 and np.isfinite(history.valid_loss).all()


def test_step_seconds_times_a_copy_and_leaves_the_weights():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    before = [p.detach().clone() for p in model.parameters()]
    images, labels = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 0, 1])
    for options in ({}, {"channels_last": True}, {"autocast_dtype": torch.bfloat16}, {"train": False}):
        seconds = tt.step_seconds(model, images, labels, "cpu", steps=2, **options)
        assert 0 < seconds < 10
    for old, new in zip(before, model.parameters()):
        assert torch.equal(old, new)


def test_grad_scaler_only_on_cuda():
    assert tt.make_grad_scaler(torch.device("cpu")) is None
    assert tt.pick_device("cpu").type == "cpu"


def one_cycle_run(step_scheduler_first: bool):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scheduler = tt.make_one_cycle(optimizer, max_lr=0.1, epochs=3, steps_per_epoch=10)
    rates = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(30):
            loss = model(torch.randn(8, 4)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            rates.append(optimizer.param_groups[0]["lr"])  # the rate this batch trains with
            if step_scheduler_first:
                scheduler.step()
            optimizer.step()
            if not step_scheduler_first:
                scheduler.step()
    return rates, [str(w.message) for w in caught if "lr_scheduler" in str(w.message)]


def test_one_cycle_rises_then_falls_without_warning_when_stepped_after_the_optimizer():
    rates, scheduler_warnings = one_cycle_run(step_scheduler_first=False)
    peak = int(np.argmax(rates))
    assert 0 < peak < len(rates) - 1
    assert max(rates) == pytest.approx(0.1, rel=0.05)
    assert np.all(np.diff(rates[: peak + 1]) > 0) and np.all(np.diff(rates[peak:]) < 0)
    assert rates[-1] < 0.001
    assert scheduler_warnings == []


def test_one_cycle_stepped_before_the_optimizer_warns():
    _, scheduler_warnings = one_cycle_run(step_scheduler_first=True)
    assert any("optimizer.step()" in message for message in scheduler_warnings)


# --- confident mistakes -----------------------------------------------------------------------

def test_most_confident_mistakes_orders_wrong_predictions_by_confidence():
    y_true = np.array([0, 1, 0, 1, 0, 1])
    p_one = np.array([0.9, 0.2, 0.1, 0.45, 0.6, 0.99])  # wrong: 0 (0.9), 1 (0.8), 3 (0.55), 4 (0.6)
    np.testing.assert_array_equal(tt.most_confident_mistakes(y_true, p_one, k=3), [0, 1, 4])
    two_columns = np.stack([1 - p_one, p_one], axis=1)
    np.testing.assert_array_equal(tt.most_confident_mistakes(y_true, two_columns, k=10), [0, 1, 4, 3])
    assert len(tt.most_confident_mistakes([0, 1], [0.1, 0.9])) == 0


def test_most_confident_mistakes_checks_lengths():
    with pytest.raises(ValueError, match="labels"):
        tt.most_confident_mistakes([0, 1, 1], [0.2, 0.3])


# --- chapter 5 (issue 23): DDP out of the taught loop -------------------------------------------

def test_fit_one_cycle_under_torchrun_points_to_the_distributed_loop(pcam_root, monkeypatch):
    _, train, valid = _loaders(pcam_root)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="fit_one_cycle_distributed"):
        tt.fit_one_cycle(_tiny_model(), train, valid, epochs=1, max_lr=0.05, device=torch.device("cpu"),
                         progress=False, verbose=False)


def test_fit_one_cycle_distributed_in_one_process_is_fit_one_cycle(pcam_root, monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    histories, states = [], []
    for fit in (tt.fit_one_cycle, tt.fit_one_cycle_distributed):
        _, train, valid = _loaders(pcam_root)
        model = _tiny_model()
        histories.append(fit(model, train, valid, epochs=2, max_lr=0.05, device=torch.device("cpu"),
                             progress=False, verbose=True))
        states.append(model.state_dict())
    printed = capsys.readouterr().out
    assert printed.count("epoch  train loss") == 2 and "processes" not in printed
    columns = ["epoch", "train_loss", "valid_loss", "accuracy"]
    pd.testing.assert_frame_equal(histories[0][columns], histories[1][columns])
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name


def test_speed_settings_tables_the_four_settings_of_a_step(monkeypatch):
    calls = []

    def fake_step_seconds(model, images, labels, device, steps, **options):  # no wall clock
        calls.append(options)
        return [0.4, 0.2, 0.8, 0.1][len(calls) - 1]

    monkeypatch.setattr(tt, "step_seconds", fake_step_seconds)
    monkeypatch.setattr(tt, "native_bfloat16", lambda device: True)
    table = tt.speed_settings(nn.Linear(2, 2), torch.zeros(8, 2), torch.zeros(8), "cpu")
    assert list(table.index) == ["float32", "float32, channels-last", "bfloat16 autocast",
                                 "bfloat16 autocast, channels-last"]
    assert calls == [{}, {"channels_last": True}, {"autocast_dtype": torch.bfloat16},
                     {"autocast_dtype": torch.bfloat16, "channels_last": True}]
    np.testing.assert_allclose(table["seconds per training batch"], [0.4, 0.2, 0.8, 0.1])
    np.testing.assert_allclose(table["patches per second"], [20, 40, 10, 80])
    np.testing.assert_allclose(table["speed-up"], [1, 2, 0.5, 4])


def test_speed_settings_leaves_emulated_bfloat16_untimed(monkeypatch, capsys):
    """Emulated bfloat16 steps are not timed (on a busy 2-core machine their timing ran past the
    suite's 2,000 s cell limit); the rows stay, empty, and a line says why."""
    calls = []

    def fake_step_seconds(model, images, labels, device, steps, **options):
        calls.append(options)
        return 0.4

    monkeypatch.setattr(tt, "step_seconds", fake_step_seconds)
    monkeypatch.setattr(tt, "native_bfloat16", lambda device: False)
    table = tt.speed_settings(nn.Linear(2, 2), torch.zeros(8, 2), torch.zeros(8), "cpu")
    assert calls == [{}, {"channels_last": True}]
    assert table["seconds per training batch"].isna().tolist() == [False, False, True, True]
    assert "bfloat16 autocast not timed" in capsys.readouterr().out
    tt.speed_settings(nn.Linear(2, 2), torch.zeros(8, 2), torch.zeros(8), "cpu", time_emulated=True)
    assert len(calls) == 6  # asked to: all four timed


def test_native_bfloat16_agrees_with_the_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo to compare with")
    flags = set(cpuinfo.read_text().split())
    assert tt.native_bfloat16("cpu") == bool(flags & {"avx512_bf16", "amx_bf16"})
