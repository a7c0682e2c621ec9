"""Smoke runs that learn: each chapter's smoke model clears its floor (tests/smoke_floors.yml).

The smoke data are synthetic with a clear signal, so a working pipeline learns them in
seconds; a broken one (shuffled labels, wrong preprocessing) does not, and this test is what
notices it: nbval alone compares printouts, whose numbers it masks.
"""
import json
import os
import re
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, written_this_session
from tl_helpers.workflow import runner
from tl_helpers.workflow.floors import below_floor, main as floors_main, smoke_floors

FLOORS = smoke_floors(REPO / "tests" / "smoke_floors.yml")


@pytest.mark.after_notebooks
@pytest.mark.parametrize("stem", sorted(FLOORS))
def test_smoke_run_clears_its_floor(stem):
    """Reads the card that this session's nbval run of notebooks/<stem>.ipynb wrote."""
    card_path = REPO / "runs" / "smoke" / f"{stem}.json"
    if not written_this_session(card_path):
        if os.environ.get("CI"):
            pytest.fail(f"{card_path} was not written by this test session: run pytest with --nbval over notebooks/")
        pytest.skip("needs the nbval run of notebooks/ in the same pytest session (bash scripts/test.sh)")
    card = json.loads(card_path.read_text())
    assert card["profile"] == "smoke" and card["notebook"] == stem
    assert below_floor(card) == []


def test_floor_command_fails_a_card_below_its_floor(tmp_path, capsys):
    """The command CI's Colab-stack check runs on its runner cards."""
    stem = "02_efficientnet_brain_tumor_4class"
    floor = FLOORS[stem]["roc_auc"]
    card = {"notebook": stem, "metrics": {"roc_auc": {"value": floor + 0.01}}}
    (tmp_path / f"{stem}.json").write_text(json.dumps(card))
    assert floors_main([str(tmp_path), stem]) == 0
    card["metrics"]["roc_auc"]["value"] = float("nan")
    (tmp_path / f"{stem}.json").write_text(json.dumps(card))
    assert floors_main([str(tmp_path), stem]) == 1
    assert floors_main([str(tmp_path), "05_pcam_resnet50_pytorch"]) == 1  # no card: a miss, said
    assert "no run card" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TL_FULL_CHECKS") != "1",
                    reason="a whole chapter-1 smoke run (about 90 s): TL_FULL_CHECKS=1 runs it")
def test_floor_catches_a_pipeline_with_shuffled_labels(tmp_path):
    """Chapter 1 with its training and validation labels shuffled must fall below its floor.

    It tests the floors themselves, which change rarely, so the default suite (15 minutes on
    two cores) leaves it to TL_FULL_CHECKS=1 (GPU runners, before a release, after a change
    to tests/smoke_floors.yml or chapter 1)."""
    stem = "01_xception_brain_tumor"
    nb = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    split_cell = next(i for i, c in enumerate(nb.cells)  # where the label arrays are made
                      if c.cell_type == "code" and re.search(r"\by_train\b[^=\n]*=", c.source))
    # the bug: training and validation labels shuffled in the table (phase 2 reads the table) and the arrays
    nb.cells.insert(split_cell + 1, nbformat.v4.new_code_cell(
        "rng_broken = np.random.default_rng(12345)\n"
        "train = train.assign(label=rng_broken.permutation(train.label.to_numpy()))\n"
        "val = val.assign(label=rng_broken.permutation(val.label.to_numpy()))\n"
        "_, y_train = tl.loaders.encode_labels(train.label, CLASSES)\n"
        "_, y_val = tl.loaders.encode_labels(val.label, CLASSES)"))
    broken = tmp_path / "broken" / f"{stem}.ipynb"
    broken.parent.mkdir()
    nbformat.write(nb, broken)
    runner.run("smoke", [broken], out_dir=tmp_path / "out", progress=False)
    card = json.loads((tmp_path / "out" / f"{stem}.json").read_text())
    missed = below_floor(card)
    print("\n".join(missed))  # the failing output the check gives (pytest -s shows it)
    # the validation floor, not luck on the test ranking, is what catches it (tests/smoke_floors.yml)
    assert any(line.startswith(f"{stem}: val_roc_auc = ") for line in missed), card["metrics"]
