"""Where the book's folders are: the project root, run folders and caches.

The lowest room of the package: every other module asks here, so the answer is the same
everywhere. Defined for the whole book; `book/reproducing.md` explains the folders.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

PROJECT_ROOT_ENV = "TL_PROJECT_ROOT"
CACHE_DIR_ENV = "TL_CACHE_DIR"
RUNS_DIR_ENV = "TL_RUNS_DIR"  # set by tl.notebook.setup(drive=True): run cards and models on Google Drive


def _find_project_root() -> Path | None:
    """The folder holding `_toc.yml` and `tl_helpers/`, above this package or the working folder."""
    if os.environ.get(PROJECT_ROOT_ENV):
        return Path(os.environ[PROJECT_ROOT_ENV]).resolve()
    for start in (Path(__file__).resolve().parent.parent, Path.cwd().resolve()):
        for folder in (start, *start.parents):
            if (folder / "_toc.yml").is_file() and (folder / "tl_helpers").is_dir():
                return folder
    return None


def project_root() -> Path:
    """The book's repository folder (the one holding `_toc.yml`), or the working folder.

    $TL_PROJECT_ROOT overrides the search. Used by every chapter (through the runner).
    """
    return _find_project_root() or Path.cwd().resolve()


def runs_dir(profile: str) -> Path:
    """Where a run of `profile` goes by default: `<project>/runs/<profile>/` (never committed),
    or `$TL_RUNS_DIR/<profile>/` when that is set (Google Drive in Colab). Exported models go
    to its `models/`. Used by every chapter (through tl.notebook.finish).
    """
    if os.environ.get(RUNS_DIR_ENV):
        return Path(os.environ[RUNS_DIR_ENV]).expanduser().resolve() / profile
    return project_root() / "runs" / profile


def cache_dir(kind: str) -> Path:
    """A cache folder for `kind` (features, synthetic, ...), safe to delete at any time.

    $TL_CACHE_DIR/<kind>, else `<project>/.tl_cache/<kind>` in a checkout of the book, else
    `~/.cache/tl_helpers/<kind>` (an installed package). Never inside a reader's data folder.
    Used by every chapter (synthetic sets, the feature cache).
    """
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser().resolve() / kind
    root = _find_project_root()
    if root is not None:
        return root / ".tl_cache" / kind
    return Path.home() / ".cache" / "tl_helpers" / kind


def ask_git(*args: str, cwd: str | Path | None = None, timeout: float = 20) -> str | None:
    """`git <args>` in `cwd` (default: the project root): its output, stripped, or None when git
    is missing, times out, or fails (outside a repository, say). The one way the package asks
    git. Used by the run card (provenance, protected results), model cards and the book build.
    """
    try:
        done = subprocess.run(["git", *args], cwd=cwd or project_root(), capture_output=True, text=True,
                              timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def relative_to_project(path: str | Path) -> str:
    """`path` relative to the project when it lies inside it, else as given: what a chapter
    prints and records (a run card must not carry the machine's folders).

    Used by every chapter (exports) and the book machinery.
    """
    path = Path(path)
    root = project_root()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)
