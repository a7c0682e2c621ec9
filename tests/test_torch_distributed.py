"""Chapter 5's loop under torchrun: DistributedDataParallel on the CPU (Gloo), two processes.

A script trains a tiny conv net with the chapter's head on 64 PCam patches (the real ones
when ../shared/data has them, else a synthetic set) for three epochs with
`tl.torch_training.fit_one_cycle_distributed`, once as a single process and once as two
processes started by `python -m torch.distributed.run`. Both must finish, the two ranks must
return the same history and hold the same model, each epoch's shuffled training set must be
split between the ranks, and the loss curve must look like the single process's.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import shared_data_dir

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, os, sys
import numpy as np
import torch
from torch import nn

import tl_helpers as tl

root, out = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
rows = tl.data.pcam_table(root).groupby("label").head(32).reset_index(drop=True)  # 64 patches
transform = tl.torch_training.PatchTransform(32, (0.5,) * 3, (0.5,) * 3)
seen = []  # the training examples this process read, in order


class Recorded(tl.loaders.TorchImageDataset):
    def __getitem__(self, index):
        seen.append(int(index))
        return super().__getitem__(index)


train = Recorded(rows, image_size=(96, 96), preprocess=transform, seed=0)
valid = tl.loaders.TorchImageDataset(rows, image_size=(96, 96), preprocess=transform, seed=0)
train_loader = tl.loaders.make_torch_loader(train, batch_size=8, shuffle=True, drop_last=True, seed=0)
valid_loader = tl.loaders.make_torch_loader(valid, batch_size=32, shuffle=False, seed=0)

torch.manual_seed(0)
body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU())
model = nn.Sequential(body, tl.torch_training.classifier_head(16, hidden=16, classes=2, dropout=0.0))
history = tl.torch_training.fit_one_cycle_distributed(model, train_loader, valid_loader, epochs=3, max_lr=0.05,
                                                      device=torch.device("cpu"), progress=True, verbose=True)
rank, world_size, _ = tl.torch_training.distributed_setup(torch.device("cpu"))
state = [float(t.double().sum()) for t in model.state_dict().values()]
with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
    json.dump({"rank": rank, "world_size": world_size, "history": history.to_dict(orient="list"),
               "state": state, "seen": seen}, f)
if world_size > 1:
    torch.distributed.destroy_process_group()
"""


def _run(args, out: Path, tmp_path: Path, timeout: int = 150) -> subprocess.CompletedProcess:
    out.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TL_CACHE_DIR=str(tmp_path / "cache"),
               OMP_NUM_THREADS="1", KERAS_BACKEND="torch")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.slow
def test_fit_one_cycle_under_torchrun_matches_a_single_process(tmp_path):
    shared = shared_data_dir()
    if shared is not None and (shared / "pcam").is_dir():
        root = shared / "pcam"
    else:
        from tl_helpers.data import synthetic

        root = synthetic.synthesize("pcam", tmp_path / "pcam", seed=0)
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)

    single = _run([str(script), str(root), str(tmp_path / "single")], tmp_path / "single", tmp_path)
    assert single.returncode == 0, single.stderr[-4000:]
    double = _run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   str(script), str(root), str(tmp_path / "ddp")], tmp_path / "ddp", tmp_path)
    assert double.returncode == 0, double.stderr[-4000:]

    one = json.loads((tmp_path / "single" / "rank0.json").read_text())
    ranks = [json.loads((tmp_path / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert one["world_size"] == 1 and [r["world_size"] for r in ranks] == [2, 2]

    # every rank returns the same history (seconds included) and holds the same model
    assert ranks[0]["history"] == ranks[1]["history"]
    assert ranks[0]["state"] == ranks[1]["state"]
    # only rank 0 prints the table
    assert double.stdout.count("(2 processes)") == 1
    assert len(re.findall(r"^ +3 +[0-9.]+ ", double.stdout, flags=re.M)) == 1

    # each epoch the 64 patches are shuffled anew and split between the two ranks (4 batches of 8 each)
    epochs = [[r["seen"][e * 32:(e + 1) * 32] for r in ranks] for e in range(3)]
    assert all(len(r["seen"]) == 3 * 32 for r in ranks) and len(one["seen"]) == 3 * 64
    for halves in epochs:
        assert sorted(halves[0] + halves[1]) == list(range(64))
    assert epochs[0][0] != epochs[1][0]

    # the same curve: three epochs, the training loss falling in both, ending at similar values
    single_loss = one["history"]["train_loss"]
    ddp_loss = ranks[0]["history"]["train_loss"]
    assert one["history"]["epoch"] == ranks[0]["history"]["epoch"] == [1, 2, 3]
    assert single_loss[-1] < single_loss[0] and ddp_loss[-1] < ddp_loss[0]
    assert 1 / 3 < ddp_loss[-1] / single_loss[-1] < 3
    assert all(0 < loss < 10 for loss in ranks[0]["history"]["valid_loss"])
