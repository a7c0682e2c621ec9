"""Data in, faults out: runs that fail leave the last good run alone, and bad data, folders
and disks stop things early with one line that names the path and the fix."""
from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import papermill
import pytest

from tl_helpers.workflow import runcard, runner
from tl_helpers.workflow.runcard import RunCard
from tl_helpers.data import images
from tl_helpers.data.images import ImageReadError, decode_native, read_image
from tl_helpers.data.registry import DATASETS, DataError, DatasetNotFoundError, locate

from test_runner import _notebook

REPO = Path(__file__).resolve().parents[1]
REAL_DATA_PARAMETERS = "PROFILE = 'smoke'\nSYNTHETIC = True\nDATA_DIR = None\nOUTPUT_DIR = None"
LOADS_PCAM = "import tl_helpers as tl\nreport = tl.data.load(\"pcam\", synthetic=SYNTHETIC, data_dir=DATA_DIR)"


@pytest.fixture
def no_papermill(monkeypatch):
    """Papermill that fails the test if the runner ever gets as far as starting it."""
    def started(*args, **kwargs):
        raise AssertionError("papermill was started")

    monkeypatch.setattr(papermill, "execute_notebook", started)


# --- 1. atomic runs --------------------------------------------------------------------

def test_failed_run_leaves_the_previous_notebook_and_card_in_place(tmp_path):
    nb = _notebook(tmp_path / "src" / "07_x.ipynb",
                   "import json, pathlib\nprint('run', MARK)\n"
                   "pathlib.Path(OUTPUT_DIR, '07_x.json').write_text(json.dumps({'notebook': '07_x', 'mark': MARK}))",
                   "assert not FAIL, 'boom'",
                   parameters="PROFILE = 'smoke'\nOUTPUT_DIR = None\nMARK = 'good'\nFAIL = False")
    out = tmp_path / "out"
    runner.run("smoke", [nb], out_dir=out, progress=False)
    with pytest.raises(runner.NotebookFailed, match="07_x.FAILED.ipynb"):
        runner.run("smoke", [nb], out_dir=out, overrides={"MARK": "bad", "FAIL": True}, progress=False)
    assert json.loads((out / "07_x.json").read_text())["mark"] == "good"  # the card of the good run
    assert "run good" in (out / "07_x.ipynb").read_text()  # and its notebook beside it
    assert "run bad" in (out / "07_x.FAILED.ipynb").read_text()  # the failed run, named as such
    assert sorted(p.name for p in out.iterdir()) == ["07_x.FAILED.ipynb", "07_x.ipynb", "07_x.json"]


# --- 2. the runner checks the data first -----------------------------------------------

def test_missing_dataset_stops_the_runner_before_papermill(tmp_path, no_papermill):
    nb = _notebook(tmp_path / "src" / "05_x.ipynb", LOADS_PCAM, parameters=REAL_DATA_PARAMETERS)
    (tmp_path / "data" / "chest_xray").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as error:  # before papermill (no_papermill says so)
        runner.run("cpu", [nb], out_dir=tmp_path / "out", data_dir=tmp_path / "data", progress=False)
    message = str(error.value)
    assert "05_x.ipynb" in message and str(tmp_path / "data" / "pcam") in message and "To get it" in message
    assert not (tmp_path / "out").exists()  # no notebook written, not even the folder made
    with pytest.raises(AssertionError, match="papermill was started"):  # synthetic data: no check
        runner.run("smoke", [nb], out_dir=tmp_path / "out", data_dir=tmp_path / "data", progress=False)
    assert runner.notebook_datasets(nb) == ["pcam"]
    assert runner.notebook_datasets(REPO / "notebooks" / "00_datasets.ipynb") == sorted(DATASETS)
    # the chapters that read their data through tl.notebook.load_data are checked alike
    assert runner.notebook_datasets(REPO / "notebooks" / "05_pcam_resnet50_pytorch.ipynb") == ["pcam"]


# --- 3. one-line errors naming the path and the fix ------------------------------------

