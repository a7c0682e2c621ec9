"""Run profiles: named sets of notebook parameters, kept in `profiles/<name>.yml`.

- `smoke`: synthetic data, tiny sizes, one or two epochs; the tests and CI use it.
- `cpu`: real data from the data directory, the offline pretrained backbone, sizes that
  fit a 2-core machine.
- `paper`: the article's backbone, image size and epochs, on a GPU.

Each file has `defaults` (for every notebook) and `notebooks: {<stem>: {...}}`. The
runner passes a profile's parameters to papermill; a notebook run by hand or by nbval
reads the `TL_PROFILE` environment variable through `apply_profile`.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml

from ..paths import project_root

PROFILE_ENV = "TL_PROFILE"


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


def apply_profile(namespace: dict, notebook: str) -> dict:
    """Under $TL_PROFILE, replace the parameter values in `namespace` (a notebook's globals).

    Does nothing when the variable is unset or names the profile already in effect, so
    parameters injected by papermill are kept. Returns what was changed.
    Used by every chapter (through tl.notebook.start).
    """
    wanted = os.environ.get(PROFILE_ENV)
    if not wanted or wanted == namespace.get("PROFILE"):
        return {}
    changes = parameters_for(wanted, notebook)
    namespace.update(changes)
    print(f"profile {wanted!r} from ${PROFILE_ENV}: " + ", ".join(f"{k}={v!r}" for k, v in changes.items()))
    return changes
