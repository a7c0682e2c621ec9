"""Which chapter calls which helper: back-links read from the notebooks' own code.

d2l's chapters end each helper with "Defined in": here the link runs the other way, from a
helper to the chapters that call it, and it is read from the notebooks rather than written
by hand, so it cannot drift. `helpers_page` writes the book's "Helpers by chapter" page;
`claimed_chapters` reads the chapters a docstring names, so a test can hold the docstrings
to what the notebooks do.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from ..paths import project_root

CALL = re.compile(r"\btl\.([a-z_]+)\.([A-Za-z_][A-Za-z0-9_]*)")
CHAPTER_WORDS = re.compile(r"(?:chapters?|the dataset tour)\s*((?:\(chapter 0\))?[\d ,;and to]*)")


def chapter_notebooks(root: Path | None = None) -> dict[int, Path]:
    """The chapter notebooks by number (0 is the dataset tour). Used by the book machinery."""
    folder = Path(root or project_root()) / "notebooks"
    return {int(path.name[:2]): path for path in sorted(folder.glob("[0-9][0-9]_*.ipynb"))}


def chapter_calls(notebooks: dict[int, Path] | None = None) -> dict[str, set[int]]:
    """`"<module>.<name>"` -> the chapters whose code cells call `tl.<module>.<name>`.

    Read with a regular expression from the code cells, so it sees what a reader sees.
    Used by the book machinery (build: the helpers page) and the docstring test.
    """
    calls: dict[str, set[int]] = {}
    for number, path in (notebooks or chapter_notebooks()).items():
        cells = json.loads(Path(path).read_text())["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        for module, name in CALL.findall(code):
            calls.setdefault(f"{module}.{name}", set()).add(number)
    return calls


def _numbers(text: str) -> set[int]:
    """Chapter numbers in "1, 2 and 4", "1 to 5", "(chapter 0) and chapters 1 to 3"."""
    found: set[int] = set()
    for start, end in re.findall(r"(\d+)\s+to\s+(\d+)", text):
        found.update(range(int(start), int(end) + 1))
    found.update(int(n) for n in re.findall(r"\d+", text))
    return found


def claimed_chapters(docstring: str | None) -> set[int]:
    """The chapters a docstring's back-link names ("Taught in chapter 1; used by chapters 3 to
    5", "Used by every chapter" = 1 to 5, "the dataset tour (chapter 0)"). Back-links that
    name a helper instead ("Used by tl.metrics.binary_report (chapters 1, 3)") count too.
    Used by the docstring test.
    """
    text = " ".join((docstring or "").split())
    found: set[int] = set()
    if re.search(r"\bevery (?:classifier )?chapter\b", text):
        found.update(range(1, 6))
    for match in re.finditer(r"(?:Taught in|[Uu]sed by|[Uu]sed in|[Tt]aught by)[^.]*", text):
        for words in CHAPTER_WORDS.findall(match.group(0)):
            found |= _numbers(words)
        if "dataset tour" in match.group(0):
            found.add(0)
    return found


def helpers_page(calls: dict[str, set[int]] | None = None, titles: dict[int, str] | None = None) -> str:
    """The book page "Helpers by chapter": per module, each helper the chapters call, what it
    does (its docstring's first line) and links to the chapters that call it.

    Used by the book machinery (build).
    """
    import importlib

    import tl_helpers

    calls = calls if calls is not None else chapter_calls()
    notebooks = chapter_notebooks()
    lines = ["# Helpers by chapter", "",
             "Every helper a chapter calls, with the chapters that call it, read from the notebooks' "
             "code when the book was built (so the links cannot go stale). `tl.<module>.<name>` "
             "is `tl_helpers/<room>/<module>.py`; CONTRIBUTING.md has the map.", ""]
    by_module: dict[str, list[str]] = {}
    for key in sorted(calls):
        by_module.setdefault(key.split(".")[0], []).append(key)
    for module, keys in by_module.items():
        if module not in tl_helpers.MODULES:
            continue
        lines += [f"## `tl.{module}`", "", "| helper | what it does | called in |", "|---|---|---|"]
        loaded = importlib.import_module(f"tl_helpers.{tl_helpers.MODULES[module]}")
        for key in keys:
            name = key.split(".", 1)[1]
            doc = (getattr(getattr(loaded, name, None), "__doc__", None) or "").strip().splitlines()
            summary = doc[0].replace("|", "\\|") if doc else ""
            links = ", ".join(f"[{n}]({notebooks[n].stem}.ipynb)" if n in notebooks else str(n)
                              for n in sorted(calls[key]))
            lines.append(f"| `tl.{key}` | {summary} | {links} |")
        lines.append("")
    return "\n".join(lines) + "\n"
