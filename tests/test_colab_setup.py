"""The setup cell in a simulated Colab and a simulated Kaggle Notebook: a fake `google.colab`
module (or a fake `/kaggle/input`), the repository URL redirected to a local clone of this
checkout (git's `url.<base>.insteadOf`) that has this version's tag, pip recorded instead of run.

What runs for real: the generated cell itself, `git clone` of the tag (or of $TL_BOOK_REF),
importing tl_helpers from the clone, `tl.notebook.setup()`. Run twice, as a reader re-running
the cell would. The Drive option and the Kaggle mapping are also checked in-process.
"""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import tl_helpers as tl

HARNESS = r"""
import json, os, subprocess, sys, types
if COLAB:
    sys.modules["google"] = types.ModuleType("google")
    sys.modules["google.colab"] = types.ModuleType("google.colab")
calls, real_run = [], subprocess.run
def recording_run(command, *args, **kwargs):
    calls.append(list(map(str, command)))
    if "pip" in command:  # Colab's pip would fetch from PyPI: recorded, not run
        return subprocess.CompletedProcess(command, 0)
    return real_run(command, *args, **kwargs)
subprocess.run = recording_run
exec(compile(CELL.replace("tl.notebook.setup()", "tl.notebook.setup(BOOK_DIR, **SETUP)"), "<setup cell>", "exec"))
print(json.dumps({"calls": calls, "cwd": os.getcwd(), "tl_helpers": tl.__file__}))
"""


def run_cell(book_dir, env, colab=True, kaggle_input=None):
    """Run the generated setup cell in a fresh Python, its clone going to `book_dir` instead of
    /content/book (or /kaggle/working/book); `kaggle_input` stands for /kaggle/input."""
    cell = tl.notebook.setup_cell_source().replace(tl.notebook.COLAB_BOOK_DIR, str(book_dir))
    cell = cell.replace(tl.notebook.KAGGLE_BOOK_DIR, str(book_dir))
    setup = {}
    if kaggle_input is not None:
        cell = cell.replace(tl.notebook.KAGGLE_INPUT, str(kaggle_input))
        setup["kaggle_input"] = str(kaggle_input)
    code = f"CELL = {cell!r}\nBOOK_DIR = {str(book_dir)!r}\nCOLAB = {colab!r}\nSETUP = {setup!r}\n{HARNESS}"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=str(book_dir.parent))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A stand-in for the book on GitHub: a clone of this checkout's last commit tagged with this
    version's tag, and a branch `main` one commit older (so the two refs clone different code)."""
    origin = tmp_path_factory.mktemp("github") / "tl-medical-book"
    git("clone", "-q", str(tl.paths.project_root()), str(origin), cwd=origin.parent)
    git("tag", tl.notebook.book_ref(), "HEAD", cwd=origin)
    git("checkout", "-q", "--detach", "HEAD", cwd=origin)  # so that `main` can move, whatever is checked out
    git("branch", "-f", "main", "HEAD~1", cwd=origin)
    env = {k: v for k, v in os.environ.items() if k not in ("TL_PROJECT_ROOT", "PYTHONPATH", "TL_BOOK_REF",
                                                            "TL_DATA_DIR", "TL_DRIVE")}
    env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{origin}.insteadOf",
                "GIT_CONFIG_VALUE_0": tl.notebook.repository_url()})
    return origin, env


def test_setup_cell_in_simulated_colab(tmp_path, published):
    origin, env = published
    book_dir = tmp_path / "content" / "book"
    book_dir.parent.mkdir()

    first = run_cell(book_dir, env)
    commands = [" ".join(c) for c in first["calls"]]
    assert any(c.startswith("git clone") and tl.notebook.repository_url() in c for c in commands)
    assert f"-b {tl.notebook.book_ref()}" in next(c for c in commands if c.startswith("git clone"))
    assert git("rev-parse", "HEAD", cwd=book_dir) == git("rev-parse", tl.notebook.book_ref(), cwd=origin)
    assert (book_dir / "_toc.yml").is_file() and (book_dir / "tl_helpers" / "__init__.py").is_file()
    assert first["tl_helpers"] == str(book_dir / "tl_helpers" / "__init__.py"), "tl_helpers must come from the clone"
    pip = [c for c in first["calls"] if "pip" in c]
    assert len(pip) == 1 and str(book_dir / "requirements-colab.txt") in pip[0] and str(book_dir) in pip[0]
    assert first["cwd"] == str(book_dir / "notebooks")

    again = run_cell(book_dir, env)  # a re-run of the cell: the clone is there, the install done
    assert again["calls"] == [], again["calls"]
    assert again["cwd"] == str(book_dir / "notebooks")


