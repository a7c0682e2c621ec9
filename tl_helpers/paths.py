"""Where the book's folders are: the project root, run folders and caches.

The lowest room of the package: every other module asks here, so the answer is the same
everywhere. Defined for the whole book; `book/reproducing.md` explains the folders.
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT_ENV = "TL_PROJECT_ROOT"
CACHE_DIR_ENV = "TL_CACHE_DIR"


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
    """Where a run of `profile` goes by default: `<project>/runs/<profile>/` (never committed).

    Used by every chapter (through tl.notebook.finish).
    """
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
