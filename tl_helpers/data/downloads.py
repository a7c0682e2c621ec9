"""Getting a dataset: from Kaggle with the reader's credentials, or from a zip already downloaded."""
from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path



from .registry import DataLayoutError, DownloadError, how_to_get, resolve_data_dir, spec
from .integrity import verify


# --- download --------------------------------------------------------------------------

__all__ = ['KAGGLE_API', 'kaggle_credentials', 'download', 'install_from_zip']

KAGGLE_API = "https://www.kaggle.com/api/v1"


def kaggle_credentials() -> tuple[str, str] | None:
    """(username, key) from KAGGLE_USERNAME/KAGGLE_KEY or ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR).

    Used by tl.data.download (book/data.md).
    """
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return os.environ["KAGGLE_USERNAME"], os.environ["KAGGLE_KEY"]
    config = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle")) / "kaggle.json"
    if config.is_file():
        data = json.loads(config.read_text())
        return data["username"], data["key"]
    return None


def _kaggle_reachable(timeout: float) -> bool:
    try:
        with socket.create_connection(("www.kaggle.com", 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(name: str, data_dir: str | Path | None = None, timeout: float = 10.0,
             overwrite: bool = False) -> Path:
    """Download dataset `name` from Kaggle into the data directory and verify it.

    Needs Kaggle credentials (in Colab: upload kaggle.json to ~/.kaggle/, or set
    KAGGLE_USERNAME and KAGGLE_KEY). Without them, or without network, it stops within
    `timeout` seconds with instructions; it never hangs. PCam is a competition: accept its
    rules on the Kaggle page first. Taught in book/data.md (getting the datasets), not in a chapter.
    """
    s = spec(name)
    target = resolve_data_dir(data_dir) / s.name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already exists and is not empty; nothing downloaded. "
                            "Pass overwrite=True to replace it, or verify it with verify().")
    credentials = kaggle_credentials()
    if credentials is None:
        raise DownloadError(
            "no Kaggle credentials: create an API token on https://www.kaggle.com/settings "
            "(it downloads kaggle.json), then put it at ~/.kaggle/kaggle.json (chmod 600) or set "
            "KAGGLE_USERNAME and KAGGLE_KEY. " + how_to_get(name, target))
    if not _kaggle_reachable(timeout):
        raise DownloadError(
            f"cannot reach www.kaggle.com within {timeout:.0f} s (no network here?). Download on a "
            "connected machine instead. " + how_to_get(name, target))
    if s.kaggle_kind == "competition":
        url = f"{KAGGLE_API}/competitions/data/download-all/{s.kaggle_ref}"
    else:
        url = f"{KAGGLE_API}/datasets/download/{s.kaggle_ref}"
    token = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    request = urllib.request.Request(url, headers={"Authorization": f"Basic {token}"})
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "archive.zip"
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response, open(archive, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {name}") as bar:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as error:
            hint = " Accept the competition's rules on its Kaggle page first." if error.code == 403 else ""
            raise DownloadError(f"Kaggle answered {error.code} for {url}.{hint} " + how_to_get(name, target)) from error
        except (urllib.error.URLError, OSError) as error:
            raise DownloadError(f"download of {url} failed: {error}. " + how_to_get(name, target)) from error
        return install_from_zip(name, archive, data_dir, overwrite=overwrite)


# What to take out of each Kaggle zip: (entries that must be there, entries taken if there).
# The zips hold duplicate copies (brain_tumor_dataset/, lgg-mri-segmentation/, chest_xray/chest_xray/).
_ZIP_CONTENT = {
    "brain_mri_yes_no": (("yes", "no"), ()),
    "brain_tumor_mri_4class": (("Training",), ("Testing",)),
    "chest_xray": (("train",), ("val", "test")),
    "lgg_mri_segmentation": (("kaggle_3m",), ()),
    "pcam": (("train", "train_labels.csv"), ("test", "sample_submission.csv")),
}


def install_from_zip(name: str, zip_path: str | Path, data_dir: str | Path | None = None,
                     overwrite: bool = False) -> Path:
    """Unpack a Kaggle zip of dataset `name` into `<data dir>/<name>/` in the expected layout.

    Taught in book/data.md (getting the datasets), not in a chapter.
    """
    s = spec(name)
    target = resolve_data_dir(data_dir) / s.name
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already exists and is not empty; pass overwrite=True to replace it")
    required, optional = _ZIP_CONTENT[name]
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(tmp)
        # the shallowest folder that holds every required entry
        candidates = sorted(
            (p for p in [Path(tmp), *Path(tmp).rglob("*")] if p.is_dir() and "__MACOSX" not in p.parts
             and all((p / entry).exists() for entry in required)),
            key=lambda p: len(p.parts))
        if not candidates:
            raise DataLayoutError(f"{zip_path} does not hold {' and '.join(required)} in any folder; "
                                  f"is it the zip of {s.kaggle_url}?")
        if target.exists():
            shutil.rmtree(target)
        target.mkdir()
        for entry in required + optional:
            if (candidates[0] / entry).exists():
                shutil.move(str(candidates[0] / entry), target / entry)
    print(verify(name, target, deep=False))
    return target
