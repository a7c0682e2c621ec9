"""The book says when a chapter's shown run was made from another version of the chapter."""
import json

import nbformat

from tl_helpers.workflow import build
from tl_helpers.workflow.runcard import notebook_source_hash


def _notebook(path, code):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter"), nbformat.v4.new_code_cell(code)])
    nbformat.write(nb, path)
    return path


def test_source_hash_ignores_outputs_but_not_code(tmp_path):
    path = _notebook(tmp_path / "01_x.ipynb", "print(1)")
    before = notebook_source_hash(path)
    nb = json.loads(path.read_text())
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    path.write_text(json.dumps(nb))
    assert notebook_source_hash(path) == before  # refreshed outputs: the same chapter
    _notebook(path, "print(2)")
    assert notebook_source_hash(path) != before  # changed code: another chapter


def test_summary_warns_when_the_run_is_older_than_the_chapter():
    card = {"notebook": "01_x", "profile": "cpu", "started_utc": "2026-11-22T04:58:40+00:00",
            "source_sha256": "a" * 64, "model": {}, "data": {}}
    assert "Older than the chapter" in build.run_summary(card, {}, "2026-11-30T01:00:00+00:00", "b" * 64)
    assert "Older than the chapter" not in build.run_summary(card, {}, "2026-11-30T01:00:00+00:00", "a" * 64)
    legacy = {k: v for k, v in card.items() if k != "source_sha256"}  # cards from before the hash: by date
    assert "Older than the chapter" in build.run_summary(legacy, {}, "2026-11-30T01:00:00+00:00", "a" * 64)
    assert "Older than the chapter" not in build.run_summary(legacy, {}, "2026-11-01T00:00:00+00:00", "a" * 64)
