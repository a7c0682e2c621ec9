"""Run chapter notebooks headless with papermill, for a profile.

    python -m tl_helpers.book.runner --profile smoke                 # every notebook
    python -m tl_helpers.book.runner --profile cpu --data-dir ../shared/data notebooks/00_datasets.ipynb
    python -m tl_helpers.book.runner --refresh-sources   # update the outputs stored in notebooks/

Each executed notebook and its run card (`<stem>.json`, written by the notebook) go to an
output folder (default `runs/<profile>/`), never to `notebooks/`. The run stops at the
first failing cell and says which notebook and which cell. Files committed to git (the
reference results under `results/`) are never replaced unless `--overwrite` is given.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..paths import project_root
from .profiles import available_profiles, parameters_for
from .runcard import ResultOverwriteError, guard_overwrite


class NotebookFailed(RuntimeError):
    """A notebook stopped with an error; the message names the notebook and the cell.

    Used by the book machinery (runner, build).
    """


def default_notebooks() -> list[Path]:
    """The chapter notebooks, `notebooks/NN_*.ipynb`, in order. Used by the book machinery (runner)."""
    return sorted((project_root() / "notebooks").glob("[0-9]*.ipynb"))


def _parse_value(text: str):
    """`-p KEY=VALUE` values: JSON when they parse (numbers, true, null, lists), else strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, progress: bool = True) -> Path:
    """Execute one notebook into `out_dir`; raise NotebookFailed naming the failing cell.

    Used by the book machinery (runner).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output = out_dir / notebook.name
    try:
        papermill.execute_notebook(str(notebook), str(output), parameters=parameters,
                                   kernel_name="python3", progress_bar=progress, cwd=str(notebook.parent))
    except PapermillExecutionError as error:
        import nbformat

        # Name the cell as a reader counts it in the source notebook (1-based), which
        # papermill's index does not: it counts the parameters cell it injected.
        cells = nbformat.read(notebook, as_version=4).cells
        position = next((i + 1 for i, c in enumerate(cells) if c.source.strip() == error.source.strip()), None)
        first_line = (error.source.strip().splitlines() or [""])[0]
        where = f"cell {position} of {len(cells)}" if position else f"executed cell {error.cell_index}"
        raise NotebookFailed(
            f"{notebook.name} failed in {where} (starting `{first_line[:80]}`): {error.ename}: {error.evalue}\n"
            f"The partly executed notebook is at {output}."
        ) from None
    return output


def run(profile: str, notebooks: list[Path] | None = None, out_dir: Path | None = None,
        data_dir: str | None = None, overrides: dict | None = None, overwrite: bool = False,
        progress: bool = True) -> list[Path]:
    """Run `notebooks` (default: all chapters) for `profile`; return the executed notebooks.

    Used by the book machinery (runner, build, tests).
    """
    root = project_root()
    notebooks = [Path(n).resolve() for n in (notebooks or default_notebooks())]
    out_dir = (Path(out_dir) if out_dir else root / "runs" / profile).resolve()
    for notebook in notebooks:
        if not notebook.is_file():
            raise FileNotFoundError(f"notebook not found: {notebook}")
        if out_dir == notebook.parent:
            raise ValueError(f"the output folder {out_dir} is the notebooks' source folder; choose another")
    # Check every destination before running anything, so that a refusal loses no work.
    for notebook in notebooks:
        for target in (out_dir / notebook.name, out_dir / f"{notebook.stem}.json"):
            guard_overwrite(target, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    from tqdm.auto import tqdm

    for notebook in tqdm(notebooks, desc=f"profile {profile}", unit="notebook", disable=not progress):
        parameters = parameters_for(profile, notebook.stem)
        parameters["OUTPUT_DIR"] = str(out_dir)
        parameters["OVERWRITE"] = overwrite
        if data_dir:
            parameters["DATA_DIR"] = str(Path(data_dir).resolve())
        parameters.update(overrides or {})
        started = time.perf_counter()
        executed.append(run_notebook(notebook, out_dir, parameters, progress))
        card = out_dir / f"{notebook.stem}.json"
        metrics = json.loads(card.read_text()).get("metrics", {}) if card.is_file() else {}
        shown = ", ".join(f"{k}={v['value']:.4g}" for k, v in list(metrics.items())[:6])
        print(f"{notebook.name}: done in {time.perf_counter() - started:.0f} s -> {out_dir}"
              + (f" ({shown})" if shown else ""))
    return executed


def refresh_sources(notebooks: list[Path] | None = None) -> None:
    """Re-execute the source notebooks in place with their own (smoke) parameters.

    Their stored outputs are what `pytest --nbval` compares against, so this is only run
    on purpose (`--refresh-sources`) after a change that alters what a notebook prints.
    Used by the book machinery (runner --refresh-sources).
    """
    import os

    import nbformat
    from nbclient import NotebookClient

    if os.environ.get("TL_PROFILE", "smoke") != "smoke":
        raise ValueError("refresh the sources under the smoke profile: unset TL_PROFILE")
    for notebook in notebooks or default_notebooks():
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, kernel_name="python3", timeout=1800,
                       resources={"metadata": {"path": str(notebook.parent)}}).execute()
        nbformat.write(nb, notebook)
        print(f"{notebook.name}: outputs refreshed")


def main(argv: list[str] | None = None) -> int:
    """The command line `python -m tl_helpers.book.runner` (see the module doc).

    Used by the book machinery (runner, build).
    """
    parser = argparse.ArgumentParser(prog="python -m tl_helpers.book.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all)")
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(available_profiles())}")
    parser.add_argument("--out", type=Path, help="output folder (default runs/<profile>/)")
    parser.add_argument("--data-dir", help="data directory holding the datasets (default $TL_DATA_DIR, else data/)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override one notebook parameter (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing committed results")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--refresh-sources", action="store_true",
                        help="re-execute notebooks/ in place (smoke) to update the outputs nbval compares")
    args = parser.parse_args(argv)
    if args.refresh_sources:
        refresh_sources([Path(n).resolve() for n in args.notebooks] or None)
        return 0
    overrides = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-p expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    try:
        run(args.profile, args.notebooks or None, args.out, args.data_dir, overrides, args.overwrite,
            progress=not args.no_progress)
    except (NotebookFailed, ResultOverwriteError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
