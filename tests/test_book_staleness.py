"""The book says when a chapter's shown run was made from another version of the chapter."""
import json
from pathlib import Path

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


def test_build_runs_only_the_chapters_it_will_show(tmp_path, monkeypatch):
    """A chapter with a committed reference run is shown from it, so the build does not run
    it (the first README command took 9 min running smoke notebooks no page showed)."""
    from tl_helpers.workflow import runner

    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: index\nchapters: []\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "results" / "cpu").mkdir(parents=True)
    for stem in ("00_tour", "01_chapter"):
        _notebook(tmp_path / "notebooks" / f"{stem}.ipynb", "print(1)")
    _notebook(tmp_path / "results" / "cpu" / "00_tour.ipynb", "print(1)")
    monkeypatch.setenv("TL_PROJECT_ROOT", str(tmp_path))
    asked = []

    def fake_run(profile, notebooks=None, out_dir=None, **kwargs):
        asked.append([Path(n).name for n in notebooks])
        out_dir.mkdir(parents=True, exist_ok=True)
        for n in notebooks:
            _notebook(out_dir / Path(n).name, "print(1)")

    monkeypatch.setattr(runner, "run", fake_run)
    real_run = build.subprocess.run
    monkeypatch.setattr(build.subprocess, "run",  # no jupyter-book here; git still answers
                        lambda command, *a, **k: None if command[1:2] == ["build"] else real_run(command, *a, **k))
    build.build("smoke", run_first=True, fresh=False)
    assert asked == [["01_chapter.ipynb"]]  # the tour has a committed run: shown, not run
    staged = sorted(p.name for p in (tmp_path / "book" / "generated").glob("*.ipynb"))
    assert staged == ["00_tour.ipynb", "01_chapter.ipynb"]
    build.build("smoke", run_first=True, fresh=True)
    assert asked[-1] == ["00_tour.ipynb", "01_chapter.ipynb"]  # --fresh: every chapter runs
