"""Single cells of the chapter notebooks, run on inputs that the smoke profile never gives them."""
import ast
from pathlib import Path
from types import SimpleNamespace

import matplotlib
import nbformat
import pandas as pd

import tl_helpers as tl

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def cell_containing(notebook: str, text: str) -> str:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    (source,) = [c.source for c in nb.cells if c.cell_type == "code" and text in c.source]
    return source


def test_chapter5_tif_illustration_is_skipped_without_tif_files(tmp_path, capsys):
    """An optional illustration must not stop a chapter: a PCam copy with .jpg patches only."""
    matplotlib.use("Agg")
    source = cell_containing("05_pcam_resnet50_pytorch.ipynb", "tl.data.pcam_tif_files(")
    (tmp_path / "pcam" / "train").mkdir(parents=True)
    patches = pd.DataFrame({"path": [str(tmp_path / "pcam" / "train" / "a.jpg")], "label": [0]})
    shown = []
    # the cell's last line is what the notebook shows: run the rest, then evaluate it
    *body, last = ast.parse(source).body
    namespace = {"tl": tl, "Path": Path, "report": SimpleNamespace(root=tmp_path / "pcam"),
                 "patches": patches, "display": shown.append}
    exec(compile(ast.Module(body, type_ignores=[]), "cell", "exec"), namespace)
    result = eval(compile(ast.Expression(last.value), "cell", "eval"), namespace)
    assert "read 0 .tif patches" in capsys.readouterr().out and not shown
    assert "no .tif patch" in result
