"""Every chapter notebook has the same skeleton (CONTRIBUTING.md, "How a chapter is laid out").

Title and Colab badge; the generated setup cell; the `parameters` cell; `tl.notebook.start`;
`tl.data.load`; the "What we changed" box (chapters 1-5); `tl.notebook.finish` last; helpers
reached only as `tl.<module>.<name>`.
"""
import re
from pathlib import Path

import nbformat
import pytest

import tl_helpers as tl

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9]*.ipynb"))


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


@pytest.fixture(params=NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_there_are_six_notebooks():
    assert [p.stem[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05"]


def test_title_and_colab_badge(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    assert f"]({tl.notebook.colab_url(path.stem)})" in first.source, "run scripts/notebook_setup.py"


def test_setup_cell_is_the_generated_one(notebook):
    _, nb = notebook
    cells = code_cells(nb)
    assert cells[0].source == tl.notebook.setup_cell_source(), "run scripts/notebook_setup.py"
    assert tl.notebook.repository_url() in cells[0].source
    assert len(cells[0].source.splitlines()) <= 10  # Colab and Kaggle, this version's tag
    assert max(map(len, cells[0].source.splitlines())) <= 88  # the book's code blocks do not wrap


def test_parameters_then_start(notebook):
    path, nb = notebook
    cells = code_cells(nb)
    assert "parameters" in cells[1].metadata.get("tags", []), "the second code cell is the parameters cell"
    assert re.search(rf'tl\.notebook\.start\(globals\(\), "{path.stem}"', cells[2].source), \
        "the third code cell calls tl.notebook.start(globals(), '<notebook>')"


def test_data_comes_from_load_data(notebook):
    _, nb = notebook  # tl.notebook.load_data: tl.data.load, and the source on the run card
    code = "\n".join(cell.source for cell in code_cells(nb))
    assert "tl.notebook.load_data(card, " in code and "tl.data.load(" not in code
    assert "tl.data.dataset_root(" not in code and "tl.data.require(" not in code


def test_what_we_changed_box(notebook):
    path, nb = notebook
    if path.stem.startswith("00"):
        pytest.skip("the dataset tour changes no article")
    boxes = [c for c in nb.cells if c.cell_type == "markdown" and "What we changed from the article" in c.source]
    assert len(boxes) == 1 and boxes[0].source.lstrip().startswith("```{admonition}")


def test_finish_is_the_last_code_cell(notebook):
    _, nb = notebook
    assert "tl.notebook.finish(card" in code_cells(nb)[-1].source


def test_helpers_are_reached_one_way(notebook):
    _, nb = notebook
    for cell in code_cells(nb)[1:]:
        assert not re.search(r"^\s*(from tl_helpers|import tl_helpers)", cell.source, re.M), cell.source[:200]
        assert ".split(\";\")" not in cell.source and "split(\", file\")" not in cell.source
        for module in re.findall(r"\btl\.(\w+)\.", cell.source):
            assert module in tl.MODULES, f"tl.{module} is not a module of tl_helpers"
        assert not re.search(r"^\s*\w+\s*=\s*tl\.\w+\s*(#.*)?$", cell.source, re.M), "no aliases: call tl.<module>.<name>"


def test_notebook_defaults_are_the_smoke_profile(notebook):
    """nbval and a reader's plain run use the parameters cell as it is: it must hold profiles/smoke.yml's values."""
    import ast

    import yaml

    path, nb = notebook
    smoke = yaml.safe_load((path.parents[1] / "profiles" / "smoke.yml").read_text())
    wanted = {**(smoke.get("defaults") or {}), **((smoke.get("notebooks") or {}).get(path.stem) or {})}
    cell = code_cells(nb)[1]
    defaults = {node.targets[0].id: ast.literal_eval(node.value) for node in ast.parse(cell.source).body
                if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)}
    assert defaults["PROFILE"] == "smoke"
    assert {key: defaults.get(key) for key in wanted} == wanted
    # tl.profiles.apply_profile tells a value edited by hand from smoke.yml's: it must list
    # every parameter another profile sets, or an edit of that one would be overwritten.
    for other in sorted((path.parents[1] / "profiles").glob("*.yml")):
        spec = yaml.safe_load(other.read_text())
        sets = {**(spec.get("defaults") or {}), **((spec.get("notebooks") or {}).get(path.stem) or {})}
        assert not set(sets) - set(wanted), f"{other.name} sets {sorted(set(sets) - set(wanted))}: add them to smoke.yml"


# --- the protocol, called not rewritten; cells a reader can read --------------------------

# What each chapter must call of the evaluation protocol (tl.protocol, tl.exports): chapter 1
# teaches the steps, chapters 2-5 call them. Chapter 2 is multiclass (no threshold to choose)
# and chapter 3 shows no Grad-CAM.
PROTOCOL_CALLS = {
    "01": ["tl.protocol.BinaryProtocol(", ".score_test(", "tl.protocol.compare_calibration(",
           "tl.protocol.gradcam_cases(", "tl.exports.export_and_check("],
    "02": ["tl.protocol.compare_calibration(", "tl.protocol.gradcam_cases(", "tl.exports.export_and_check("],
    "03": ["tl.protocol.BinaryProtocol(", ".score_test(", "tl.protocol.compare_calibration(",
           "tl.exports.export_and_check("],
    "04": ["tl.protocol.BinaryProtocol(", ".score_test(", "tl.protocol.compare_calibration(",
           "tl.protocol.gradcam_cases(", "tl.exports.export_and_check("],
    "05": ["tl.protocol.BinaryProtocol(", ".score_test(", "tl.protocol.compare_calibration(",
           "tl.protocol.gradcam_cases(", "tl.exports.export_and_check("],
}
MAX_LINE = 88  # characters a code line may have: the book's code blocks do not wrap mid-word
# Non-blank code lines, setup cell included. The book's goal is 1,450 (issue 23); it stood at
# 1,581 when the protocol moved into the library (from 1,887), 1,579 after chapters 1 and 3 took in
# the phase-1 check and the paired bootstrap, 1,545 once the dataset tour and chapter 5 read their
# data through tl.notebook.load_data, 1,533 once chapters 1 to 4 did too, 1,443 once where a run
# writes came from the runner's environment instead of parameters (and the chapters were
# tightened): a ratchet, lower it as chapters shrink.
MAX_CHAPTER_LINES, MAX_BOOK_LINES = 320, 1443


def code_lines(nb) -> list[str]:
    return [line for cell in code_cells(nb) for line in cell.source.splitlines()]


def test_each_chapter_calls_the_protocol_instead_of_writing_it(notebook):
    path, nb = notebook
    code = "\n".join(cell.source for cell in code_cells(nb))
    missing = [call for call in PROTOCOL_CALLS.get(path.stem[:2], []) if call not in code]
    assert not missing, f"{path.name} does not call {missing}"
    assert "def with_ci" not in code, "an Estimate formats itself: f'{estimate}'"
    assert "ci=(" not in code, "card.metric takes an Estimate with its interval"


def test_code_lines_fit_the_page(notebook):
    path, nb = notebook
    long = [line for line in code_lines(nb) if len(line) > MAX_LINE]
    assert not long, f"{path.name}: {len(long)} code lines over {MAX_LINE} characters, e.g. {long[0]!r}"


def test_chapters_stay_short_enough_to_read():
    counts = {path.stem[:2]: sum(1 for line in code_lines(nbformat.read(path, as_version=4)) if line.strip())
              for path in NOTEBOOKS}
    assert max(counts.values()) <= MAX_CHAPTER_LINES, counts
    assert sum(counts.values()) <= MAX_BOOK_LINES, counts
