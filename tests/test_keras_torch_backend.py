"""The Keras chapters also run with KERAS_BACKEND=torch (the GPU runners' path: PyTorch, no TensorFlow).

Each chapter's smoke profile runs through the runner on the CPU torch already installed.
Floats differ between backends, so the checks are what must not: the run finishes, Keras
really ran on torch, the same metrics are recorded as in the stored (TensorFlow) smoke
outputs, each a proportion, the data counts and split sizes are the same, and the smoke
model clears the same floor as on TensorFlow (tests/smoke_floors.yml).

The four runs one after another take about 5 minutes on two CPU cores (measured: chapter 1
47 s, 2 37 s, 3 115 s, 4 87 s; about what TensorFlow takes), more than the suite's 15-minute
budget holds beside nbval. The default suite runs chapter 1 on torch (the feature cache, the
head, fine-tuning and MC dropout on torch); TL_FULL_CHECKS=1 adds chapters 2 to 4 (GPU
runners, where Keras runs on torch anyway, and before a release). One run at a time: two at
once on two cores made every run slower (442 s for the four) and halved the wall-clock
budget of chapter 4's segmenter, which then missed its floor.
"""
import ast
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import written_this_session
from tl_helpers.workflow.floors import below_floor

ROOT = Path(__file__).resolve().parents[1]
TORCH_RUNS = ROOT / "runs" / "smoke-torch"
KERAS_CHAPTERS = ["01_xception_brain_tumor", "02_efficientnet_brain_tumor_4class",
                  "03_xray_perturbation_retraining", "04_resnet_resunet_lgg_segmentation"]
LONG_ON_TORCH = {"02_efficientnet_brain_tumor_4class", "03_xray_perturbation_retraining",
                 "04_resnet_resunet_lgg_segmentation"}
RUN_ALL = os.environ.get("TL_FULL_CHECKS") == "1"


# Chapter 3 calibrates the domain-B arm chosen on validation and names its metrics after it; on the
# smoke data the two backends may choose different arms, so the arm's name is left out of the comparison.
CHOSEN_ARM = re.compile(r"^domain_b_(?:frozen|fine_tuned|scratch)_((?:temperature_scaled_)?(?:ece|brier))$")


def metric_names(names) -> set:
    """Metric names with chapter 3's chosen-arm name replaced by <chosen>."""
    return {CHOSEN_ARM.sub(r"domain_b_<chosen>_\1", name) for name in names}


def stored_card(stem: str) -> tuple[set, dict]:
    """Metric names and data entries printed by the run card in the stored smoke outputs."""
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
                   for o in outputs)  # the card is printed, or displayed as a table with a text form
    card = text[text.rindex("Run card:"):]
    metrics = set(re.findall(r"^  (\S+) \[[^\]]+\]: ", card, re.M))
    data = {}
    for name, fields in re.findall(r"^  data (\S+): (.*)$", card, re.M):
        for key in ("counts", "splits"):
            found = re.search(rf"\b{key}=(\{{.*?\}})(?:, \w+=|$)", fields)
            if found:
                data.setdefault(name, {})[key] = ast.literal_eval(found.group(1))
    return metrics, data


@pytest.fixture(scope="module")
def torch_backend_runs() -> subprocess.CompletedProcess:
    """This session's smoke runs on the torch backend, one after another, kept under
    runs/smoke-torch/ (ignored by git) so that the numbers can be read afterwards."""
    env = {**os.environ, "KERAS_BACKEND": "torch", "TL_CACHE_DIR": str(ROOT / ".tl_cache")}
    env.pop("TL_PROFILE", None)
    chosen = [stem for stem in KERAS_CHAPTERS if RUN_ALL or stem not in LONG_ON_TORCH]
    return subprocess.run([sys.executable, "-m", "tl_helpers.workflow.runner", "--profile", "smoke", "--out", str(TORCH_RUNS),
                           "--no-progress", *(f"notebooks/{stem}.ipynb" for stem in chosen)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("stem", KERAS_CHAPTERS)
def test_smoke_run_on_the_torch_backend(stem, request):
    if stem in LONG_ON_TORCH and not RUN_ALL:
        pytest.skip("minutes on two CPU cores with Keras on torch: run with TL_FULL_CHECKS=1 (see the module doc)")
    torch_backend_runs = request.getfixturevalue("torch_backend_runs")
    card_path = TORCH_RUNS / f"{stem}.json"
    assert written_this_session(card_path), (
        f"no torch-backend run card for {stem} from this session; runner said:\n{torch_backend_runs.stderr[-3000:]}")
    card = json.loads(card_path.read_text())
    assert (TORCH_RUNS / f"{stem}.ipynb").is_file()
    assert card["frameworks"]["keras"]["backend"] == "torch"
    metrics, data = stored_card(stem)
    assert metric_names(card["metrics"]) == metric_names(metrics)
    for name, entry in card["metrics"].items():
        # a difference of two scores, or a correlation, may be negative
        low = -1.0 if "_minus_" in name or "spearman" in name else 0.0
        assert math.isnan(entry["value"]) or low <= entry["value"] <= 1.0, (name, entry)
    for name, expected in data.items():
        for key, value in expected.items():
            assert card["data"][name][key] == value, (name, key)
    assert below_floor(card) == []
