"""The run card says which commit made a run and whether the tree had changes (in a temporary git repository)."""
import json
import os
import subprocess

import pytest

from tl_helpers.workflow.runcard import RunCard, git_provenance

DATE = "2024-03-05T10:20:30+00:00"


def git(folder, *args, **env):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                          cwd=folder, check=True, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(folder), **env}).stdout.strip()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A git repository with notebooks/01_x.ipynb committed at DATE, and a later commit of another file."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # never the repository above tmp
    root = tmp_path / "book"
    (root / "notebooks").mkdir(parents=True)
    notebook = root / "notebooks" / "01_x.ipynb"
    notebook.write_text(json.dumps({"cells": []}))
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-qm", "chapter", GIT_COMMITTER_DATE=DATE, GIT_AUTHOR_DATE=DATE)
    (root / "other.txt").write_text("later")
    git(root, "add", ".")
    git(root, "commit", "-qm", "later", GIT_COMMITTER_DATE="2024-04-01T00:00:00+00:00")
    return root, notebook


def test_clean_then_modified_then_untracked(project):
    root, notebook = project
    found = git_provenance(notebook)
    assert found == {"commit": git(root, "rev-parse", "HEAD"), "notebook_committed": DATE, "dirty": False}
    notebook.write_text(json.dumps({"cells": [], "changed": True}))
    assert git_provenance(notebook)["dirty"] is True
    git(root, "checkout", "--", ".")
    assert git_provenance(notebook)["dirty"] is False
    (root / "scratch.py").write_text("x = 1")  # untracked code can change a run too
    assert git_provenance(notebook)["dirty"] is True


def test_outside_git_everything_is_null(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    (tmp_path / "01_x.ipynb").write_text("{}")
    assert git_provenance(tmp_path / "01_x.ipynb") == {"commit": None, "notebook_committed": None, "dirty": None}
    assert git_provenance(None, repo=tmp_path)["commit"] is None


def test_an_uncommitted_notebook_has_a_commit_but_no_date(project):
    root, _ = project
    fresh = root / "notebooks" / "02_new.ipynb"
    fresh.write_text("{}")
    found = git_provenance(fresh)
    assert found["commit"] == git(root, "rev-parse", "HEAD")
    assert found["notebook_committed"] is None and found["dirty"] is True


def test_the_run_card_records_it_by_notebook_name(project, monkeypatch, tmp_path):
    root, notebook = project
    monkeypatch.setenv("TL_PROJECT_ROOT", str(root))
    path = RunCard("01_x", "smoke", seed=0).metric("accuracy", 0.9).save(tmp_path / "runs")  # outside the repository
    card = json.loads(path.read_text())
    assert card["commit"] == git(root, "rev-parse", "HEAD")
    assert card["notebook_committed"] == DATE and card["dirty"] is False
    notebook.write_text("{}")
    assert RunCard("01_x", "smoke", seed=0).finish()["dirty"] is True


def test_the_hardware_names_the_cpus_widest_vector_instructions(tmp_path):
    """Two CPUs a virtual machine names alike ("AMD EPYC") with other arithmetic are told apart (issue 27)."""
    from tl_helpers.workflow.runcard import describe_hardware, hardware, widest_vector_extension

    assert widest_vector_extension("fpu sse4_2 avx avx2 avx512f avx512_bf16".split()) == "AVX-512"
    assert widest_vector_extension("fpu sse4_2 avx avx2".split()) == "AVX2"
    assert widest_vector_extension("fp asimd sve".split()) == "SVE"
    assert widest_vector_extension(["fpu"]) is None
    older = {"cpu": "AMD EPYC", "machine": "x86_64", "cpu_count": 2, "memory_gib": 23.4, "gpu": None}
    assert describe_hardware(older) == "AMD EPYC, 2 cores, 23.4 GiB, GPU None"  # a card from before the field
    assert describe_hardware({**older, "cpu_vector": "AVX2"}).startswith("AMD EPYC (AVX2), 2 cores")
    if not os.path.exists("/proc/cpuinfo"):
        pytest.skip("no /proc/cpuinfo (not Linux): the card's field is then absent")
    card = RunCard("01_x", "smoke", seed=0).finish()
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith(("flags", "Features"))).split()
    assert card["hardware"]["cpu_vector"] == widest_vector_extension(flags) == hardware()["cpu_vector"]
