"""The registry of the five datasets (`DATASETS`) and where each one lives on disk.

Synthetic look-alikes are made in the cache folder (`tl_helpers.paths.cache_dir`), never
in the reader's data folder.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


import yaml

from ..paths import cache_dir, process_running, project_root

__all__ = ['DATA_DIR_ENV', 'SYNTHETIC_MARKER', 'DatasetSpec', 'DATASETS', 'DataError',
           'DatasetNotFoundError', 'DataLayoutError', 'DownloadError', 'spec', 'resolve_data_dir',
           'how_to_get', 'locate', 'is_synthetic', 'describe_source', 'dataset_root', 'extra_set']

DATA_DIR_ENV = "TL_DATA_DIR"
SYNTHETIC_MARKER = "SYNTHETIC.json"


@dataclass(frozen=True)
class DatasetSpec:
    """What one dataset is and how it is laid out on disk (the Kaggle layout).

    Used by every chapter; the dataset tour (chapter 0) shows them all (`tl.data.DATASETS`).
    """

    name: str  # folder name under the data directory
    title: str
    chapter: str
    kaggle_ref: str  # owner/dataset, or the competition name
    kaggle_kind: str  # "dataset" or "competition"
    kind: str  # "class_folders", "lgg_segmentation" or "labels_csv"
    layout: str  # the expected layout, as a reader would write it
    kaggle_version: int | None = None  # the pinned Kaggle version; None: the latest (competitions have none)
    required_splits: tuple[str, ...] = ()
    optional_splits: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    full_counts: dict = field(default_factory=dict)  # {split: {class: n}} of the Kaggle release
    citation: str = ""
    download_mb: float | None = None  # about how large the Kaggle archive is, in MB
    extra_sets: dict = field(default_factory=dict)  # {name: {title, about}}: labelled sets not on Kaggle

    @property
    def kaggle_url(self) -> str:
        if self.kaggle_kind == "competition":
            return f"https://www.kaggle.com/competitions/{self.kaggle_ref}/data"
        return f"https://www.kaggle.com/datasets/{self.kaggle_ref}"


def _load_registry() -> dict[str, DatasetSpec]:
    entries = yaml.safe_load((Path(__file__).with_name("datasets.yml")).read_text())
    tuples = ("required_splits", "optional_splits", "classes")
    return {e["name"]: DatasetSpec(**{k: tuple(v) if k in tuples else v for k, v in e.items()}) for e in entries}


DATASETS: dict[str, DatasetSpec] = _load_registry()  # the five datasets, from datasets.yml


class DataError(Exception):
    """Base class of the data errors; messages say what was expected, where, and the fix.

    Used by every chapter (the errors of tl.data.load).
    """


class DatasetNotFoundError(DataError, FileNotFoundError):
    """The dataset's folder is not in the data directory; the message says how to get it.

    Used by every chapter (raised by tl.data.load).
    """
    pass


class DataLayoutError(DataError):
    """A folder not in the expected layout: a damaged dataset, a zip without it, a foreign cache folder.

    Used by every chapter (raised by tl.data.load).
    """
    pass


class DownloadError(DataError):
    """A download or unpacking that cannot go ahead (no credentials, no network, a non-empty target).

    Used by tl.data.download (book/data.md).
    """
    pass


def spec(name: str) -> DatasetSpec:
    """The DatasetSpec of `name`, with the list of known names when it is not one.

    Used by chapter 5.
    """
    try:
        return DATASETS[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def extra_set(name: str, set_name: str) -> dict:
    """What the registry says about `set_name`, a labelled set of dataset `name` that is not part
    of the Kaggle release (PCam: "official_valid", PatchCamelyon's own validation split, from
    slides its training split does not use): {"title", "about"}. Unknown names raise KeyError
    with the ones known. Used by chapter 5 (through tl.data.pcam_table and tl.data.verify).
    """
    known = spec(name).extra_sets
    if set_name not in known:
        raise KeyError(f"dataset {name!r} has no extra set {set_name!r}; known: {', '.join(known) or 'none'}")
    return known[set_name]


# --- where things are ------------------------------------------------------------------

def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else $TL_DATA_DIR, else the project's `data/`.

    Raises DataLayoutError when that is a file (a zip, say), not a folder.
    Used by every chapter (through tl.data.load).
    """
    if data_dir:
        path = Path(data_dir).expanduser().resolve()
    elif os.environ.get(DATA_DIR_ENV):
        path = Path(os.environ[DATA_DIR_ENV]).expanduser().resolve()
    else:
        path = project_root() / "data"
    if path.exists() and not path.is_dir():
        raise DataLayoutError(
            f"the data directory {path} (from {_data_dir_source(data_dir)}) is a file, not a folder. "
            f"Point {DATA_DIR_ENV}, --data-dir or the notebook's DATA_DIR at the folder that holds the "
            "dataset folders; a Kaggle zip is unpacked with `python -m tl_helpers.data install <name> <zip>`.")
    return path


def _data_dir_source(data_dir) -> str:
    """Which setting chose the data directory, in words (for error messages)."""
    return "the argument" if data_dir else DATA_DIR_ENV if os.environ.get(DATA_DIR_ENV) else "the default"


