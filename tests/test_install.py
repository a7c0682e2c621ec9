"""`pip install .[torch]` gives what the package imports.

The cheap test reads every import of `tl_helpers` (ast) and checks pyproject.toml declares the
distribution that provides it. The slow one (TL_FULL_CHECKS=1: a clean virtual environment,
about 700 MB of wheels from the package indexes, or from $TL_WHEELHOUSE) installs `.[torch]` into a fresh venv and runs
`python -m tl_helpers.serve.predict` there on a chapter-5-style export made here.
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from conftest import REPO

# Imported by the package but rightly not declared: why each is there anyway.
NOT_DECLARED = {
    "IPython": "imported only inside a running Jupyter kernel (notebook.start / finish)",
    "matplotlib_inline": "imported only inside a running Jupyter kernel (ipykernel brings it)",
    "requests": "a dependency of kagglehub, used only for its download errors",
    "kagglesdk": "a dependency of kagglehub (its token helper)",
    "google": "google.colab: only in Colab, where it is there (tl.notebook.use_drive)",
}

SAME_PACKAGE = {"tensorflow_cpu": "tensorflow"}  # requirements.txt installs TensorFlow's CPU build


def _name(requirement: str) -> str:
    """`opencv-python-headless>=4.10` -> `opencv_python_headless` (PEP 503 names, underscores)."""
    return re.sub(r"[-_.]+", "_", re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0]).lower()


def _declared() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_name(r) for r in requirements}


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported anywhere in tl_helpers -> one file importing it."""
    found = {}
    for path in sorted((REPO / "tl_helpers").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("tl_helpers", "__future__"):
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_pyproject_declares_every_distribution_the_package_imports():
    providers = metadata.packages_distributions()
    declared = _declared()
    imported = _imported_modules()
    assert {"cv2", "sklearn", "scipy", "papermill", "torch", "keras"} <= set(imported)  # the check sees them
    missing = []
    for module, where in sorted(imported.items()):
        if module in NOT_DECLARED:
            continue
        distributions = {SAME_PACKAGE.get(_name(d), _name(d)) for d in providers.get(module, [])}
        if not distributions & declared:
            missing.append(f"{module} (imported in {where}; provided by {sorted(distributions) or 'nothing installed'})")
    assert not missing, "pyproject.toml does not declare: " + "; ".join(missing)


def test_pyproject_python_floor_matches_the_pins():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["requires-python"].startswith(">=3.11")
    assert {"torch", "keras"} <= set(project["optional-dependencies"])


CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("TL_FULL_CHECKS") != "1",
                    reason="builds a clean venv with pip install .[torch] (minutes, downloads): TL_FULL_CHECKS=1")
def test_clean_venv_with_the_torch_extra_runs_predict_on_a_chapter_5_export(tmp_path):
    import shutil

    import numpy as np
    import pandas as pd

    import tl_helpers as tl

    build = tl.model_cards.build_architecture("efficientnet_lite0+classifier_head", {"classes": 2})
    card = tl.model_cards.export_model(build, tmp_path / "model", {
        "task": "binary", "name": "05_pcam_install_check", "classes": ["no tumour", "tumour"],
        "architecture": "efficientnet_lite0+classifier_head", "architecture_options": {"hidden": 512, "dropout": 0.5},
        "input_size": 96, "crop": 49, "preprocessing": "efficientnet_lite0", "threshold": 0.5})
    patches = sorted(tl.synthetic.synthesize("pcam", tmp_path / "pcam", seed=0).rglob("*.tif"))[:6]
    assert len(patches) == 6
    expected = tl.model_cards.load_model(card, device="cpu").predict_proba([str(p) for p in patches])[:, 1]

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The CPU wheels of torch (PyPI's default ones carry ~4 GB of CUDA libraries); PyPI for the rest.
    # $TL_WHEELHOUSE: a folder of wheels made beforehand (`pip download -d DIR --extra-index-url
    # <cpu index> ".[torch]"`), installed from offline, so the timed run measures no downloads.
    # TL_TORCH_INDEX="" installs PyPI's own torch (where PyTorch's index cannot be reached).
    index = os.environ.get("TL_TORCH_INDEX", CPU_TORCH_INDEX)
    sources = ["--extra-index-url", index] if index else []
    if os.environ.get("TL_WHEELHOUSE"):
        sources = ["--no-index", "--find-links", os.environ["TL_WHEELHOUSE"]]
    source = tmp_path / "book"  # a copy: pip builds in the source folder (build/, *.egg-info)
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copytree(REPO / "tl_helpers", source / "tl_helpers", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([str(python), "-m", "pip", "install", "-q", *sources, f"{source}[torch]"], check=True, cwd=tmp_path)
    out = tmp_path / "preds.csv"
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "TL_PROJECT_ROOT")}
    result = subprocess.run([str(python), "-m", "tl_helpers.serve.predict", str(card), *map(str, patches),
                             "--out", str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    imported_from = subprocess.run([str(python), "-c", "import tl_helpers; print(tl_helpers.__file__)"], cwd=tmp_path,
                                   env=env, capture_output=True, text=True, check=True).stdout
    assert str(venv) in imported_from  # the installed package, not this checkout
    table = pd.read_csv(out)
    assert np.allclose(table["p_tumour"].to_numpy(), expected, atol=1e-5)
