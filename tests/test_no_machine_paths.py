"""No committed file holds a folder of the machine that made it (issue 25, item 4), and the
runner writes executed notebooks with folders relative to the project (`relative_parameters`)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tl_helpers.workflow.build import scrub_output
from tl_helpers.workflow.runcard import notebook_source_hash, unstaged
from tl_helpers.workflow.runner import relative_card_parameters, relative_parameters

REPO = Path(__file__).resolve().parents[1]
# an absolute folder of a machine: /work/..., /root/..., /home/..., /tmp/... (not inside a URL or a path)
MACHINE_PATH = re.compile(r"(?<![\w.:/~-])/(?:work|root|home|tmp|Users)/[\w.-]")
# Lock and scratch files in commands a contributor types, and the test fixtures made of paths on purpose.
ALLOWED = re.compile(r"/tmp/(?:tl[-_]cpu\.lock|dup\b)")


def machine_paths(files: list[str]) -> list[str]:
    """`file:line: text` for every machine path in `files` (relative to the repository)."""
    found = []
    for name in files:
        path = REPO / name
        if not path.is_file() or name.startswith("tests/"):
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if MACHINE_PATH.search(ALLOWED.sub("", line)):
                found.append(f"{name}:{number}: {line.strip()[:120]}")
    return found


def committed() -> list[str]:
    return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()


def test_no_committed_file_outside_notebooks_holds_a_machine_path():
    assert machine_paths([f for f in committed() if not f.startswith("notebooks/")]) == []


def test_no_chapter_notebook_holds_a_machine_path():
    assert machine_paths([f for f in committed() if f.startswith("notebooks/")]) == []


def test_runner_writes_folders_relative_to_the_project(tmp_path):
    """A committed executed notebook, given back the folders of a machine, loses them again."""
    root = tmp_path / "project"
    notebook = root / "results" / "cpu" / "03_xray_perturbation_retraining.ipynb"
    notebook.parent.mkdir(parents=True)
    shutil.copy(REPO / "results" / "cpu" / notebook.name, notebook)
    nb = json.loads(notebook.read_text())
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    staging = f"{root}/results/cpu/.03_xray_perturbation_retraining.running-3910"
    injected["source"] = ["# Parameters\n", 'PROFILE = "cpu"\n', f'OUTPUT_DIR = "{staging}"\n',
                          'DATA_DIR = "/home/reader/kaggle-data"\n']
    printing = next(c for c in nb["cells"] if c["cell_type"] == "code" and c["outputs"])
    printing["outputs"].append({"output_type": "stream", "name": "stdout", "text": [f"model card: {root}/runs/cpu/m.json\n"]})
    nb["metadata"]["papermill"].update(input_path=f"{root}/notebooks/{notebook.name}", output_path=f"{staging}/{notebook.name}",
                                       parameters={"OUTPUT_DIR": staging, "DATA_DIR": "/home/reader/kaggle-data", "SEED": 0})
    notebook.write_text(json.dumps(nb, indent=1))
    before = notebook_source_hash(notebook)

    relative_parameters(notebook, root)

    text = notebook.read_text()
    assert not MACHINE_PATH.search(text) and str(root) not in text
    after = json.loads(text)
    cell = next(c for c in after["cells"] if "injected-parameters" in c["metadata"].get("tags", []))
    assert cell["source"][2] == "OUTPUT_DIR = 'results/cpu'  # relative to the project\n"
    assert cell["source"][3].startswith("DATA_DIR = None  #")
    assert after["metadata"]["papermill"]["parameters"] == {"OUTPUT_DIR": "results/cpu", "DATA_DIR": None, "SEED": 0}
    assert after["metadata"]["papermill"]["output_path"] == f"results/cpu/{notebook.name}"
    printed = next(c for c in after["cells"] if c["cell_type"] == "code" and c["outputs"])["outputs"][-1]
    assert printed["text"] == ["model card: runs/cpu/m.json\n"]
    assert notebook_source_hash(notebook) != before  # only the injected cell changed ...
    cell["source"] = injected["source"]
    notebook.write_text(json.dumps(after))
    assert notebook_source_hash(notebook) == before  # ... every other source is as it was


def test_runner_writes_the_run_cards_parameters_relative_to_the_project(tmp_path):
    """The run card records every parameter in effect (issue 28); its folders, like the
    notebook's, must not name the machine: inside the project relative, outside it None."""
    root = tmp_path / "project"
    staging = root / "results" / "cpu-seed4" / ".01_xception_brain_tumor.running-23608"
    staging.mkdir(parents=True)
    card = staging / "01_xception_brain_tumor.json"
    card.write_text(json.dumps({"notebook": "01_xception_brain_tumor", "parameters": {
        "DATA_DIR": "/home/reader/kaggle-data", "MODEL_DIR": f"{staging}/models",
        "OUTPUT_DIR": str(staging), "SEED": 4, "BACKBONE": "efficientnet_lite0", "CROP": None}}, indent=1))

    relative_card_parameters(card, root)

    text = card.read_text()
    assert not MACHINE_PATH.search(text) and str(root) not in text
    assert json.loads(text)["parameters"] == {
        "DATA_DIR": None, "MODEL_DIR": "results/cpu-seed4/models", "OUTPUT_DIR": "results/cpu-seed4",
        "SEED": 4, "BACKBONE": "efficientnet_lite0", "CROP": None}


def test_paths_through_the_staging_folder_name_where_the_files_are_kept(tmp_path):
    """The exported model's path went onto the card and into the printed outputs while the run
    was staged (`runs/cpu/.<stem>.running-<pid>/models/...`), a folder gone once the run is kept:
    card, outputs and pages name `runs/cpu/models/...`."""
    root = tmp_path / "project"
    staging = root / "runs" / "cpu" / ".05_pcam_resnet50_pytorch.running-26458"
    staging.mkdir(parents=True)
    kept = "runs/cpu/models/05_pcam_efficientnet_lite0_seed0.card.json"
    staged = "runs/cpu/.05_pcam_resnet50_pytorch.running-26458/models/05_pcam_efficientnet_lite0_seed0.card.json"
    card = staging / "05_pcam_resnet50_pytorch.json"
    card.write_text(json.dumps({"parameters": {"SEED": 0}, "model": {"exported": staged},
                                "notes": [f"exported={staged}, timings"]}))
    relative_card_parameters(card, root)
    written = json.loads(card.read_text())
    assert written["model"]["exported"] == kept and written["notes"] == [f"exported={kept}, timings"]
    assert unstaged(".01_x.running-7/models/a.json and /tmp/o/.01_x.running-7/b") == "models/a.json and /tmp/o/b"
    assert unstaged("runs/cpu/.hidden/models/x.json") == "runs/cpu/.hidden/models/x.json"  # not a staging folder
    output = {"output_type": "stream", "name": "stdout", "text": [f"model card: {staged}\n"]}
    scrub_output(output, root)
    assert output["text"] == [f"model card: {kept}\n"]
