"""Fine-tuning a PyTorch image classifier: one-cycle SGD, mixed precision on a GPU, progress bars.

The pieces chapter 5 builds its training from, kept small enough to read:

- `center_crop` and `PatchTransform`: the centre of a patch, scaled and normalised the way
  the backbone's weights expect (a picklable callable, so loader workers can use it; its
  `channel_order="BGR"` reproduces a pipeline that read images with OpenCV and never swapped);
- `classifier_head`: pooling, then two BatchNorm + Dropout + Linear stages;
- `train_one_epoch`, `evaluate`, `fit_one_cycle`: the loop. `torch.optim.lr_scheduler.OneCycleLR`
  is stepped once per batch, *after* `optimizer.step()` (stepping it before skips the
  schedule's first value and makes PyTorch warn). On a CUDA device the forward pass runs
  under `torch.autocast` in float16 and the loss is scaled by a `GradScaler`; on a CPU
  everything stays float32. `channels_last=True` keeps the model and every batch in
  PyTorch's channels-last memory layout (the same numbers, faster convolutions on many
  CPUs and GPUs; `step_seconds` measures it). Progress goes to stderr through tqdm
  (tl.paths.progress: off under the runner and the tests, $TL_PROGRESS=0), never as `\\r` prints;
- `most_confident_mistakes`: the errors the model was surest of, the ones worth looking at.

`fit_one_cycle` trains in one process, the loop chapter 5 teaches. Under `torchrun`
(WORLD_SIZE > 1) `fit_one_cycle_distributed` runs the same steps with PyTorch's own engine:
`distributed_setup` opens the process group (NCCL on GPUs, Gloo on CPUs), the model is
wrapped in DistributedDataParallel and the training loader gets a DistributedSampler. Every
rank returns the same history; only rank 0 prints and shows progress bars.

PyTorch is imported inside the functions, so importing this module costs nothing.
"""
from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from ..paths import progress as progress_bar


def pick_device(prefer: str | None = None):
    """`torch.device(prefer)` when given, else the first CUDA GPU when there is one, else the CPU.

    Under `torchrun` (which sets LOCAL_RANK) the GPU is this process's own, cuda:LOCAL_RANK.
    Taught in chapter 5.
    """
    import torch

    if prefer:
        return torch.device(prefer)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())


def distributed_setup(device=None):
    """(rank, world_size, device) for this process; opens the process group under `torchrun`.

    When WORLD_SIZE > 1 (torchrun sets it, with RANK, LOCAL_RANK, MASTER_ADDR and
    MASTER_PORT) and no process group is open yet, this calls
    `torch.distributed.init_process_group` with "nccl" for a CUDA device and "gloo" otherwise,
    and a CUDA device becomes this process's own, cuda:LOCAL_RANK (made the current GPU). A
    single process gets (0, 1, device) and nothing else happens; a process group opened
    beforehand is used as it is. `device` defaults to `pick_device()`.
    Used by tl.torch_training.fit_one_cycle_distributed.
    """
    import torch
    import torch.distributed as dist

    device = torch.device(device) if device is not None else pick_device()
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank, world_size = 0, 1
    if dist.is_available() and dist.is_initialized():
        rank, world_size = dist.get_rank(), dist.get_world_size()
    if world_size > 1 and device.type == "cuda":
        device = pick_device()  # one GPU per process: cuda:LOCAL_RANK
        torch.cuda.set_device(device)
    return rank, world_size, device


