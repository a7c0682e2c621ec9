"""Where the book's folders are: the project root, run folders and caches.

The lowest room of the package: every other module asks here, so the answer is the same
everywhere. Defined for the whole book; `book/reproducing.md` explains the folders.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

PROJECT_ROOT_ENV = "TL_PROJECT_ROOT"
CACHE_DIR_ENV = "TL_CACHE_DIR"
RUNS_DIR_ENV = "TL_RUNS_DIR"  # set by tl.notebook.setup(drive=True): run cards and models on Google Drive
PROGRESS_ENV = "TL_PROGRESS"  # "0": no progress bars (the runner and the test suite set it)
# Set by the runner for the notebook it runs, so that a chapter's parameters cell holds only
# what the chapter computes with: where the run card goes (the runner's staging folder),
# where its models go, and whether a committed card may be replaced ("1": --overwrite).
OUTPUT_DIR_ENV = "TL_OUTPUT_DIR"
MODEL_DIR_ENV = "TL_MODEL_DIR"
OVERWRITE_ENV = "TL_OVERWRITE"


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
    to its `models/`. Used by chapters 2 and 3.
    """
    if os.environ.get(RUNS_DIR_ENV):
        return Path(os.environ[RUNS_DIR_ENV]).expanduser().resolve() / profile
    return project_root() / "runs" / profile


def output_dir(profile: str) -> Path:
    """Where this run's card goes: $TL_OUTPUT_DIR when the runner set it, else `runs_dir(profile)`.

    Used by tl.notebook.finish.
    """
    return Path(os.environ[OUTPUT_DIR_ENV]) if os.environ.get(OUTPUT_DIR_ENV) else runs_dir(profile)


def model_dir(profile: str) -> Path:
    """Where this run's models go: $TL_MODEL_DIR when the runner set it, else `runs_dir(profile)/models`.

    Used by tl.exports.model_folder.
    """
    return Path(os.environ[MODEL_DIR_ENV]) if os.environ.get(MODEL_DIR_ENV) else runs_dir(profile) / "models"


def overwrite_allowed() -> bool:
    """Whether this run may replace a committed run card: the runner was given --overwrite.

    Used by tl.notebook.finish.
    """
    return os.environ.get(OVERWRITE_ENV) == "1"


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


