"""tl_helpers.paths: the project root, run folders and cache folders, and their environment overrides."""
from pathlib import Path

from tl_helpers import paths

REPO = Path(__file__).resolve().parents[1]


def test_project_root_is_the_checkout_or_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("TL_PROJECT_ROOT", raising=False)
    assert paths.project_root() == REPO
    assert (paths.project_root() / "_toc.yml").is_file()
    monkeypatch.setenv("TL_PROJECT_ROOT", str(tmp_path))
    assert paths.project_root() == tmp_path.resolve()
    assert paths.runs_dir("smoke") == tmp_path.resolve() / "runs" / "smoke"


def test_cache_dir_honours_tl_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TL_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert paths.cache_dir("synthetic") == (tmp_path / "elsewhere").resolve() / "synthetic"
    assert paths.cache_dir("features") == (tmp_path / "elsewhere").resolve() / "features"
    assert not (tmp_path / "elsewhere").exists()  # asking for a folder creates nothing


def test_cache_dir_defaults_to_the_gitignored_tl_cache(monkeypatch):
    monkeypatch.delenv("TL_CACHE_DIR", raising=False)
    monkeypatch.delenv("TL_PROJECT_ROOT", raising=False)
    assert paths.cache_dir("synthetic") == REPO / ".tl_cache" / "synthetic"
    assert ".tl_cache/" in (REPO / ".gitignore").read_text().split()
    # an empty setting counts as unset
    monkeypatch.setenv("TL_CACHE_DIR", "")
    assert paths.cache_dir("features") == REPO / ".tl_cache" / "features"