def distributed_loader(loader, rank: int, world_size: int):
    """The same DataLoader (dataset, batch size, workers, worker_init_fn, generator, ...) over a
    DistributedSampler: each of `world_size` processes reads its own share of the dataset.

    The sampler shuffles when `loader` did, from the seed of the loader's generator, and
    drops the tail when `loader` drops its last batch; call `loader.sampler.set_epoch(epoch)`
    before each epoch. Used by tl.torch_training.fit_one_cycle_distributed.
    """
    from torch.utils.data import DataLoader, RandomSampler
    from torch.utils.data.distributed import DistributedSampler

    if loader.batch_size is None:
        raise ValueError("distributed training needs a DataLoader built with batch_size, not batch_sampler")
    shuffle = isinstance(loader.sampler, RandomSampler)
    seed = loader.generator.initial_seed() if loader.generator is not None else 0
    sampler = DistributedSampler(loader.dataset, num_replicas=world_size, rank=rank, shuffle=shuffle,
                                 seed=seed, drop_last=loader.drop_last)
    options = dict(batch_size=loader.batch_size, sampler=sampler, num_workers=loader.num_workers,
                   collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, drop_last=loader.drop_last,
                   timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                   multiprocessing_context=loader.multiprocessing_context, generator=loader.generator,
                   persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        options["prefetch_factor"] = loader.prefetch_factor
    return DataLoader(loader.dataset, **options)


def center_crop(image: np.ndarray, size: int | None) -> np.ndarray:
    """The central `size` x `size` pixels of an HxW(xC) image; the image itself when size is None.

    When the border to cut is odd, the extra pixel goes at the bottom / right (as
    torchvision's CenterCrop rounds). Taught in chapter 5.
    """
    if size is None:
        return image
    height, width = image.shape[:2]
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size {size} does not fit an image of {height}x{width}")
    top = int(round((height - size) / 2.0))
    left = int(round((width - size) / 2.0))
    return image[top:top + size, left:left + size]


class PatchTransform:
    """HxWxC float pixels 0..255 -> centre crop (optional) -> [0, 1] -> (x - mean) / std.

    Give it to `tl.loaders.TorchImageDataset` as `preprocess`: the dataset has
    already applied the random flips and rotation to the whole patch, so the crop comes
    after them, as in a torchvision pipeline. `mean` and `std` are the backbone's own
    (`PatchTransform.for_backbone` reads them off its Normalize). `channel_order="BGR"`
    reverses the colour channels first: what a network sees when the patch was read with
    `cv2.imread` (BGR) and fed on as if it were RGB, as chapter 5's article did; the
    mean and std stay in the RGB order of the weights. Taught in chapter 5.
    """

    def __init__(self, crop: int | None, mean: Sequence[float], std: Sequence[float],
                 channel_order: str = "RGB"):
        if channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', not {channel_order!r}")
        self.crop = None if crop is None else int(crop)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.channel_order = channel_order

    @classmethod
    def for_backbone(cls, backbone, crop: int | None, channel_order: str = "RGB") -> "PatchTransform":
        """The transform for a PyTorch `tl_helpers.backbones.Backbone` (its Normalize's mean/std)."""
        normalize = backbone.preprocess
        return cls(crop, tuple(normalize.mean), tuple(normalize.std), channel_order)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = center_crop(np.asarray(image, dtype=np.float32), self.crop)
        if self.channel_order == "BGR":
            image = image[..., ::-1]
        return (image / 255.0 - self.mean) / self.std

    def __repr__(self) -> str:
        order = "" if self.channel_order == "RGB" else f", channel_order={self.channel_order!r}"
        return (f"PatchTransform(crop={self.crop}, mean={self.mean.round(3).tolist()}, "
                f"std={self.std.round(3).tolist()}{order})")


def classifier_head(in_features: int, hidden: int = 512, classes: int = 2, dropout: float = 0.5):
    """Pool a feature map, then BatchNorm, Dropout, Linear(hidden), ReLU, BatchNorm, Dropout, Linear(classes).

    Input: the backbone's last feature map (N, in_features, h, w); output: (N, classes) logits.
    Taught in chapter 5.
    """
    from torch import nn

    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.BatchNorm1d(in_features),
        nn.Dropout(dropout),
        nn.Linear(in_features, hidden),
        nn.ReLU(),
        nn.BatchNorm1d(hidden),
        nn.Dropout(dropout),
        nn.Linear(hidden, classes),
    )


def _autocast(device):
    """float16 autocast on CUDA; a no-op context on other devices (CPU training stays float32)."""
    import contextlib

    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def make_grad_scaler(device):
    """A GradScaler for float16 training on CUDA; None (no scaling) elsewhere. Taught in chapter 5."""
    import torch

    return torch.amp.GradScaler("cuda") if device.type == "cuda" else None


def _batch_to(images, device, channels_last: bool):
    """A batch on `device`, in channels-last memory layout when asked (4-D batches only)."""
    import torch

    images = images.to(device, non_blocking=True)
    if channels_last and images.ndim == 4:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def train_one_epoch(model, loader, optimizer, device, scheduler=None, scaler=None,
                    criterion: Callable | None = None, progress: bool = True, desc: str = "train",
                    channels_last: bool = False) -> float:
    """One pass over `loader` in train mode; returns the mean training loss per example.

    Per batch: forward (autocast on CUDA), loss, backward (scaled when `scaler`), optimiser
    step, then `scheduler.step()` (a per-batch schedule such as OneCycleLR). When `model` is
    wrapped in DistributedDataParallel, the loss is averaged over every process's examples.
    `channels_last`: batches go in channels-last layout (give the model the same layout).
    Taught in chapter 5.
    """
    import torch

    criterion = criterion or torch.nn.CrossEntropyLoss()
    model.train()
    total, count = 0.0, 0
    for images, labels in progress_bar(loader, desc, enabled=progress):
        images = _batch_to(images, device, channels_last)
        labels = labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            loss = criterion(model(images), labels)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()  # after the optimiser: the schedule's first rate is used, not skipped
        total += float(loss.detach()) * len(labels)
        count += len(labels)
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        # each process saw its own share: the mean over all examples of all processes
        sums = torch.tensor([total, count], dtype=torch.float64, device=device)
        torch.distributed.all_reduce(sums)
        total, count = float(sums[0]), float(sums[1])
    return total / max(count, 1)


