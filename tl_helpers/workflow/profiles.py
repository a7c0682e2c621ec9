"""Run profiles: named sets of notebook parameters, kept in `profiles/<name>.yml`.

- `smoke`: synthetic data, tiny sizes, one or two epochs; the tests and CI use it.
- `cpu`: real data from the data directory, the offline pretrained backbone, sizes that
  fit a 2-core machine.
- `paper`: the article's backbone, image size and epochs, on a GPU.

Each file has `defaults` (for every notebook) and `notebooks: {<stem>: {...}}`. The
runner passes a profile's parameters to papermill; a notebook run by hand applies the
profile its parameters cell names (`PROFILE = "cpu"`), or the one `$TL_PROFILE` names,
through `apply_profile`. The smoke profile holds the parameters cells' own values, so a
value that differs from it was changed by hand, and wins.
"""
from __future__ import annotations

import ast
import functools
import os
from pathlib import Path

import yaml

from ..paths import project_root

PROFILE_ENV = "TL_PROFILE"
# The profile whose values the parameters cells hold (tests/test_notebook_skeleton.py checks
# it, for every parameter any profile sets): what a notebook has before anyone edits it.
CELL_PROFILE = "smoke"
NOT_RECORDED = ("OUTPUT_DIR", "OVERWRITE")  # where a run writes, not what it was: off the run card


def profiles_dir() -> Path:
    """The folder of the profile files: `<project>/profiles/`.

    Used by the book machinery (runner, notebook.start).
    """
    return project_root() / "profiles"


def available_profiles() -> list[str]:
    """The names of the profiles there (smoke, cpu, gpu, paper). Used by the book machinery (runner)."""
    return sorted(p.stem for p in profiles_dir().glob("*.yml"))


def load_profile(name: str) -> dict:
    """The parsed `profiles/<name>.yml`; an error naming the available profiles when absent.

    Used by the book machinery (runner, notebook.start).
    """
    path = profiles_dir() / f"{name}.yml"
    if not path.is_file():
        raise FileNotFoundError(f"no profile {name!r}: {path} does not exist; "
                                f"available: {', '.join(available_profiles())}")
    return yaml.safe_load(path.read_text()) or {}


def parameters_for(profile: str, notebook: str) -> dict:
    """The parameters a notebook gets under `profile`: the defaults, then its own section.

    Used by the book machinery (runner, notebook.start).
    """
    spec = load_profile(profile)
    parameters = {"PROFILE": profile, **(spec.get("defaults") or {})}
    parameters.update((spec.get("notebooks") or {}).get(notebook) or {})
    return parameters


def notebook_parameters(notebook: Path) -> set[str]:
    """The names assigned in a notebook's `parameters`-tagged cell, read with `ast` (not run).

    Used by the book machinery (runner.check_parameters, notebook.start).
    """
    return set(_assigned_names(str(notebook), Path(notebook).stat().st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _assigned_names(notebook: str, mtime_ns: int) -> frozenset:
    """`notebook_parameters`, cached per file version (the chapters are read once per run)."""
    import nbformat

    names = set()
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            names |= {node.id for node in ast.walk(ast.parse(cell.source))
                      if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    return frozenset(names)


def apply_profile(namespace: dict, notebook: str) -> dict:
    """Apply a profile to `namespace` (a notebook's globals, after its parameters cell ran).

    The profile is the one $TL_PROFILE names, else the one `PROFILE` names (a reader who
    edits the parameters cell to `PROFILE = "cpu"`). Its values replace every parameter still
    as the cell has it (`CELL_PROFILE`'s value); a parameter changed by hand keeps its value.
    When $TL_PROFILE names the profile `PROFILE` already has, the parameters were set by
    whoever set both (the runner sets it for its kernels after papermill injected them), and
    nothing changes. Returns what was changed. Used by every chapter (through tl.notebook.start).
    """
    from_env = os.environ.get(PROFILE_ENV)
    if from_env and from_env == namespace.get("PROFILE"):
        return {}
    wanted = from_env or namespace.get("PROFILE")
    if not wanted:
        return {}
    untouched = parameters_for(CELL_PROFILE, notebook)
    changes, kept = {}, {}
    for name, value in parameters_for(wanted, notebook).items():
        edited = name != "PROFILE" and name in namespace and name in untouched and namespace[name] != untouched[name]
        if edited:
            kept[name] = namespace[name]
        elif name not in namespace or namespace[name] != value:
            changes[name] = value
    namespace.update(changes)
    if changes or kept:
        source = f"${PROFILE_ENV}" if from_env else "the parameters cell"
        print(f"profile {wanted!r} from {source}: " + (", ".join(f"{k}={v!r}" for k, v in changes.items()) or "nothing to change")
              + ("; kept as edited: " + ", ".join(f"{k}={v!r}" for k, v in kept.items()) if kept else ""))
    return changes


def parameters_in_effect(namespace: dict, notebook: str) -> dict:
    """Every parameter of `notebook` with the value `namespace` holds: what the run card records.

    The names are those assigned in the parameters cell of `<project>/notebooks/<notebook>.ipynb`
    (else the profiles' names); OUTPUT_DIR and OVERWRITE are left out, since where a card is
    written is not what the run was. Used by every chapter (through tl.notebook.start).
    """
    source = profiles_dir().parent / "notebooks" / f"{notebook}.ipynb"
    names = notebook_parameters(source) if source.is_file() else set(parameters_for(CELL_PROFILE, notebook))
    return {name: namespace[name] for name in sorted(names - set(NOT_RECORDED)) if name in namespace}

