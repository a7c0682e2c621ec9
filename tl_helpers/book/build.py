"""Build the jupyter-book from executed notebooks and the pages in `book/`.

    python -m tl_helpers.book.build              # run the smoke profile, then build
    python -m tl_helpers.book.build --profile cpu --data-dir ../shared/data
    python -m tl_helpers.book.build --no-run     # build from the runs already in runs/<profile>/

The book never executes notebooks itself (execution is off in `_config.yml`): the runner
has run them. For each chapter the book shows the committed reference run in
`results/<profile>/` when there is one (a cpu run on real data), else this build's run;
`--fresh` shows only this build's runs. The results page is generated from the run cards'
JSON, never typed by hand.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from ..paths import project_root

GENERATED = Path("book") / "generated"
REFERENCE_PROFILES = ("cpu", "paper")


def stage_notebooks(runs_dir: Path, fresh: bool = False) -> dict[str, Path]:
    """Copy each chapter's executed notebook into book/generated/; return {stem: source}.

    Used by the book machinery (scripts/build_book.sh).
    """
    root = project_root()
    target = root / GENERATED
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.ipynb"):  # a staged copy of a notebook that is gone
        stale.unlink()
    chosen = {}
    for notebook in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        candidates = [] if fresh else [root / "results" / p / notebook.name for p in REFERENCE_PROFILES]
        candidates.append(runs_dir / notebook.name)
        source = next((c for c in candidates if c.is_file()), None)
        if source is None:
            raise FileNotFoundError(f"no executed copy of {notebook.name} in {runs_dir} or results/; "
                                    "run `python -m tl_helpers.book.runner` first")
        shutil.copyfile(source, target / notebook.name)
        chosen[notebook.stem] = source
    return chosen


def write_toc(root: Path) -> Path:
    """The build's table of contents: `_toc.yml` without chapters not written yet.

    Used by the book machinery (scripts/build_book.sh).
    """
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    exists = lambda entry: any((root / (entry["file"] + ext)).is_file() for ext in (".md", ".ipynb"))  # noqa: E731
    toc["chapters"] = [c for c in toc["chapters"] if exists(c) or c["file"].endswith("/results")]
    path = root / GENERATED / "_toc.yml"
    path.write_text(yaml.safe_dump(toc, sort_keys=False))
    return path


def _format_metric(entry: dict) -> str:
    text = f"{entry['value']:.3f}"
    if "ci95" in entry:
        text += f" ({entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"
    return text


def results_page(cards: list[Path], article_results: dict) -> str:
    """Markdown for the results page: every run card's metrics beside the article's numbers.

    Used by the book machinery (scripts/build_book.sh).
    """
    lines = ["# Results", "",
             "Generated from the run cards (`<notebook>.json`) of the runs this book was built from; "
             "nothing here is typed by hand. Metrics are on each chapter's held-out split, with 95% "
             "confidence intervals in brackets where the chapter computes them. Numbers from synthetic "
             "data (profile `smoke`) only show that the code runs; they say nothing about medicine.", ""]
    by_notebook: dict[str, list[dict]] = {}
    for path in cards:
        card = json.loads(path.read_text())
        card["_file"] = str(path.relative_to(project_root())) if path.is_relative_to(project_root()) else str(path)
        by_notebook.setdefault(card["notebook"], []).append(card)
    for notebook in sorted(by_notebook):
        lines += [f"## {notebook}", ""]
        article = article_results.get(notebook)
        if article:
            lines += [f"Article: {article.get('claim', '')}", ""]
        lines += ["| run | profile | data | wall time | metric | value (95% CI) | article |",
                  "|---|---|---|---|---|---|---|"]
        for card in by_notebook[notebook]:
            data = "; ".join(f"{k}: {'synthetic' if 'SYNTHETIC' in v.get('source', '') else 'real'}"
                             for k, v in card.get("data", {}).items()) or "-"
            run = f"`{card['_file']}`"
            metrics = card.get("metrics") or {}
            if not metrics:
                lines.append(f"| {run} | {card['profile']} | {data} | {card.get('wall_time_s', '?')} s | - | - | - |")
            for name, entry in metrics.items():
                theirs = (article or {}).get("metrics", {}).get(name, "")
                lines.append(f"| {run} | {card['profile']} | {data} | {card.get('wall_time_s', '?')} s | "
                             f"{name} | {_format_metric(entry)} | {theirs} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def build(profile: str = "smoke", run_first: bool = True, fresh: bool = False, data_dir: str | None = None,
          output: Path | None = None) -> Path:
    """Run (optionally) and build the book; return the path of its index.html.

    Used by the book machinery (scripts/build_book.sh, tests).
    """
    root = project_root()
    runs_dir = root / "runs" / profile
    if run_first:
        from .runner import run

        run(profile, out_dir=runs_dir, data_dir=data_dir)
    chosen = stage_notebooks(runs_dir, fresh=fresh)
    cards = [source.with_suffix(".json") for source in chosen.values() if source.with_suffix(".json").is_file()]
    article_file = root / "book" / "article_results.yml"
    article = yaml.safe_load(article_file.read_text()) if article_file.is_file() else {}
    (root / GENERATED / "results.md").write_text(results_page(cards, article or {}))
    output = Path(output or root).resolve()  # jupyter-book writes <output>/_build/html
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(root),
               "--path-output", str(output), "--toc", str(write_toc(root))]
    subprocess.run(command, check=True, cwd=root)
    index = output / "_build" / "html" / "index.html"
    print(f"Book built: open {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    """The command line `python -m tl_helpers.book.build` (see the module doc).

    Used by the book machinery (scripts/build_book.sh).
    """
    parser = argparse.ArgumentParser(prog="python -m tl_helpers.book.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-dir", help="data directory for the run (default $TL_DATA_DIR, else data/)")
    parser.add_argument("--no-run", action="store_true", help="build from the runs already in runs/<profile>/")
    parser.add_argument("--fresh", action="store_true", help="ignore the committed reference runs in results/")
    parser.add_argument("--output", type=Path, help="the HTML goes to <output>/_build/html (default: the project)")
    args = parser.parse_args(argv)
    build(args.profile, not args.no_run, args.fresh, args.data_dir, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