def how_to_get(name: str, target: Path) -> str:
    """Instructions, in words, for putting dataset `name` at `target`.

    Used by every chapter (the message when the data is missing).
    """
    s = spec(name)
    return (
        f"To get it: (a) with a Kaggle API token (KAGGLE_API_TOKEN, or ~/.kaggle/kaggle.json; see "
        f"book/data.md), run `python -m tl_helpers.data download {name}`; or "
        f"(b) download the zip from {s.kaggle_url} and run "
        f"`python -m tl_helpers.data install {name} archive.zip`; or "
        f"(c) point {DATA_DIR_ENV} (or the notebook's DATA_DIR parameter) at a folder that already "
        f"holds `{s.name}/`. Expected layout: {s.layout}. Target: {target}"
    )


def locate(name: str, data_dir: str | Path | None = None) -> Path:
    """The folder of dataset `name` under the data directory; a clear error when absent.

    Used by every chapter (through tl.data.load).
    """
    s = spec(name)
    base = resolve_data_dir(data_dir)
    root = base / s.name
    if not root.is_dir():
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: looked for the folder {root} "
            f"(data directory {base}{'' if base.is_dir() else ', which does not exist'}, "
            f"from {_data_dir_source(data_dir)}). "
            + how_to_get(name, root)
        )
    return root


def is_synthetic(root: str | Path) -> bool:
    """True when `root` is a synthetic look-alike made by tl_helpers (it holds SYNTHETIC.json).

    Used by every chapter (through tl.data.describe_source).
    """
    return (Path(root) / SYNTHETIC_MARKER).is_file()


def describe_source(root: str | Path, short: bool = False) -> str:
    """Where a dataset folder came from: synthetic (with seed) or real; `short` for titles.

    Used by every chapter (the `source` of tl.data.load's report).
    """
    root = Path(root)
    if is_synthetic(root):
        meta = json.loads((root / SYNTHETIC_MARKER).read_text())
        if short:
            return f"SYNTHETIC look-alike data (seed {meta['seed']})"
        return (f"SYNTHETIC look-alike data made by tl_helpers (seed {meta['seed']}, size "
                f"{meta['size']!r}); not real images")
    return "real data"


def dataset_root(name: str, synthetic: bool, data_dir: str | Path | None = None, seed: int = 0,
                 size: str = "smoke") -> Path:
    """The dataset's folder, unverified: a synthetic set (made once, then reused) or the real one.

    Chapters call `tl.data.load`, which verifies what this returns.

    Synthetic sets go to `<cache>/synthetic/<name>-<size>-seed<seed>` (`paths.cache_dir`),
    never into the data directory; they are remade when the generator's version changed.
    A set is written beside it first (`<folder>.tmp-<pid>`) and renamed into place only when
    complete, so an interrupted run leaves nothing in the way of the next one.
    Used by every chapter (through tl.data.load).
    """
    if not synthetic:
        return locate(name, data_dir)
    from . import synthetic as synth

    root = cache_dir("synthetic") / f"{name}-{size}-seed{seed}"
    marker = root / SYNTHETIC_MARKER
    if _made_by_this_generator(marker, synth.GENERATOR_VERSION):
        return root
    if not marker.is_file() and root.exists() and any(root.iterdir()):
        raise DataLayoutError(f"{root} exists but holds no {SYNTHETIC_MARKER}: it is not a synthetic set "
                              "made by tl_helpers, so it is left alone. Move it away, or set TL_CACHE_DIR to another folder.")
    _remove_abandoned_partial_sets(root)
    partial = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    try:
        synth.synthesize(name, partial, seed=seed, size=size)
        if _made_by_this_generator(marker, synth.GENERATOR_VERSION):
            shutil.rmtree(partial)  # another process finished the same set first: use theirs
            return root
        if marker.is_file():
            shutil.rmtree(root)  # a stale synthetic set we made ourselves (its marker says so)
        elif root.exists():
            root.rmdir()  # empty
        try:
            partial.rename(root)
        except OSError:
            if not is_synthetic(root):
                raise
            shutil.rmtree(partial)  # another process renamed its copy in just before us
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # interrupted (even by Ctrl-C): leave no half set
        raise
    return root


def _made_by_this_generator(marker: Path, version) -> bool:
    """Whether `marker` exists and names the generator version now in use.

    An unreadable marker (truncated by a full disk, edited by hand) counts as a stale set,
    so the set is made again rather than stopping with a JSONDecodeError.
    """
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("generator_version") == version
    except (ValueError, AttributeError, OSError):  # not JSON, not an object, unreadable
        return False


def _remove_abandoned_partial_sets(root: Path) -> None:
    """Delete `<root>.tmp-<pid>` folders of processes no longer running (crashed mid-write).

    Ours (this process, interrupted earlier) goes too; another live process's is left alone.
    """
    for partial in root.parent.glob(f"{root.name}.tmp-*"):
        pid = partial.name.rsplit("-", 1)[-1]
        if pid.isdigit() and (int(pid) == os.getpid() or not process_running(int(pid))):
            shutil.rmtree(partial, ignore_errors=True)
