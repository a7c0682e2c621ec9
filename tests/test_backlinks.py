"""Back-links from helpers to the chapters that call them, read from the notebooks."""
from __future__ import annotations

import importlib
import json

import pytest

import tl_helpers
from tl_helpers.workflow import backlinks


def write_notebook(path, *sources):
    cells = [{"cell_type": "code", "source": source, "metadata": {}, "outputs": [], "execution_count": None}
             for source in sources]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def test_chapter_calls_reads_the_code_cells(tmp_path):
    one = write_notebook(tmp_path / "01_a.ipynb", "x = tl.metrics.binary_report(y, p)\n# tl.plotting.plot_roc",
                         "tl.protocol.BinaryProtocol(goal).score_test(y, p)")
    four = write_notebook(tmp_path / "04_b.ipynb", "tl.metrics.binary_report(y, p, groups=g)")
    calls = backlinks.chapter_calls({1: one, 4: four})
    assert calls["metrics.binary_report"] == {1, 4}
    assert calls["protocol.BinaryProtocol"] == {1}
    assert calls["plotting.plot_roc"] == {1}  # a comment is what a reader reads too


@pytest.mark.parametrize("docstring, chapters", [
    ("Taught in chapter 1; used by chapters 3, 4 and 5.", {1, 3, 4, 5}),
    ("Used by chapters 1 to 5 and the tl.metrics report.", {1, 2, 3, 4, 5}),
    ("Used by every chapter.", {1, 2, 3, 4, 5}),
    ("Used by the dataset tour (chapter 0) and chapter 4.", {0, 4}),
    ("Used by the book machinery (runner, build).", set()),
    ("No back-link at all.", set()),
])
def test_claimed_chapters_reads_the_back_link_sentence(docstring, chapters):
    assert backlinks.claimed_chapters(docstring) == chapters


def test_every_helper_a_chapter_calls_names_the_chapters_that_call_it():
    """A helper's docstring names every chapter whose code calls it, and only those (a
    helper reached only through another helper says so, naming that one)."""
    wrong = []
    for key, chapters in sorted(backlinks.chapter_calls().items()):
        module, name = key.split(".", 1)
        if module not in tl_helpers.MODULES:
            continue
        helper = getattr(importlib.import_module(f"tl_helpers.{tl_helpers.MODULES[module]}"), name, None)
        if helper is None or not callable(helper) or isinstance(helper, type(json)):
            continue
        claimed = backlinks.claimed_chapters(helper.__doc__)
        if chapters - claimed or claimed - chapters:
            wrong.append(f"tl.{key}: called in {sorted(chapters)}, docstring names {sorted(claimed)}")
    assert not wrong, f"{len(wrong)} back-links disagree with the notebooks:\n" + "\n".join(wrong)


def test_the_helpers_page_links_each_helper_to_its_chapters():
    page = backlinks.helpers_page({"metrics.binary_report": {1, 3}})
    assert "| `tl.metrics.binary_report` |" in page
    assert "[1](01_xception_brain_tumor.ipynb), [3](03_xray_perturbation_retraining.ipynb)" in page