def test_book_ref_override_clones_that_branch(tmp_path, published):
    origin, env = published
    book_dir = tmp_path / "content" / "book"
    book_dir.parent.mkdir()
    run_cell(book_dir, {**env, "TL_BOOK_REF": "main"})
    assert git("rev-parse", "HEAD", cwd=book_dir) == git("rev-parse", "main", cwd=origin)
    assert git("rev-parse", "main", cwd=origin) != git("rev-parse", tl.notebook.book_ref(), cwd=origin)


def _kaggle_input(root: Path) -> Path:
    """A fake /kaggle/input: brain_mri_yes_no's release (yes/, no/ and the duplicate copy
    brain_tumor_dataset/) under its slug, and PCam's competition folder under its name."""
    import shutil

    made = tl.synthetic.synthesize("brain_mri_yes_no", root / "made" / "brain_mri_yes_no", seed=0)
    mount = root / "input" / tl.data.spec("brain_mri_yes_no").kaggle_ref.split("/")[-1]
    for entry in ("yes", "no"):
        shutil.copytree(made / entry, mount / entry)
        shutil.copytree(made / entry, mount / "brain_tumor_dataset" / entry)
    pcam = tl.synthetic.synthesize("pcam", root / "made" / "pcam", seed=0)
    shutil.copytree(pcam, root / "input" / "histopathologic-cancer-detection", ignore=shutil.ignore_patterns("*.json"))
    return root / "input"


def test_setup_cell_on_simulated_kaggle_links_the_mounted_datasets(tmp_path, published):
    origin, env = published
    kaggle_input = _kaggle_input(tmp_path / "kaggle")
    book_dir = tmp_path / "kaggle" / "working" / "book"
    book_dir.parent.mkdir()
    result = run_cell(book_dir, env, colab=False, kaggle_input=kaggle_input)
    assert result["tl_helpers"] == str(book_dir / "tl_helpers" / "__init__.py")
    assert result["cwd"] == str(book_dir / "notebooks")
    yes_no = book_dir / "data" / "brain_mri_yes_no"
    assert sorted(p.name for p in yes_no.iterdir()) == ["no", "yes"]  # not the duplicate copy
    assert (yes_no / "yes").resolve() == (kaggle_input / "brain-mri-images-for-brain-tumor-detection" / "yes")
    report = tl.data.load("brain_mri_yes_no", synthetic=False, data_dir=book_dir / "data")
    mounted = kaggle_input / "brain-mri-images-for-brain-tumor-detection"
    assert report.counts["all"] == {c: len(list((mounted / c).iterdir())) for c in ("no", "yes")}
    assert (book_dir / "data" / "pcam" / "train_labels.csv").is_file()
    assert not (book_dir / "data" / "chest_xray").exists()  # not added to the notebook: nothing made


def test_kaggle_links_leave_a_dataset_already_there_alone(tmp_path):
    kaggle_input = _kaggle_input(tmp_path / "kaggle")
    data = tmp_path / "data"
    (data / "brain_mri_yes_no").mkdir(parents=True)
    (data / "brain_mri_yes_no" / "notes.txt").write_text("mine")
    linked = tl.data.link_kaggle_inputs(kaggle_input, data)
    assert set(linked) == {"pcam"}
    assert [p.name for p in (data / "brain_mri_yes_no").iterdir()] == ["notes.txt"]
    assert tl.data.link_kaggle_inputs(kaggle_input, data) == linked  # a re-run of the cell changes nothing


def test_drive_option_mounts_and_points_data_cache_and_runs_there(tmp_path, monkeypatch):
    mounted = []
    colab = types.ModuleType("google.colab")
    colab.drive = types.SimpleNamespace(mount=mounted.append)
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    book_dir = tmp_path / "content" / "book"
    (book_dir / "notebooks").mkdir(parents=True)
    (book_dir / ".colab-installed").write_text("installed\n")  # the install was done by an earlier run
    folders = ("TL_DATA_DIR", "TL_CACHE_DIR", "TL_RUNS_DIR")
    for variable in folders:  # empty: unset; setenv (not delenv) so that the teardown restores them
        monkeypatch.setenv(variable, "")
    monkeypatch.setenv("TL_DRIVE", "1")
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "drive" / "MyDrive" / "tl-medical-book"

    tl.notebook.setup(book_dir, drive_folder=folder)
    assert mounted == [tl.notebook.DRIVE_MOUNT]
    assert tl.data.resolve_data_dir() == folder / "data"
    assert tl.paths.cache_dir("features") == folder / "cache" / "features"
    assert tl.paths.runs_dir("cpu") / "models" == folder / "runs" / "cpu" / "models"
    assert all((folder / kind).is_dir() for kind in ("data", "cache", "runs"))

    monkeypatch.delenv("TL_DRIVE")
    for variable in folders:
        monkeypatch.setenv(variable, "")
    tl.notebook.setup(book_dir, drive_folder=folder)  # without the option: Drive is left alone
    assert mounted == [tl.notebook.DRIVE_MOUNT] and not any(os.environ[v] for v in folders)
