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


def test_progress_draws_a_bar_unless_turned_off(monkeypatch, capsys):
    """A reader's Jupyter or terminal gets a bar on a long step; $TL_PROGRESS=0 (the runner's
    kernels, this suite) or enabled=False gets none."""
    from tl_helpers.paths import PROGRESS_ENV, progress

    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert list(progress(range(3), "work")) == [0, 1, 2]
    assert "work" in capsys.readouterr().err
    assert progress(range(3), enabled=False).disable
    monkeypatch.setenv(PROGRESS_ENV, "0")
    assert progress(range(3)).disable
    assert list(progress(range(3), "quiet")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_the_runner_starts_kernels_without_bars_and_restores_the_setting(monkeypatch):
    import os

    from tl_helpers.paths import PROGRESS_ENV
    from tl_helpers.workflow.runner import kernel_without_progress_bars

    monkeypatch.setenv(PROGRESS_ENV, "1")
    with kernel_without_progress_bars():
        assert os.environ[PROGRESS_ENV] == "0"
    assert os.environ[PROGRESS_ENV] == "1"


def test_the_runner_sets_the_kernels_profile_only_when_given(monkeypatch):
    import os

    from tl_helpers.workflow.runner import kernel_profile

    monkeypatch.setenv("TL_PROFILE", "smoke")
    with kernel_profile(None):
        assert os.environ["TL_PROFILE"] == "smoke"
    with kernel_profile("cpu"):
        assert os.environ["TL_PROFILE"] == "cpu"
    assert os.environ["TL_PROFILE"] == "smoke"
    monkeypatch.delenv("TL_PROFILE")
    with kernel_profile("cpu"):
        assert os.environ["TL_PROFILE"] == "cpu"
    assert "TL_PROFILE" not in os.environ


def test_refreshing_stored_outputs_runs_kernels_without_bars(monkeypatch, tmp_path):
    """The stored outputs nbval compares with are made as nbval runs: no progress bars."""
    import os

    import nbformat

    from tl_helpers.workflow import runner

    seen = []

    class Client:
        def __init__(self, nb, **kwargs):
            pass

        def execute(self):
            seen.append(os.environ.get("TL_PROGRESS"))

    monkeypatch.setattr("nbclient.NotebookClient", Client)
    monkeypatch.delenv("TL_PROFILE", raising=False)
    monkeypatch.setenv("TL_PROGRESS", "1")
    path = tmp_path / "x.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")]), path)
    runner.refresh_sources([path])
    assert seen == ["0"] and os.environ["TL_PROGRESS"] == "1"