def evaluate(model, loader, device, criterion: Callable | None = None, progress: bool = False,
             desc: str = "evaluate", channels_last: bool = False) -> dict:
    """Mean loss, accuracy, softmax probabilities (N, K), raw logits (N, K) and labels (N,) over
    `loader`, in eval mode.

    The loader must yield (images, labels) in a fixed order (no shuffling), so that row i of
    the probabilities belongs to example i of the dataset. `channels_last`: batches go in
    channels-last layout. Taught in chapter 5.
    """
    import torch

    criterion = criterion or torch.nn.CrossEntropyLoss()
    model.eval()
    probabilities, raw, targets, total = [], [], [], 0.0
    with torch.no_grad():
        for images, labels in progress_bar(loader, desc, enabled=progress):
            images = _batch_to(images, device, channels_last)
            labels = labels.to(device, non_blocking=True)
            with _autocast(device):
                logits = model(images)
            logits = logits.float()
            total += float(criterion(logits, labels)) * len(labels)
            probabilities.append(torch.softmax(logits, dim=1).cpu().numpy())
            raw.append(logits.cpu().numpy())
            targets.append(labels.cpu().numpy())
    probabilities = np.concatenate(probabilities)
    targets = np.concatenate(targets)
    return {"loss": total / len(targets),
            "accuracy": float((probabilities.argmax(axis=1) == targets).mean()),
            "probabilities": probabilities, "logits": np.concatenate(raw), "labels": targets}


def make_one_cycle(optimizer, max_lr: float, epochs: int, steps_per_epoch: int, **options):
    """`torch.optim.lr_scheduler.OneCycleLR` over epochs x steps_per_epoch batches.

    Step it once per batch, after `optimizer.step()`. Extra keyword options (pct_start,
    div_factor, anneal_strategy, ...) go to OneCycleLR unchanged. Taught in chapter 5.
    """
    from torch.optim.lr_scheduler import OneCycleLR

    return OneCycleLR(optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch, **options)


def fit_one_cycle(model, train_loader, valid_loader, epochs: int, max_lr: float, momentum: float = 0.9,
                  weight_decay: float = 0.0, device=None, progress: bool = True, verbose: bool = True,
                  channels_last: bool = False, **one_cycle_options) -> pd.DataFrame:
    """Train `model` with SGD + momentum under a one-cycle learning-rate policy.

    The rate rises from max_lr / div_factor to `max_lr` and falls again over all
    epochs x batches (OneCycleLR's defaults: 30% warm-up, cosine, momentum cycled between
    0.85 and 0.95 unless `cycle_momentum=False`). After each epoch the model is evaluated on
    `valid_loader`. Returns one row per epoch: epoch, train_loss, valid_loss, accuracy,
    seconds; with `verbose`, prints each row as it comes. The model stays on `device`. With
    `channels_last` the model is moved to the channels-last memory layout (it stays there)
    and every batch follows. One process: under `torchrun`, call `fit_one_cycle_distributed`.
    Taught in chapter 5.
    """
    import torch

    if int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise RuntimeError("fit_one_cycle trains in one process, but WORLD_SIZE > 1 (torchrun): call "
                           "tl.torch_training.fit_one_cycle_distributed instead")
    device = torch.device(device) if device is not None else pick_device()
    _place(model, device, channels_last)
    optimizer, scheduler, scaler = _one_cycle_sgd(model, epochs, len(train_loader), max_lr, momentum,
                                                  weight_decay, device, **one_cycle_options)
    history = _EpochTable(verbose)
    for epoch in range(epochs):
        start = time.perf_counter()
        train_loss = train_one_epoch(model, train_loader, optimizer, device, scheduler, scaler,
                                     progress=progress, desc=f"epoch {epoch + 1}/{epochs}",
                                     channels_last=channels_last)
        result = evaluate(model, valid_loader, device, progress=progress, desc="validation",
                          channels_last=channels_last)
        history.add(history.row(epoch, train_loss, result, start))
    return history.table()


