"""Failures that used to pass silently: each one must now stop with an error that names it.

- a PCam labels table listing one id twice (the patch could land in train and test);
- a misspelt notebook parameter (`-p EPOHCS=3`, a profile key) or an unknown profile;
- a run replacing the reference results where git cannot say they are committed (a zip);
- a synthetic set left half-written by an interruption, which blocked every later run.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import shared_data_dir
from tl_helpers import data
from tl_helpers.workflow import profiles, runcard, runner
from tl_helpers.workflow.runcard import ResultOverwriteError, RunCard, guard_overwrite
from tl_helpers.data import synthetic
from tl_helpers.paths import project_root


# --- 1. PCam: one id listed twice in train_labels.csv ------------------------------------

def _pcam_with_duplicate_ids(tmp_path: Path) -> Path:
    """A 6-patch PCam folder (real Kaggle .tif patches when the shared data is here) whose
    labels table lists one id twice with opposite labels and another twice with the same."""
    root = tmp_path / "data" / "pcam"
    (root / "train").mkdir(parents=True)
    shared = shared_data_dir()
    if shared is not None and (shared / "pcam" / "kaggle_tif_samples").is_dir():
        source = sorted((shared / "pcam" / "kaggle_tif_samples").glob("*.tif"))
    else:
        source = sorted((synthetic.synthesize("pcam", tmp_path / "synthetic") / "train").glob("*.tif"))
    for f in source[:6]:
        shutil.copy(f, root / "train" / f.name)
    ids = [f.stem for f in source[:6]]
    rows = [(i, n % 2) for n, i in enumerate(ids)]
    rows += [(ids[0], 1), (ids[3], 1)]  # ids[0]: 0 then 1 (conflict); ids[3]: 1 twice
    pd.DataFrame(rows, columns=["id", "label"]).to_csv(root / "train_labels.csv", index=False)
    return root


def test_pcam_duplicate_ids_are_problems_naming_file_and_id(tmp_path):
    root = _pcam_with_duplicate_ids(tmp_path)
    ids = sorted(f.stem for f in (root / "train").iterdir())
    conflicting, repeated = ids[0], ids[3]
    report = data.verify("pcam", root)
    duplicates = [p for p in report.problems if "more than once" in p.message]
    assert len(duplicates) == 2, str(report)
    assert all(p.path == str(root / "train_labels.csv") for p in duplicates)
    by_id = {next(i for i in (conflicting, repeated) if i in p.message): p.message for p in duplicates}
    assert "disagree" in by_id[conflicting] and "disagree" not in by_id[repeated]
    with pytest.raises(data.DataLayoutError, match=conflicting):
        data.require("pcam", root)
    with pytest.raises(data.DataLayoutError, match=repeated):
        data.load("pcam", synthetic=False, data_dir=root.parent)


# --- 2. misspelt parameters and unknown profiles -----------------------------------------

_PARAMETERS = "PROFILE = 'smoke'\nOUTPUT_DIR = None\nOVERWRITE = False\nSEED = 0\nSYNTHETIC = True\nEPOCHS = 2"


def _tiny_notebook(path: Path, parameters: str = _PARAMETERS) -> Path:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("print(EPOCHS)")]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {
        "name": "python3", "display_name": "Python 3", "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_misspelt_cli_parameter_stops_before_any_notebook_runs(tmp_path, capsys):
    nb = _tiny_notebook(tmp_path / "src" / "07_tiny.ipynb")
    out = tmp_path / "out"
    code = runner.main([str(nb), "--out", str(out), "--no-progress", "-p", "EPOHCS=3"])
    err = capsys.readouterr().err
    assert code == 1
    assert "EPOHCS" in err and "07_tiny.ipynb" in err and "EPOCHS" in err  # the close match
    assert not (out / "07_tiny.ipynb").exists()  # nothing ran


def test_misspelt_profile_key_stops_the_run(tmp_path, monkeypatch):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (folder / "mine.yml").write_text("defaults:\n  SEED: 0\nnotebooks:\n  07_tiny:\n    EPOCSH: 3\n")
    monkeypatch.setattr(profiles, "profiles_dir", lambda: folder)
    nb = _tiny_notebook(tmp_path / "src" / "07_tiny.ipynb")
    with pytest.raises(runner.UnknownParameterError) as error:
        runner.run("mine", [nb], out_dir=tmp_path / "out", progress=False)
    message = str(error.value)
    assert "EPOCSH" in message and "07_tiny.ipynb" in message and "EPOCHS" in message
    assert "mine.yml" in message
    assert not (tmp_path / "out").exists()


def test_unknown_profile_fails_before_anything_is_made(tmp_path):
    nb = _tiny_notebook(tmp_path / "src" / "07_tiny.ipynb")
    with pytest.raises(FileNotFoundError, match="available"):
        runner.run("smokee", [nb], out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_real_notebooks_accept_their_profiles_and_refuse_a_typo():
    chapters = runner.default_notebooks()
    assert chapters
    for profile in profiles.available_profiles():
        for notebook in chapters:
            runner.check_parameters(notebook, profiles.parameters_for(profile, notebook.stem), profile)
    pcam = next(n for n in chapters if n.stem.startswith("05_"))
    assert {"EPOCHS", "BATCH_SIZE", "SEED"} <= runner.notebook_parameters(pcam)
    with pytest.raises(runner.UnknownParameterError, match="EPOHCS.*did you mean EPOCHS"):
        runner.check_parameters(pcam, {}, "smoke", overrides={"EPOHCS": 3})


# --- 3. results/ protected without git ----------------------------------------------------

def test_marked_results_folder_is_protected_without_git(tmp_path, monkeypatch):
    assert (project_root() / "results" / ".tl-protected").is_file()
    protected = tmp_path / "results"  # no git repository anywhere here
    (protected / "cpu").mkdir(parents=True)
    (protected / ".tl-protected").write_text("reference results\n")
    reference = project_root() / "results" / "cpu" / "01_xception_brain_tumor.json"
    shutil.copy(reference, protected / "cpu" / reference.name)
    before = (protected / "cpu" / reference.name).read_text()
    card = RunCard("01_xception_brain_tumor", "cpu", seed=0)
    with pytest.raises(ResultOverwriteError) as error:
        card.save(protected / "cpu")
    assert reference.name in str(error.value) and "--overwrite" in str(error.value)
    assert (protected / "cpu" / reference.name).read_text() == before
    path = card.save(protected / "cpu", overwrite=True)
    assert json.loads(path.read_text())["profile"] == "cpu"

    # the project's own results/ is protected by where it is, even when git says nothing
    monkeypatch.setattr(runcard, "is_tracked_by_git", lambda path: False)
    with pytest.raises(ResultOverwriteError, match="overwrite=True to tl.notebook.finish"):
        guard_overwrite(reference)
    guard_overwrite(reference, overwrite=True)
    guard_overwrite(tmp_path / "elsewhere" / reference.name)  # an unmarked folder: allowed


# --- 4. synthetic sets are written atomically ----------------------------------------------

def test_interrupted_synthetic_set_does_not_block_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path / "cache"))
    name, target = "brain_mri_yes_no", tmp_path / "cache" / "synthetic" / "brain_mri_yes_no-smoke-seed0"
    # a crashed process (killed, no clean-up) left its temporary folder behind
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftover = target.parent / f"{target.name}.tmp-{dead.pid}"
    (leftover / "yes").mkdir(parents=True)
    (leftover / "yes" / "Y1.jpg").write_bytes(b"half")

    real_save, calls = synthetic._save, []

    def power_cut(image, path, rgb=False):
        calls.append(path)
        if len(calls) > 5:
            raise RuntimeError("interrupted")
        real_save(image, path, rgb)

    monkeypatch.setattr(synthetic, "_save", power_cut)
    with pytest.raises(RuntimeError, match="interrupted"):
        data.dataset_root(name, synthetic=True)
    monkeypatch.setattr(synthetic, "_save", real_save)

    root = data.dataset_root(name, synthetic=True)
    assert root == target and data.is_synthetic(root)
    report = data.verify(name, root, deep=False)
    assert report.ok, str(report)
    assert report.counts["all"] == synthetic.SIZES[name]["smoke"]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary folder left
