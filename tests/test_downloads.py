"""Getting the data: `python -m tl_helpers.data`, kagglehub downloads (offline: fail-fast paths and a
stand-in for kagglehub), installing from zips and folders of real files, and the manifest check."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from tl_helpers import data
from tl_helpers.data import downloads

REPO = Path(__file__).resolve().parents[1]
CLOSED_PORT = ("127.0.0.1", 9)  # the discard port: nothing listens there on a test machine


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """An environment where kagglehub finds no credentials: no KAGGLE_* variables, an empty home."""
    for name in ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(home / ".kaggle"))
    return home


def run_cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tl_helpers.data", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_some(source: Path, target: Path, n: int, pattern: str = "*") -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    files = sorted(source.glob(pattern))[:n]
    for f in files:
        shutil.copy2(f, target / f.name)
    return files


# --- the command --------------------------------------------------------------------------

def test_list_prints_the_five_datasets_and_which_are_installed(tmp_path):
    (tmp_path / "chest_xray").mkdir()
    done = run_cli("list", "--data-dir", tmp_path)
    assert done.returncode == 0, done.stderr
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    assert list(lines) == ["brain_mri_yes_no", "brain_tumor_mri_4class", "chest_xray", "lgg_mri_segmentation", "pcam"]
    assert " installed " in lines["chest_xray"] and " absent " in lines["pcam"]
    assert "(version 1)" in lines["brain_tumor_mri_4class"] and "(competition)" in lines["pcam"]


def test_verify_passes_on_a_real_copy_and_names_the_damaged_file(shared_data, tmp_path):
    root = tmp_path / "brain_mri_yes_no"
    for cls in ("yes", "no"):
        copy_some(shared_data / "brain_mri_yes_no" / cls, root / cls, 5)
    done = run_cli("verify", "brain_mri_yes_no", "--data-dir", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok: brain_mri_yes_no" in done.stdout
    assert "no 5 of 98; yes 5 of 155" in done.stdout  # a subset: a note, not an error
    assert "no MANIFEST.json" in done.stdout

    damaged = sorted((root / "yes").iterdir())[2]
    damaged.write_bytes(damaged.read_bytes()[:40])  # a download cut short
    done = run_cli("verify", "brain_mri_yes_no", "--data-dir", tmp_path)
    assert done.returncode == 1
    assert str(damaged) in done.stdout
    errors = [line for line in done.stderr.splitlines() if "decoding" not in line and line.strip()]  # not the bar
    assert len(errors) == 1 and errors[0].startswith("error: brain_mri_yes_no at ")
    assert "Traceback" not in done.stdout + done.stderr


def test_verify_of_a_missing_dataset_is_one_line(tmp_path):
    done = run_cli("verify", "pcam", "--data-dir", tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and str(tmp_path / "pcam") in done.stderr


# --- download: fail fast --------------------------------------------------------------------

def test_download_without_credentials_fails_fast_with_token_instructions(no_credentials, tmp_path, monkeypatch):
    # "fast" means before any network: no connect is even tried (not a wall-clock bound)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("connected without credentials"))
    with pytest.raises(data.DownloadError) as error:
        data.download("pcam", data_dir=tmp_path / "d")
    message = str(error.value)
    for words in ("KAGGLE_API_TOKEN", "https://www.kaggle.com/settings/api", "Generate New Token",
                  "kaggle.json", "KAGGLE_USERNAME"):
        assert words in message
    assert not (tmp_path / "d").exists()  # nothing made

    done = run_cli("download", "pcam", "--data-dir", tmp_path / "d", env=dict(os.environ))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: no Kaggle credentials") and len(done.stderr.strip().splitlines()) == 1


def test_download_with_credentials_and_no_network_fails_within_the_timeout(no_credentials, tmp_path, monkeypatch):
    import kagglehub

    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-a-real-token")
    monkeypatch.setattr(downloads, "KAGGLE_HOST", CLOSED_PORT)
    monkeypatch.setattr(kagglehub, "dataset_download", lambda *a, **k: pytest.fail("kagglehub called offline"))
    assert data.kaggle_credentials() == "the API token (KAGGLE_API_TOKEN)"
    timeouts = []
    real_connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection",
                        lambda address, timeout=None: timeouts.append(timeout) or real_connect(address, timeout))
    with pytest.raises(data.DownloadError, match=r"cannot reach 127\.0\.0\.1:9 .*install chest_xray ZIP"):
        data.download("chest_xray", data_dir=tmp_path / "d", timeout=2)
    assert timeouts == [2]  # the one connect ran under the caller's timeout (no wall-clock bound)


def test_the_reachability_check_gives_up_on_a_stalled_connect(monkeypatch):
    """A connect (or name lookup) that never returns still ends within the timeout.

    The connect blocks until the test releases it, so the check can only answer by giving
    up on it: no wall-clock bound is needed to tell.
    """
    release, finished = threading.Event(), threading.Event()

    def stalled_connect(*args, **kwargs):
        release.wait(60)
        finished.set()
        raise OSError("connection timed out")

    monkeypatch.setattr(socket, "create_connection", stalled_connect)
    try:
        assert data.kaggle_reachable(timeout=0.05) is False
        assert not finished.is_set()  # answered while the connect was still hanging
    finally:
        release.set()


def test_the_reachability_check_sees_an_open_port(monkeypatch):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        monkeypatch.setattr(downloads, "KAGGLE_HOST", server.getsockname())
        assert data.kaggle_reachable(timeout=2) is True


@pytest.mark.parametrize("content, says", [
    ('{"username": "reader", key: "abc"}', "is not valid JSON (Expecting property name"),
    ('["reader", "abc"]', "holds a JSON list"),
    ('{"username": "reader"}', 'has no "key" entry'),
    ('{"username": "", "key": "abc"}', 'empty or non-text "username"'),
])
def test_a_malformed_kaggle_json_is_named_in_one_line(no_credentials, tmp_path, monkeypatch, content, says):
    config = tmp_path / "config"
    config.mkdir()
    (config / "kaggle.json").write_text(content)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    monkeypatch.setattr(downloads, "KAGGLE_HOST", CLOSED_PORT)
    with pytest.raises(data.DownloadError) as error:
        data.download("chest_xray", data_dir=tmp_path / "d", timeout=1)
    message = str(error.value)
    assert message.startswith(str(config / "kaggle.json")) and says in message and "\n" not in message


@pytest.mark.parametrize("mode, warned", [(0o644, True), (0o640, True), (0o600, False)])
def test_a_kaggle_json_others_can_read_warns_as_the_kaggle_client_does(no_credentials, tmp_path, monkeypatch,
                                                                      capsys, mode, warned):
    config = tmp_path / "config"
    config.mkdir()
    key = config / "kaggle.json"
    key.write_text('{"username": "reader", "key": "abc"}')
    key.chmod(mode)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    assert data.kaggle_credentials() == str(key)
    err = capsys.readouterr().err.strip().splitlines()
    if warned:
        assert len(err) == 1 and "readable by other users" in err[0] and f"chmod 600 {key}" in err[0]
    else:
        assert err == []


def test_kaggle_errors_become_one_line_with_the_fix(no_credentials, tmp_path, monkeypatch):
    import kagglehub
    from kagglehub.exceptions import UnauthenticatedError

    monkeypatch.setenv("KAGGLE_USERNAME", "reader")
    monkeypatch.setenv("KAGGLE_KEY", "revoked")
    monkeypatch.setattr(downloads, "kaggle_reachable", lambda timeout: True)

    def refuse(*args, **kwargs):
        raise UnauthenticatedError()

    monkeypatch.setattr(kagglehub, "competition_download", refuse)
    with pytest.raises(data.DownloadError, match="refused the credentials from KAGGLE_USERNAME and KAGGLE_KEY"
                                                 ".*Generate New Token"):
        data.download("pcam", data_dir=tmp_path / "d")
    assert [p.name for p in (tmp_path / "d").iterdir()] == []  # the temporary download folder is gone


# --- download: what kagglehub returns is installed ------------------------------------------------

def test_download_installs_the_pinned_version_that_kagglehub_returns(shared_data, no_credentials, tmp_path,
                                                                      monkeypatch):
    """kagglehub stands in (no network here): it unpacks real files in the Kaggle release's layout,
    duplicate copy included, into the output_dir it is given."""
    import kagglehub

    calls = []

    def fake_dataset_download(handle, output_dir=None, **kwargs):
        calls.append(handle)
        for copy in ("", "brain_tumor_dataset/"):
            for cls in ("yes", "no"):
                copy_some(shared_data / "brain_mri_yes_no" / cls, Path(output_dir) / f"{copy}{cls}", 3)
        return output_dir

    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-a-real-token")
    monkeypatch.setattr(downloads, "kaggle_reachable", lambda timeout: True)
    monkeypatch.setattr(kagglehub, "dataset_download", fake_dataset_download)
    target = data.download("brain_mri_yes_no", data_dir=tmp_path / "d")
    assert calls == ["navoneel/brain-mri-images-for-brain-tumor-detection/versions/1"]
    assert target == tmp_path / "d" / "brain_mri_yes_no"
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["brain_mri_yes_no"]  # no temporary folders left
    assert sorted(p.name for p in target.iterdir()) == ["MANIFEST.json", "no", "yes"]
    manifest = json.loads((target / "MANIFEST.json").read_text())
    assert manifest["n_files"] == 6 and manifest["kaggle_version"] == 1
    assert manifest["origin"] == "kaggle dataset navoneel/brain-mri-images-for-brain-tumor-detection/versions/1"


def test_a_competition_folder_outside_the_download_folder_is_copied(shared_data, no_credentials, tmp_path,
                                                                     monkeypatch):
    """In Colab or on Kaggle, kagglehub answers with a mounted copy: it is copied, never moved."""
    import kagglehub

    mounted = tmp_path / "mounted" / "histopathologic-cancer-detection"
    copied = copy_some(shared_data / "pcam" / "train", mounted / "train", 4, "*.jpg")
    labels = pd.read_csv(shared_data / "pcam" / "train_labels.csv", dtype={"id": str}).set_index("id")
    labels.loc[[f.stem for f in copied]].reset_index().to_csv(mounted / "train_labels.csv", index=False)
    handles = []
    monkeypatch.setenv("KAGGLE_API_TOKEN", "not-a-real-token")
    monkeypatch.setattr(downloads, "kaggle_reachable", lambda timeout: True)
    monkeypatch.setattr(kagglehub, "competition_download", lambda h, **k: handles.append(h) or str(mounted))
    target = data.download("pcam", data_dir=tmp_path / "d")
    assert handles == ["histopathologic-cancer-detection"]
    assert sorted(p.name for p in (target / "train").iterdir()) == sorted(f.name for f in copied)
    assert len(list((mounted / "train").iterdir())) == 4  # the source is left as it was
    assert data.verify("pcam", target).ok


# --- install from a zip, and the manifest ---------------------------------------------------------

def test_install_from_zip_names_a_file_that_is_not_a_zip(tmp_path):
    page = tmp_path / "chest-xray-pneumonia.zip"
    page.write_text("<!DOCTYPE html><html><body>Sign in to Kaggle</body></html>")
    with pytest.raises(data.DownloadError) as error:
        data.install_from_zip("chest_xray", page, data_dir=tmp_path / "d")
    assert str(page) in str(error.value) and "is not a zip file" in str(error.value)
    assert "\n" not in str(error.value)
    done = run_cli("install", "chest_xray", page, "--data-dir", tmp_path / "d")
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [f"error: {error.value}"]


def test_a_zip_bomb_is_refused_before_anything_is_extracted(tmp_path):
    """10 MB that would unpack to 2 GiB was extracted before any size check (issue 27); here 20 MiB of zeros."""
    bomb = tmp_path / "chest-xray-pneumonia.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("chest_xray/train/NORMAL/a.jpeg", b"\0" * (20 * 2**20))
    assert bomb.stat().st_size < 2**20 / 10
    with pytest.raises(data.DownloadError, match=r"would unpack to 20 MiB, \d+ times its own size .*zip bomb"):
        data.install_from_zip("chest_xray", bomb, data_dir=tmp_path / "d")
    assert [p.name for p in (tmp_path / "d").iterdir()] == []  # no unpacked folder left, not even hidden


def test_a_zip_larger_than_the_free_space_is_refused_before_extracting(tmp_path, monkeypatch):
    archive = tmp_path / "chest-xray-pneumonia.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("chest_xray/train/NORMAL/a.jpeg", os.urandom(300_000))
    free = shutil.disk_usage(tmp_path)._replace(free=100_000)  # a disk with 100 kB left
    monkeypatch.setattr(downloads.shutil, "disk_usage", lambda path: free)
    with pytest.raises(data.DownloadError, match=r"has 0 MiB free; nothing was extracted"):
        data.install_from_zip("chest_xray", archive, data_dir=tmp_path / "d")
    assert [p.name for p in (tmp_path / "d").iterdir()] == []


def test_a_zip_of_real_files_installs_in_the_layout_and_the_manifest_reports_counts(shared_data, tmp_path):
    """Kaggle's chest X-ray zip: chest_xray/{train,...}, a second copy in chest_xray/chest_xray/, __MACOSX/."""
    source = shared_data / "chest_xray" / "train"
    archive = tmp_path / "chest-xray-pneumonia.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for cls, n in (("NORMAL", 2), ("PNEUMONIA", 3)):
            for f in sorted((source / cls).iterdir())[:n]:
                for prefix in ("chest_xray/", "chest_xray/chest_xray/", "__MACOSX/chest_xray/"):
                    z.write(f, f"{prefix}train/{cls}/{f.name}")
    target = data.install_from_zip("chest_xray", archive, data_dir=tmp_path / "d")
    assert target == tmp_path / "d" / "chest_xray"
    assert sorted(p.name for p in target.iterdir()) == ["MANIFEST.json", "train"]
    files = sorted(p.relative_to(target).as_posix() for p in (target / "train").rglob("*.jpeg"))
    assert len(files) == 5
    manifest = json.loads((target / "MANIFEST.json").read_text())
    assert manifest["files"] == files
    assert manifest["sha256"] == hashlib.sha256("".join(f + "\n" for f in files).encode()).hexdigest()

    report = data.verify_with_manifest("chest_xray", target)
    assert report.ok, str(report)
    assert report.counts == {"train": {"NORMAL": 2, "PNEUMONIA": 3}}
    text = str(report)
    assert "train/NORMAL 2 of 1341; train/PNEUMONIA 3 of 3875; val/ absent (16 files in the release)" in text
    assert "matches MANIFEST.json of the install from zip chest-xray-pneumonia.zip" in text

    assert manifest["contents"][files[1]] == [(target / files[1]).stat().st_size,
                                              hashlib.sha256((target / files[1]).read_bytes()).hexdigest()]
    replaced = target / files[1]  # same name, same size, other bytes: only the sha256 can tell
    original = replaced.read_bytes()
    replaced.write_bytes(bytes(255 - b for b in original))
    report = data.verify_with_manifest("chest_xray", target)
    assert {p.path for p in report.problems} == {str(replaced)}  # (the deep check may not decode it either)
    assert "size or sha256 differs from MANIFEST.json" in str(report)
    assert data.verify_with_manifest("chest_xray", target, deep=False).ok  # --quick: sizes only
    replaced.write_bytes(original)

    gone = target / files[0]
    gone.unlink()
    (target / "train" / "NORMAL" / "extra.jpeg").write_bytes((target / files[1]).read_bytes())
    report = data.verify_with_manifest("chest_xray", target, deep=False)
    assert [p.path for p in report.problems] == [str(gone)]
    assert "1 file(s) added since the install, e.g. train/NORMAL/extra.jpeg" in str(report)


def test_install_refuses_a_zip_without_the_dataset_and_installs_nothing(shared_data, tmp_path):
    archive = tmp_path / "wrong.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted((shared_data / "chest_xray" / "train" / "NORMAL").iterdir())[:2]:
            z.write(f, f"images/{f.name}")
    with pytest.raises(data.DataLayoutError, match="does not hold train in any folder"):
        data.install_from_zip("chest_xray", archive, data_dir=tmp_path / "d")
    assert list((tmp_path / "d").iterdir()) == []