def _place(model, device, channels_last: bool) -> None:
    """Move the model to `device`, and to the channels-last memory layout when asked."""
    import torch

    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)


def _one_cycle_sgd(model, epochs: int, steps_per_epoch: int, max_lr: float, momentum: float,
                   weight_decay: float, device, **one_cycle_options):
    """SGD with momentum over the trainable parameters, its one-cycle schedule (stepped per
    batch) and a GradScaler (None off CUDA): what one-cycle training steps with."""
    import torch

    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=max_lr,
                                momentum=momentum, weight_decay=weight_decay)
    scheduler = make_one_cycle(optimizer, max_lr=max_lr, epochs=epochs, steps_per_epoch=steps_per_epoch,
                               **one_cycle_options)
    return optimizer, scheduler, make_grad_scaler(device)


class _EpochTable:
    """The history a fit returns, one row per epoch, printed as it comes when `verbose`."""

    def __init__(self, verbose: bool, note: str = ""):
        self.rows, self.verbose = [], verbose
        if verbose:
            print("epoch  train loss  valid loss  accuracy  seconds" + note)

    @staticmethod
    def row(epoch: int, train_loss: float, result: dict, start: float) -> dict:
        """One epoch's row: `result` is tl.torch_training.evaluate's on validation."""
        return {"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": result["loss"],
                "accuracy": result["accuracy"], "seconds": time.perf_counter() - start}

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if self.verbose:
            print(f"{row['epoch']:5d}  {row['train_loss']:10.4f}  {row['valid_loss']:10.4f}  "
                  f"{row['accuracy']:8.3f}  {row['seconds']:7.0f}", flush=True)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def fit_one_cycle_distributed(model, train_loader, valid_loader, epochs: int, max_lr: float,
                              momentum: float = 0.9, weight_decay: float = 0.0, device=None,
                              progress: bool = True, verbose: bool = True, channels_last: bool = False,
                              **one_cycle_options) -> pd.DataFrame:
    """`fit_one_cycle` on several processes started by `torchrun`, with PyTorch's own engine.

    Under `torchrun` with WORLD_SIZE > 1 (see `distributed_setup`; a CUDA device becomes
    cuda:LOCAL_RANK): the model trains as DistributedDataParallel, the training loader is
    rebuilt over a DistributedSampler (`distributed_loader`, reshuffled each epoch), the
    schedule counts this process's batches, the training loss is averaged over all processes,
    BatchNorm statistics are taken from rank 0 after each epoch, and rank 0 alone evaluates
    `valid_loader` and sends its row to the others: every rank returns the same history and
    holds the same model. Only rank 0 prints and shows progress bars. In a single process it
    is `fit_one_cycle`, so one script serves both. Mentioned in chapter 5 (several GPUs).
    """
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    rank, world_size, device = distributed_setup(device)
    if world_size == 1:
        return fit_one_cycle(model, train_loader, valid_loader, epochs, max_lr, momentum, weight_decay,
                             device, progress, verbose, channels_last, **one_cycle_options)
    _place(model, device, channels_last)
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    train_loader = distributed_loader(train_loader, rank, world_size)
    optimizer, scheduler, scaler = _one_cycle_sgd(model, epochs, len(train_loader), max_lr, momentum,
                                                  weight_decay, device, **one_cycle_options)
    progress = progress and rank == 0
    history = _EpochTable(verbose and rank == 0, note=f"   ({world_size} processes)")
    for epoch in range(epochs):
        start = time.perf_counter()
        train_loader.sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        train_loss = train_one_epoch(trained, train_loader, optimizer, device, scheduler, scaler,
                                     progress=progress, desc=f"epoch {epoch + 1}/{epochs}",
                                     channels_last=channels_last)
        for buffer in model.buffers():  # BatchNorm statistics: rank 0's, so every rank holds one model
            dist.broadcast(buffer, src=0)
        shared = [None]
        if rank == 0:
            result = evaluate(model, valid_loader, device, progress=progress, desc="validation",
                              channels_last=channels_last)
            shared = [history.row(epoch, train_loss, result, start)]
        dist.broadcast_object_list(shared, src=0)  # rank 0's row, so every rank has one history
        history.add(shared[0])
    return history.table()