def process_running(pid: int) -> bool:
    """Whether process `pid` exists (on Windows, where this cannot be asked safely: assume so).

    Used by tl.data.dataset_root and the runner (leftovers of dead runs are removed).
    """
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)  # signal 0: asks, sends nothing
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


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

    Used by every chapter.
    """
    path = Path(path)
    root = project_root()
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(path)


# --- outputs: checked before any work ---------------------------------------------------------

def progress(iterable=None, desc: str = "", total: int | None = None, enabled: bool = True):
    """A progress bar on stderr for a long step a reader watches in Jupyter, Colab or a terminal
    (tqdm, plain text, refreshed at most every 2 s, cleared when done), wrapping `iterable`.

    Off when `enabled` is False or $TL_PROGRESS is "0": the runner sets it for the kernels it
    starts and the test suite for its own, so executed notebooks keep no bars in their outputs
    (the runner's log has a line per epoch instead). Used by feature extraction (chapters 1, 2
    and 4), the bootstrap intervals (every chapter) and PyTorch's training and evaluation
    passes (chapter 5).
    """
    import sys

    from tqdm import tqdm

    on = enabled and os.environ.get(PROGRESS_ENV) != "0"
    return tqdm(iterable, desc=desc, total=total, disable=not on, file=sys.stderr, leave=False,
                mininterval=2.0, ncols=80)


class OutputWriteError(OSError):
    """An output folder or file that cannot or must not be written (read-only, below a file, a
    folder, an input, an existing file without --force, disk full).

    The message is one line naming the path and the fix. Used by the book machinery
    (RunCard.save, runner) and the predict and evaluate commands.
    """


def check_output_folder(folder: str | Path, choose: str = "--out, OUTPUT_DIR") -> None:
    """Stop before anything runs or is written when `folder` cannot hold outputs.

    That is when a part of its path is a regular file, or when the folder (or, while it does
    not exist yet, the nearest folder above it) is not writable: a file is really made
    there and removed, so a read-only mount is caught even for root. `choose` names the
    option to change in the message. Raises OutputWriteError.
    Used by the book machinery (RunCard.save, runner) and tl.paths.check_output_file.
    """
    folder = Path(folder).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())  # exists() is False below a file
    if not existing.is_dir():
        raise OutputWriteError(f"cannot write to the output folder {folder}: {existing} is a file, not a "
                               f"folder. Choose another folder ({choose}) or move the file away.")
    which = "it is" if existing == folder else f"the folder above it, {existing}, is"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputWriteError(f"cannot write to the output folder {folder}: {which} read-only. Choose "
                               f"another folder ({choose}) or make it writable.")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".tl-write-check-"):
            pass
    except OSError as error:  # a read-only file system, a full disk, no permission for root either
        raise OutputWriteError(f"cannot write to the output folder {folder}: {which} not writable "
                               f"({error.strerror or error}). Choose another folder ({choose}) or fix it.") from None


def check_output_file(path: str | Path, inputs: Iterable[str | Path] = (), force: bool = False,
                      option: str = "--out") -> Path:
    """Stop before any work when the output file `path` cannot or must not be written; return it, absolute.

    Refused, each with one line (OutputWriteError) naming the path and the fix: a folder; a
    path below a file; an unwritable place (`check_output_folder`); one of `inputs` (files
    read, or a file inside a folder read: a scan is never replaced by a report, even with
    `force`); an existing file unless `force` (`--force`). `option` names the command's option.
    Used by the predict and evaluate commands (tl.predict, tl.external).
    """
    path = Path(path).expanduser().absolute()
    if path.is_dir():
        raise OutputWriteError(f"{option} {path} is a folder; give the name of a file to write "
                               "(in that folder or elsewhere).")
    resolved = path.resolve()
    for given in inputs:
        given = Path(given).expanduser().resolve()
        if resolved == given or (given.is_dir() and resolved.is_relative_to(given) and path.exists()):
            raise OutputWriteError(f"{option} {path} is an input (read from {given}); writing it would replace "
                                   "it. Choose an output outside the inputs.")
    check_output_folder(path.parent, choose=option)
    if path.exists() and not force:
        raise OutputWriteError(f"{option} {path} already exists; nothing was done. Pass --force to replace it, "
                               "or choose another name.")
    return path


class BookWarning(UserWarning):
    """The base of the warnings the helpers give a reader (few groups, a constant threshold, a
    temperature at its bound): shown as `Name: message`, without the helper file's path and
    line (`show_book_warnings_briefly`), which say nothing to a reader and would put this
    machine's folders into a notebook's saved output. Used by tl.metrics and tl.calibration.
    """


class SaidOnceWarning(BookWarning):
    """A BookWarning shown once a run however often it is raised (`show_book_warnings_briefly`):
    tl.metrics.FewGroupsWarning, raised by every interval asked of the same few patients."""


def show_book_warnings_briefly() -> None:
    """Print BookWarnings as one line `Name: message`; other warnings as Python formats them;
    a SaidOnceWarning's message once a run.

    Used by tl.notebook.start (every chapter).
    """
    import warnings

    plain = getattr(warnings.formatwarning, "plain", warnings.formatwarning)

    def formatwarning(message, category, filename, lineno, line=None):
        if isinstance(category, type) and issubclass(category, BookWarning):
            return f"{category.__name__}: {message}\n"
        return plain(message, category, filename, lineno, line)

    formatwarning.plain = plain  # calling this twice wraps Python's own format once
    warnings.formatwarning = formatwarning
    # Said once a run: the same message about the same few patients adds nothing when repeated.
    # Python's own "once" forgets what it showed whenever any code touches the warning filters,
    # so how often it repeated depended on the code around it; this count does not.
    warnings.filterwarnings("always", category=SaidOnceWarning)
    show = getattr(warnings.showwarning, "plain", warnings.showwarning)
    shown = set()

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if isinstance(category, type) and issubclass(category, SaidOnceWarning):
            if str(message) in shown:
                return
            shown.add(str(message))
        show(message, category, filename, lineno, file, line)

    showwarning.plain = show
    warnings.showwarning = showwarning

