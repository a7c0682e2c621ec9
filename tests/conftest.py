"""Shared fixtures: the real data beside the repository, and synthetic sets made once per session."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tl_helpers.data import synthetic

REPO = Path(__file__).resolve().parents[1]
SESSION_STARTED = time.time()  # run cards older than this were not made by this test session
# TL_PROGRESS=0 (no progress bars) is set by the checkout's root conftest.py


def written_this_session(path: Path) -> bool:
    """Whether this file exists and was written during this pytest session (a run card of its nbval run, say)."""
    return path.is_file() and path.stat().st_mtime >= SESSION_STARTED


def pytest_collection_modifyitems(session, config, items):
    """Tests marked `after_notebooks` run last: they read what the nbval run of notebooks/ wrote."""
    items.sort(key=lambda item: item.get_closest_marker("after_notebooks") is not None)


def shared_data_dir() -> Path | None:
    """../shared/data beside the repository (or $TL_SHARED_DATA), when it is there."""
    candidate = Path(os.environ.get("TL_SHARED_DATA", REPO.parent / "shared" / "data"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        pytest.skip("the real data (../shared/data or $TL_SHARED_DATA) is not here")
    return path


@pytest.fixture(scope="session")
def synthetic_sets(tmp_path_factory) -> dict[str, Path]:
    """All five smoke-size synthetic datasets, made once for the session (seed 0)."""
    base = tmp_path_factory.mktemp("synthetic")
    return {name: synthetic.synthesize(name, base / name, seed=0) for name in synthetic.SIZES}


def _mount_tmpfs(folder: Path, options: str) -> bool:
    """Mount a tmpfs on `folder` (root only); whether it worked."""

    if os.geteuid() != 0:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def unwritable_folder(tmp_path):
    """A folder nothing can be written into, even by root: a read-only tmpfs where mounting works,
    else (not root) a folder without write permission. Skipped only where neither holds."""
    folder = tmp_path / "read-only"
    if _mount_tmpfs(folder, "ro,size=64k"):
        yield folder
        subprocess.run(["umount", str(folder)], check=False)
        return
    if os.geteuid() == 0:
        pytest.skip("root without mount: no folder here is read-only to this process")
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KiB tmpfs (a disk that fills up), or None where mounting is not possible (the test then
    simulates the full disk itself)."""
    folder = tmp_path / "small-disk"
    if not _mount_tmpfs(folder, "size=256k"):
        yield None
        return
    yield folder
    subprocess.run(["umount", str(folder)], check=False)