def test_data_dir_that_is_a_file_is_one_line(tmp_path, monkeypatch, capsys, no_papermill):
    data_file = tmp_path / "archive.zip"
    data_file.write_bytes(b"PK not a folder")
    monkeypatch.setenv("TL_DATA_DIR", str(data_file))
    with pytest.raises(DataError, match="is a file, not a folder") as error:
        locate("pcam")
    assert str(data_file) in str(error.value) and "TL_DATA_DIR" in str(error.value)
    nb = _notebook(tmp_path / "src" / "05_x.ipynb", LOADS_PCAM, parameters=REAL_DATA_PARAMETERS)
    code = runner.main([str(nb), "--profile", "cpu", "--out", str(tmp_path / "out"), "--no-progress",
                        "--data-dir", str(data_file)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and str(data_file) in err and "not a folder" in err


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` (8-bit gray) but holds a single row of pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (width + 1)))
            + chunk(b"IEND", b""))


def test_decompression_bomb_is_named_with_its_size(tmp_path):
    bomb = tmp_path / "scan.png"
    bomb.write_bytes(_png_header(14000, 14000))  # 196 megapixels declared, a few kB on disk
    for read in (read_image, decode_native):
        with pytest.raises(ImageReadError) as error:
            read(bomb)
        assert str(bomb) in str(error.value) and "14000x14000" in str(error.value), read.__name__
        assert "\n" not in str(error.value)


def _read_only(folder: Path, monkeypatch) -> Path:
    """Make `folder` read-only; as root (who may write anyway) the check is told so instead."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o555)
    if os.geteuid() == 0:
        access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
            False if Path(path) == folder and mode & os.W_OK else access(path, mode, **kw)))
    return folder


@pytest.mark.parametrize("kind", ["read-only", "below a file"])
def test_unwritable_output_folder_fails_before_running(tmp_path, monkeypatch, capsys, no_papermill, kind):
    if kind == "read-only":
        out = _read_only(tmp_path / "ro", monkeypatch)
    else:
        (tmp_path / "runs").write_text("a file where a folder should be")
        out = tmp_path / "runs" / "cpu"
    nb = _notebook(tmp_path / "src" / "01_x.ipynb", "print('ran')")
    assert runner.main([str(nb), "--out", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(out) in err, err
    with pytest.raises(OSError, match=str(out)) as error:
        RunCard("01_x", "smoke").save(out)
    assert "\n" not in str(error.value) and isinstance(error.value, runcard.OutputWriteError)


def test_full_disk_keeps_the_previous_card(tmp_path, monkeypatch):
    previous = RunCard("01_x", "smoke").metric("accuracy", 0.9).save(tmp_path)
    before = previous.read_text()

    def disk_full(self, *args, **kwargs):
        self.open("w").close()  # the file is opened (emptied) before the space runs out
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OSError) as error:
        RunCard("01_x", "smoke").metric("accuracy", 0.5).save(tmp_path)
    monkeypatch.undo()
    assert previous.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["01_x.json"]  # no partial file left behind
    message = str(error.value)
    assert str(previous) in message and "No space left" in message and "\n" not in message
    assert isinstance(error.value, runcard.OutputWriteError)


# --- 4. one reader, one rule -----------------------------------------------------------

@pytest.fixture
def real_jpeg(shared_data, tmp_path) -> Path:
    source = sorted((shared_data / "brain_tumor_mri_4class" / "Training" / "glioma").glob("*.jpg"))[0]
    return Path(shutil.copy(source, tmp_path / "whole.jpg"))


def test_truncated_files_are_refused_by_both_readers(tmp_path, real_jpeg):
    data = real_jpeg.read_bytes()
    cut_jpeg = tmp_path / "cut.jpg"
    cut_jpeg.write_bytes(data[: len(data) * 7 // 10])
    png = tmp_path / "whole.png"
    from PIL import Image

    Image.open(real_jpeg).save(png)
    cut_png = tmp_path / "cut.png"
    cut_png.write_bytes(png.read_bytes()[:-12])  # the IEND chunk lost
    for cut in (cut_jpeg, cut_png):
        for read in (read_image, decode_native):
            with pytest.raises(ImageReadError, match="truncated") as error:
                read(cut)
            assert str(cut) in str(error.value), (cut.name, read.__name__)
    padded = tmp_path / "padded.jpg"  # zero padding after the end marker is not truncation
    padded.write_bytes(data + b"\0" * 16)
    for whole in (real_jpeg, padded, png):
        assert np.array_equal(decode_native(whole), read_image(whole, channels=None)), whole.name


def test_pixel_limit_is_the_same_in_both_readers(real_jpeg, monkeypatch):
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    width, height = images.image_info(real_jpeg)["width"], images.image_info(real_jpeg)["height"]
    for read in (read_image, decode_native):
        with pytest.raises(ImageReadError) as error:
            read(real_jpeg)
        assert str(real_jpeg) in str(error.value) and f"{width}x{height}" in str(error.value), read.__name__


# --- issue 27: arguments up front, models staged, signals, dead staging, a full disk ---------------

TYPED_PARAMETERS = ("PROFILE = 'smoke'\nOUTPUT_DIR = None\nIMAGE_SIZE = 224\nLR = 1e-3\nSYNTHETIC = True\n"
                    "BACKBONE = 'resnet50'\nLAYERS = [1, 2]\nMODEL_DIR = None")


@pytest.mark.parametrize("overrides, says", [
    ({"IMAGE_SIZE": "abc"}, "IMAGE_SIZE is int in the parameters cell of 07_t.ipynb (IMAGE_SIZE = 224); give a "
                            "whole number, e.g. -p IMAGE_SIZE=224"),
    ({"IMAGE_SIZE": 2.5}, "give a whole number"),
    ({"SYNTHETIC": 1}, "give true or false"),
    ({"LR": "fast"}, "give a number"),
    ({"BACKBONE": 50}, "give text"),
    ({"LAYERS": 3}, "give a list"),
])
def test_a_parameter_of_the_wrong_type_stops_before_any_kernel(tmp_path, no_papermill, overrides, says):
    nb = _notebook(tmp_path / "src" / "07_t.ipynb", "print(IMAGE_SIZE)", parameters=TYPED_PARAMETERS)
    with pytest.raises(runner.ParameterTypeError) as error:
        runner.run("smoke", [nb], out_dir=tmp_path / "out", overrides=overrides, progress=False)
    assert says in str(error.value) and str(error.value).endswith("Nothing was run.")
    assert not (tmp_path / "out").exists()


def test_parameters_of_the_right_type_pass_the_check(tmp_path):
    nb = _notebook(tmp_path / "src" / "07_t.ipynb", parameters=TYPED_PARAMETERS)
    runner.check_parameter_types(nb, {"IMAGE_SIZE": 96, "LR": 1, "SYNTHETIC": False, "BACKBONE": "lite0",
                                      "LAYERS": [3], "MODEL_DIR": "/anywhere", "OUTPUT_DIR": 5})
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "out"), "-p", "IMAGE_SIZE=abc", str(nb)]) == 1


def test_models_are_staged_with_the_run_and_the_kernel_imports_the_checkouts_tl_helpers(tmp_path, monkeypatch):
    decoy = tmp_path / "elsewhere"  # another copy of tl_helpers, first on the inherited PYTHONPATH
    (decoy / "tl_helpers").mkdir(parents=True)
    (decoy / "tl_helpers" / "__init__.py").write_text("WHERE = 'the other checkout'\n")
    monkeypatch.setenv("PYTHONPATH", str(decoy))
    nb = _notebook(tmp_path / "src" / "07_m.ipynb",
                   "import pathlib, tl_helpers\nprint('tl_helpers from', pathlib.Path(tl_helpers.__file__).parent)\n"
                   "pathlib.Path(MODEL_DIR).mkdir(parents=True, exist_ok=True)\n"
                   "pathlib.Path(MODEL_DIR, 'm.card.json').write_text(MARK)",
                   "assert not FAIL, 'boom'",
                   parameters="PROFILE = 'smoke'\nOUTPUT_DIR = None\nMODEL_DIR = None\nMARK = 'good'\nFAIL = False")
    out = tmp_path / "out"
    runner.run("smoke", [nb], out_dir=out, progress=False)
    assert (out / "models" / "m.card.json").read_text() == "good"  # under this run's --out
    printed = (out / "07_m.ipynb").read_text()  # the runner writes paths under the project relative to it
    assert "tl_helpers from tl_helpers\\n" in printed and "other checkout" not in printed
    with pytest.raises(runner.NotebookFailed):
        runner.run("smoke", [nb], out_dir=out, overrides={"MARK": "bad", "FAIL": True}, progress=False)
    assert (out / "models" / "m.card.json").read_text() == "good"  # the failed run's model went with it
    assert os.environ["PYTHONPATH"] == str(decoy)  # the runner's own environment is restored
    assert runner.other_tl_helpers(REPO) is None
    assert "imports tl_helpers from" in runner.other_tl_helpers(tmp_path)


def test_a_notebook_without_plumbing_parameters_learns_where_to_write_from_the_runner(tmp_path):
    """The chapters declare no OUTPUT_DIR, MODEL_DIR or OVERWRITE: the runner's environment says."""
    nb = _notebook(tmp_path / "src" / "07_e.ipynb",
                   "import json, pathlib, tl_helpers as tl\n"
                   "tl.paths.model_dir(PROFILE).mkdir(parents=True, exist_ok=True)\n"
                   "(tl.paths.model_dir(PROFILE) / 'm.card.json').write_text(MARK)\n"
                   "(tl.paths.output_dir(PROFILE) / '07_e.json').write_text(json.dumps(\n"
                   "    {'notebook': '07_e', 'mark': MARK, 'overwrite': tl.paths.overwrite_allowed()}))",
                   "assert not FAIL, 'boom'",
                   parameters="PROFILE = 'smoke'\nMARK = 'good'\nFAIL = False")
    out = tmp_path / "out"
    runner.run("smoke", [nb], out_dir=out, progress=False)
    assert json.loads((out / "07_e.json").read_text()) == {"notebook": "07_e", "mark": "good", "overwrite": False}
    assert (out / "models" / "m.card.json").read_text() == "good"
    injected = json.loads((out / "07_e.ipynb").read_text())["metadata"]["papermill"]["parameters"]
    assert not {"OUTPUT_DIR", "MODEL_DIR", "OVERWRITE"} & set(injected), injected  # none it does not declare
    with pytest.raises(runner.NotebookFailed):
        runner.run("smoke", [nb], out_dir=out, overrides={"MARK": "bad", "FAIL": True}, progress=False)
    assert (out / "models" / "m.card.json").read_text() == "good"  # staged: the failed run's model went
    runner.run("smoke", [nb], out_dir=out, overwrite=True, progress=False)
    assert json.loads((out / "07_e.json").read_text())["overwrite"] is True
    assert not {k for k in os.environ if k in ("TL_OUTPUT_DIR", "TL_MODEL_DIR", "TL_OVERWRITE")}


def test_the_runs_folders_come_from_the_environment_else_runs(monkeypatch, tmp_path):
    from tl_helpers import paths

    for name in (paths.OUTPUT_DIR_ENV, paths.MODEL_DIR_ENV, paths.OVERWRITE_ENV, paths.RUNS_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    assert paths.output_dir("cpu") == paths.project_root() / "runs" / "cpu"
    assert paths.model_dir("cpu") == paths.project_root() / "runs" / "cpu" / "models"
    assert paths.overwrite_allowed() is False
    monkeypatch.setenv(paths.OUTPUT_DIR_ENV, str(tmp_path / "o"))
    monkeypatch.setenv(paths.MODEL_DIR_ENV, str(tmp_path / "m"))
    monkeypatch.setenv(paths.OVERWRITE_ENV, "1")
    assert (paths.output_dir("cpu"), paths.model_dir("cpu")) == (tmp_path / "o", tmp_path / "m")
    assert paths.overwrite_allowed() is True
    monkeypatch.setenv(paths.OVERWRITE_ENV, "0")
    assert paths.overwrite_allowed() is False


def test_sigterm_stops_the_runner_cleanly_and_the_next_run_clears_dead_staging(tmp_path):
    """A real runner process, a real SIGTERM in the middle of a cell."""
    import signal
    import subprocess
    import sys

    started = tmp_path / "cell-started"
    nb = _notebook(tmp_path / "src" / "07_s.ipynb",
                   "import json, pathlib, time\nprint('run', MARK)\n"
                   "pathlib.Path(OUTPUT_DIR, '07_s.json').write_text(json.dumps({'notebook': '07_s', 'mark': MARK}))\n"
                   "if WAIT:\n    pathlib.Path(WAIT).write_text('now')\n    time.sleep(600)",
                   parameters="PROFILE = 'smoke'\nOUTPUT_DIR = None\nMARK = 'good'\nWAIT = ''")
    out = tmp_path / "out"
    runner.run("smoke", [nb], out_dir=out, progress=False)
    previous = {name: (out / name).read_bytes() for name in ("07_s.ipynb", "07_s.json")}
    env = dict(os.environ, PYTHONPATH=str(REPO), TL_PROJECT_ROOT=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "tl_helpers.workflow.runner", "--out", str(out),
                                "--no-progress", "-p", "MARK=bad", "-p", f"WAIT={started}", str(nb)],
                               env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while not started.exists():  # waits for the cell, however slow the machine; the process must live
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    lines = stderr.strip().splitlines()
    # the runner's one line, and no traceback above it: neither the runner's nor the dying kernel's
    assert lines[-1].startswith("stopped by SIGTERM") and "Traceback" not in stderr, stderr
    assert not list(out.glob(".*running*"))  # staging removed
    assert {name: (out / name).read_bytes() for name in previous} == previous  # the previous result kept

    dead = out / f".07_s.running-{_a_dead_pid()}"
    alive = out / f".07_s.running-{os.getppid()}"  # a live process: another runner, say
    for folder in (dead, alive):
        folder.mkdir()
    runner.run("smoke", [nb], out_dir=out, progress=False)
    assert not dead.exists() and alive.is_dir()


def test_sigterm_with_jobs_stops_every_child_runner_too(tmp_path):
    """`--jobs 2`: the runner's children get the signal, remove their staging and leave nothing running."""
    import signal
    import subprocess
    import sys

    code = ("import pathlib, time\npathlib.Path(WAIT, NAME).write_text('now')\ntime.sleep(600)\n"
            "pathlib.Path(OUTPUT_DIR, NAME + '.json').write_text('finished')")
    notebooks = [_notebook(tmp_path / "src" / f"07_{n}.ipynb", code,
                           parameters=f"PROFILE = 'smoke'\nOUTPUT_DIR = None\nNAME = '{n}'\nWAIT = ''")
                 for n in ("j", "k")]
    out, waiting = tmp_path / "out", tmp_path / "waiting"
    waiting.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TL_PROJECT_ROOT=str(REPO))
    process = subprocess.Popen([sys.executable, "-m", "tl_helpers.workflow.runner", "--out", str(out), "--jobs", "2",
                                "--no-progress", "-p", f"WAIT={waiting}", *map(str, notebooks)],
                               env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while len(list(waiting.iterdir())) < 2:  # both cells started, however slow the machine
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)
        children = [int(folder.name.rsplit("-", 1)[1]) for folder in out.glob(".*.running-*")]
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM"), stderr
    assert len(children) == 2 and not any(runner.process_running(pid) for pid in children), children
    assert not list(out.glob(".*running*"))  # no staging; no result, only each run's cells so far, as one run leaves
    assert sorted(path.name for path in out.glob("07_*")) == ["07_j.FAILED.ipynb", "07_k.FAILED.ipynb"]


def _a_dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_full_disk_under_out_is_one_line_and_keeps_the_previous_run(tmp_path, small_disk, monkeypatch):
    nb = _notebook(tmp_path / "src" / "07_d.ipynb",
                   "import json, pathlib\nprint('run', MARK)\n"
                   "pathlib.Path(OUTPUT_DIR, '07_d.json').write_text(json.dumps({'notebook': '07_d', 'mark': MARK}))",
                   "print('x' * BIG)",
                   parameters="PROFILE = 'smoke'\nOUTPUT_DIR = None\nMARK = 'good'\nBIG = 0")
    out = (small_disk or tmp_path) / "out"
    runner.run("smoke", [nb], out_dir=out, progress=False)
    previous = {name: (out / name).read_bytes() for name in ("07_d.ipynb", "07_d.json")}
    if small_disk is None:  # no tmpfs here: the notebook write fails as on a full disk
        real = papermill.execute_notebook

        def fills_the_disk(*args, **kwargs):
            real(*args, **kwargs)
            raise OSError(errno.ENOSPC, "No space left on device", args[1])

        monkeypatch.setattr(papermill, "execute_notebook", fills_the_disk)
    with pytest.raises(runcard.OutputWriteError) as error:
        runner.run("smoke", [nb], out_dir=out, overrides={"MARK": "bad", "BIG": 400_000}, progress=False)
    assert "disk under" in str(error.value) and "\n" not in str(error.value)
    assert {name: (out / name).read_bytes() for name in previous} == previous
    assert sorted(p.name for p in out.iterdir()) == ["07_d.ipynb", "07_d.json"]  # no truncated .FAILED.ipynb


def test_a_second_chapters_export_keeps_the_first_chapters_readme(tmp_path):
    """Runs of one profile share runs/<profile>/models/: the README.md of the model that was
    alone there becomes <name>.README.md when another chapter's model arrives, and the new one's
    README is named after it too (found replaced after chapter 5's cpu run, 2026-12-05)."""
    from tl_helpers.workflow.runner import _keep_models

    def export(folder, name, text):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.card.json").write_text("{}")
        (folder / f"{name}.onnx").write_text("model")
        (folder / "README.md").write_text(f"---\nlicense: apache-2.0\n---\n# {name}\n\n{text}\n")

    def readme(path):
        return path.read_text().split("\n\n", 1)[1].strip()

    out = tmp_path / "runs"
    export(tmp_path / "stage1", "02_brain", "the brain model's card")
    _keep_models(tmp_path / "stage1", out)
    assert readme(out / "models" / "README.md") == "the brain model's card"  # alone: as on the Hub
    export(tmp_path / "stage2", "05_pcam", "the pcam model's card")
    _keep_models(tmp_path / "stage2", out)
    models = out / "models"
    assert not (models / "README.md").exists()
    assert readme(models / "02_brain.README.md") == "the brain model's card"
    assert readme(models / "05_pcam.README.md") == "the pcam model's card"
    export(tmp_path / "stage3", "02_brain", "the brain model's card, again")  # a re-run replaces its own files
    _keep_models(tmp_path / "stage3", out)
    assert readme(models / "02_brain.README.md") == "the brain model's card, again"
    assert not (models / "README.md").exists()


def test_two_models_of_one_run_get_a_readme_each(tmp_path):
    """Chapter 3 exports two models into one folder: each gets its README, none is lost."""
    from tl_helpers.serve.hub_readme import readme_owner, write_readme

    for name in ("03_xray_domain_a", "03_xray_domain_b"):
        card = {"name": name, "task": "binary", "framework": "keras", "classes": ["NORMAL", "PNEUMONIA"],
                "metrics": {}, "input_size": [48, 48], "preprocessing": "raw_pixels",
                "channels": 3}
        (tmp_path / f"{name}.card.json").write_text(json.dumps(card))
        write_readme(tmp_path / f"{name}.card.json")
    assert sorted(p.name for p in tmp_path.glob("*README*")) == ["03_xray_domain_a.README.md",
                                                                  "03_xray_domain_b.README.md"]
    assert readme_owner(tmp_path / "03_xray_domain_a.README.md") == "03_xray_domain_a"
