"""Rewrite the back-link sentence of every helper the chapters call, from the notebooks.

    .venv/bin/python scripts/update_backlinks.py          # rewrite the docstrings
    .venv/bin/python scripts/update_backlinks.py --check  # exit 1 when one would change

A helper's docstring ends with the chapters that call it ("Taught in chapter 1; used by
chapters 3 and 5."). Written by hand, those drift; this script writes them from
`tl.backlinks.chapter_calls` (the notebooks' own code), keeping which chapter teaches a
helper when that chapter still calls it. tests/test_backlinks.py fails when they disagree.
"""
from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tl_helpers  # noqa: E402
from tl_helpers.workflow.backlinks import chapter_calls  # noqa: E402

BACKLINK = re.compile(r"(?:Taught in|Used by|Used in)\b(?:(?!\n\s*\n).)*?\.(?=\s|$)", re.S)


def chapter_list(numbers: list[int]) -> str:
    """[1, 2, 4] -> 'chapters 1, 2 and 4'; 1..5 -> 'every chapter'; 0 -> 'the dataset tour (chapter 0)'."""
    tour = 0 in numbers
    rest = [n for n in numbers if n]
    if rest == [1, 2, 3, 4, 5]:
        words = "every chapter"
    elif len(rest) == 1:
        words = f"chapter {rest[0]}"
    elif rest:
        words = "chapters " + (", ".join(map(str, rest[:-1])) + f" and {rest[-1]}")
    else:
        words = ""
    if tour:
        return "the dataset tour (chapter 0)" + (f" and {words}" if words else "")
    return words


def sentence(old: str | None, chapters: set[int]) -> str:
    numbers = sorted(chapters)
    taught = re.match(r"Taught in chapter (\d)", old or "")
    if taught and int(taught.group(1)) in chapters and int(taught.group(1)) != 0:
        first = int(taught.group(1))
        others = [n for n in numbers if n != first]
        return f"Taught in chapter {first}" + (f"; used by {chapter_list(others)}." if others else ".")
    return f"Used by {chapter_list(numbers)}."


def rewrite(source: str, name: str, chapters: set[int]) -> str:
    """The module source with `name`'s docstring back-link replaced (or added)."""
    tree = ast.parse(source)
    node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and n.name == name
                 and n in tree.body), None)
    if node is None or not (node.body and isinstance(node.body[0], ast.Expr)
                            and isinstance(node.body[0].value, ast.Constant)
                            and isinstance(node.body[0].value.value, str)):
        return source
    doc = node.body[0]
    lines = source.splitlines(keepends=True)
    start = sum(len(line) for line in lines[:doc.lineno - 1]) + doc.col_offset
    end = sum(len(line) for line in lines[:doc.end_lineno - 1]) + doc.end_col_offset
    literal = source[start:end]
    matches = [m for m in BACKLINK.finditer(literal) if "chapter" in m.group(0) or "Used by tl." in m.group(0)
               or "machinery" in m.group(0)]
    if matches:
        m = matches[-1]
        new = sentence(" ".join(m.group(0).split()), chapters)
        if " ".join(m.group(0).split()) == new:
            return source
        literal = literal[:m.start()] + new + literal[m.end():]
    else:
        quote = literal[-3:]
        body = literal[:-3].rstrip()
        indent = " " * doc.col_offset
        new = sentence(None, chapters)
        literal = (f"{body}\n\n{indent}{new}\n{indent}{quote}" if "\n" in body
                   else f"{body[:-1] if body.endswith('.') else body}. {new}{quote}"
                   if len(body) + len(new) + 8 < 100 else f"{body}\n\n{indent}{new}\n{indent}{quote}")
    return source[:start] + literal + source[end:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    changed = []
    for key, chapters in sorted(chapter_calls().items()):
        module, name = key.split(".", 1)
        if module not in tl_helpers.MODULES:
            continue
        helper = getattr(importlib.import_module(f"tl_helpers.{tl_helpers.MODULES[module]}"), name, None)
        if helper is None or not callable(helper):
            continue
        path = Path(inspect.getsourcefile(helper))  # where it is defined (tl.data re-exports)
        source = path.read_text()
        new = rewrite(source, name, chapters)
        if new != source:
            changed.append(f"tl.{key}")
            if not args.check:
                path.write_text(new)
    print(("would change: " if args.check else "changed: ") + (", ".join(changed) or "nothing"))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