def step_seconds(model, images, labels, device=None, channels_last: bool = False, autocast_dtype=None,
                 steps: int = 3, warmup: int = 1, train: bool = True) -> float:
    """Median seconds of one training step (forward, backward, SGD step) on this batch; or of
    one forward pass in eval mode when `train=False`.

    Measured on a copy of `model` (its weights stay as they were), after `warmup` untimed
    steps. `channels_last`: model and batch in channels-last memory layout; `autocast_dtype`:
    run the forward pass under `torch.autocast` with this dtype (e.g. torch.bfloat16 on a
    CPU, torch.float16 on a GPU), None for float32. What a setting saves depends on the
    hardware: measure it on the machine that trains (chapter 5 does). Taught in chapter 5.
    """
    import contextlib
    import copy

    import torch

    device = torch.device(device) if device is not None else pick_device()
    trial = copy.deepcopy(model).to(device)
    trial.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    images = _batch_to(torch.as_tensor(images), device, channels_last)
    labels = torch.as_tensor(labels).to(device)
    optimizer = torch.optim.SGD(trial.parameters(), lr=1e-4, momentum=0.9)
    criterion = torch.nn.CrossEntropyLoss()
    autocast = (torch.autocast(device_type=device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    trial.train(train)
    times = []
    for step in range(warmup + max(1, steps)):
        start = time.perf_counter()
        if train:
            optimizer.zero_grad(set_to_none=True)
            with autocast:
                loss = criterion(trial(images).float(), labels)
            loss.backward()
            optimizer.step()
        else:
            with torch.no_grad(), autocast:
                trial(images)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def most_confident_mistakes(y_true, probabilities, k: int = 8) -> np.ndarray:
    """Indices of the (up to) `k` wrong predictions made with the highest probability, surest first.

    `probabilities` is (N, K) softmax output (or (N,) P(class 1) for two classes); the
    prediction is the most probable class. Ties keep dataset order. Taught in chapter 5.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim == 1:
        probabilities = np.stack([1.0 - probabilities, probabilities], axis=1)
    if len(probabilities) != len(y_true):
        raise ValueError(f"{len(y_true)} labels but {len(probabilities)} rows of probabilities")
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    wrong = np.flatnonzero(predicted != y_true)
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order][:k]


# --- chapter 5 (issue 23): the speed table of "where the time goes" ------------------------------

def native_bfloat16(device) -> bool:
    """Whether `device` computes in bfloat16 natively: a CUDA device, or a CPU whose oneDNN
    has bfloat16 instructions (AVX512-BF16 or AMX). Elsewhere PyTorch emulates them, and an
    emulated step is an order of magnitude slower than float32 (more on a busy machine, where
    chapter 5's timing of it once ran past the test suite's 2,000 s cell limit).
    Used by `speed_settings` (chapter 5)."""
    import torch

    device = torch.device(device)
    if device.type != "cpu":
        return True
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: assume emulated
        return False


def speed_settings(model, images, labels, device=None, steps: int = 3, time_emulated: bool = False) -> pd.DataFrame:
    """Seconds of one training step on this batch for float32 and 16-bit autocast, each with
    and without channels-last (`step_seconds` on a copy of `model`), as a table.

    The 16-bit format is float16 on a CUDA device and bfloat16 elsewhere. Rows in that order
    (float32 first); columns: seconds per training batch, patches per second, speed-up
    against float32. On a CPU without bfloat16 instructions (`native_bfloat16`) the 16-bit
    rows are left empty (NaN), with a line saying why, unless `time_emulated`. Taught in chapter 5.
    """
    import torch

    device = torch.device(device) if device is not None else pick_device()
    half = torch.float16 if device.type == "cuda" else torch.bfloat16
    low = str(half).removeprefix("torch.")
    settings = {"float32": {}, "float32, channels-last": {"channels_last": True},
                f"{low} autocast": {"autocast_dtype": half},
                f"{low} autocast, channels-last": {"autocast_dtype": half, "channels_last": True}}
    timed = time_emulated or native_bfloat16(device)  # a CUDA device: float16, native
    if not timed:
        print(f"{low} autocast not timed: this CPU has no {low} instructions, so PyTorch would emulate "
              f"them, far slower than float32 (speed_settings(..., time_emulated=True) times it anyway)")
    step = pd.Series({name: step_seconds(model, images, labels, device, steps=steps, **options)
                      if timed or "autocast_dtype" not in options else float("nan")
                      for name, options in settings.items()}, name="seconds per training batch")
    table = step.rename_axis("setting").to_frame()
    table["patches per second"] = len(images) / step
    table["speed-up"] = step.iloc[0] / step
    return table
