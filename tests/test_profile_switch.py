"""A reader switches profile by editing the parameters cell; a value edited by hand wins.

The chapter test opens a real chapter as a reader would: the parameters cell edited, the
first cells executed by a real kernel with nbclient (no papermill, no $TL_PROFILE), and the
run card that `tl.notebook.start` opened is read back.
"""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from tl_helpers.workflow import profiles, runner

REPO = Path(__file__).resolve().parents[1]
CHAPTER = "05_pcam_resnet50_pytorch"  # the cheapest start(): torch only


def _cells_up_to_start(nb) -> list:
    """The chapter's code cells up to and including the one calling `tl.notebook.start`."""
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cells.append(cell)
            if "tl.notebook.start(" in cell.source:
                return cells
    raise AssertionError("no tl.notebook.start( cell")


def _edit(source: str, name: str, value: str) -> str:
    """The parameters cell with `name = ...` set to `value`, its comment kept (as a reader edits it)."""
    lines = source.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(f"{name} "))
    comment = lines[index].partition("#")[2]
    lines[index] = f"{name} = {value}  #{comment}"
    return "\n".join(lines)


def test_reader_edits_profile_in_the_parameters_cell(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    monkeypatch.delenv("TL_PROFILE", raising=False)
    nb = nbformat.read(REPO / "notebooks" / f"{CHAPTER}.ipynb", as_version=4)
    cells = _cells_up_to_start(nb)
    parameters = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    parameters.source = _edit(_edit(parameters.source, "PROFILE", '"cpu"'), "EPOCHS", "2")
    probe = "import json; print(json.dumps({'profile': card.record['profile'], 'parameters': card.record['parameters']}))"
    nb.cells = cells + [nbformat.v4.new_code_cell(probe)]
    copy = tmp_path / f"{CHAPTER}.ipynb"
    nbformat.write(nb, copy)
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = [o["text"] for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
    card = json.loads(printed[-1].strip().splitlines()[-1])
    start_output = "".join(o.get("text", "") for o in nb.cells[-2].outputs)

    cpu = profiles.parameters_for("cpu", CHAPTER)
    smoke = profiles.parameters_for("smoke", CHAPTER)
    assert card["profile"] == "cpu"
    assert card["parameters"]["EPOCHS"] == 2  # edited by hand: wins over cpu's value
    assert cpu["EPOCHS"] not in (2, smoke["EPOCHS"])  # so the line above could fail
    changed = {k for k in cpu if k not in ("PROFILE", "EPOCHS") and cpu[k] != smoke[k]}
    assert changed >= {"SYNTHETIC", "CROP", "BATCH_SIZE"}  # the profile did something to check
    assert {k: card["parameters"][k] for k in changed} == {k: cpu[k] for k in changed}
    # every parameter of the cell is on the card, but where the card goes
    names = profiles.notebook_parameters(REPO / "notebooks" / f"{CHAPTER}.ipynb")
    assert set(card["parameters"]) == names - set(profiles.NOT_RECORDED)
    assert "from the parameters cell" in start_output and "kept as edited: EPOCHS=2" in start_output


def _cell_defaults(notebook: str) -> dict:
    """A chapter's namespace right after its untouched parameters cell ran."""
    return runner._parameter_defaults(REPO / "notebooks" / f"{notebook}.ipynb")


def test_profile_named_in_the_cell_applies_and_edits_win(monkeypatch):
    monkeypatch.delenv("TL_PROFILE", raising=False)
    namespace = {**_cell_defaults(CHAPTER), "PROFILE": "cpu", "BATCH_SIZE": 8}
    changes = profiles.apply_profile(namespace, CHAPTER)
    cpu = profiles.parameters_for("cpu", CHAPTER)
    assert namespace["BATCH_SIZE"] == 8 and "BATCH_SIZE" not in changes
    assert namespace["SYNTHETIC"] is False and namespace["CROP"] == cpu["CROP"] and namespace["EPOCHS"] == cpu["EPOCHS"]


def test_untouched_smoke_cell_changes_nothing(monkeypatch):
    monkeypatch.delenv("TL_PROFILE", raising=False)
    for notebook in (p.stem for p in runner.default_notebooks()):
        namespace = _cell_defaults(notebook)
        assert profiles.apply_profile(namespace, notebook) == {}
        assert namespace == _cell_defaults(notebook)


def test_environment_profile_applies_and_edits_still_win(monkeypatch):
    monkeypatch.setenv("TL_PROFILE", "cpu")
    namespace = {**_cell_defaults(CHAPTER), "EPOCHS": 9}
    profiles.apply_profile(namespace, CHAPTER)
    assert namespace["PROFILE"] == "cpu" and namespace["SYNTHETIC"] is False and namespace["EPOCHS"] == 9
    # $TL_PROFILE naming the profile PROFILE has: the runner's kernels, papermill's values stand
    injected = {**_cell_defaults(CHAPTER), "PROFILE": "cpu", "SYNTHETIC": True}
    assert profiles.apply_profile(injected, CHAPTER) == {} and injected["SYNTHETIC"] is True


def test_runner_override_equal_to_the_cell_value_survives(tmp_path, monkeypatch):
    """`--profile cpu -p SYNTHETIC=true`: True is also the cell's own value, yet it must stand."""
    monkeypatch.setenv("TL_PROFILE", "smoke")  # a stray value in the caller's shell changes nothing either
    cells = [nbformat.v4.new_code_cell("PROFILE = 'smoke'\nSYNTHETIC = True\nSEED = 0\nSAMPLES_PER_CLASS = 4\n"
                                       "OUTPUT_DIR = None", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell(
                 "import json, pathlib\nimport tl_helpers as tl\ntl.profiles.apply_profile(globals(), '00_datasets')\n"
                 "pathlib.Path(OUTPUT_DIR, '00_datasets.json').write_text(json.dumps("
                 "{'notebook': '00_datasets', 'profile': PROFILE, 'synthetic': SYNTHETIC}))")]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                        "language": "python"}})
    (tmp_path / "src").mkdir()
    nbformat.write(nb, tmp_path / "src" / "00_datasets.ipynb")
    runner.run("cpu", [tmp_path / "src" / "00_datasets.ipynb"], out_dir=tmp_path / "out",
               overrides={"SYNTHETIC": True}, progress=False)
    card = json.loads((tmp_path / "out" / "00_datasets.json").read_text())
    assert card == {"notebook": "00_datasets", "profile": "cpu", "synthetic": True}
    assert profiles.parameters_for("cpu", "00_datasets")["SYNTHETIC"] is False  # the profile alone would say False
    assert __import__("os").environ["TL_PROFILE"] == "smoke"  # the caller's environment is given back
