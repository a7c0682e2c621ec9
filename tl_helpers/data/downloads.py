"""Getting a dataset: from Kaggle through kagglehub with the reader's credentials, or from a zip
or folder already downloaded; installed in the expected layout and checked against a manifest.

Every way in goes through one installer (`install_from_folder`): it finds the shallowest folder
that holds the dataset's entries, assembles `<data dir>/<name>/` beside it, writes
`MANIFEST.json` (the sorted relative file list and its sha256) and checks the result.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from .integrity import Problem, VerifyReport, verify
from .registry import DataLayoutError, DownloadError, resolve_data_dir, spec

__all__ = ['KAGGLE_HOST', 'TOKEN_HELP', 'MANIFEST_FILE', 'kaggle_json_path', 'kaggle_credentials',
           'kaggle_reachable', 'download', 'install_from_zip', 'install_from_folder', 'release_folder',
           'KAGGLE_INPUT', 'link_kaggle_inputs', 'file_manifest', 'file_sha256', 'changed_files', 'verify_with_manifest',
           'MAX_UNPACK_RATIO', 'check_unpacked_size']

KAGGLE_HOST = ("www.kaggle.com", 443)  # what the reachability check connects to before kagglehub runs
MANIFEST_FILE = "MANIFEST.json"  # written by the installer into the dataset's folder
TOKEN_HELP = (
    "To get a token: sign in on kaggle.com, open Settings > API (https://www.kaggle.com/settings/api) and "
    "either click \"Generate New Token\" and put the token in the environment variable KAGGLE_API_TOKEN "
    "(in Colab: a secret named KAGGLE_API_TOKEN), or, under \"Legacy API Credentials\", click "
    "\"Create Legacy API Key\" (formerly \"Create New Token\") and save the kaggle.json it downloads as "
    "~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY from it.")


# --- credentials and network -------------------------------------------------------------

def kaggle_json_path() -> Path:
    """Where kagglehub reads kaggle.json: `$KAGGLE_CONFIG_DIR/kaggle.json`, else `~/.kaggle/kaggle.json`.

    Used by tl.data.kaggle_credentials (book/data.md).
    """
    return Path(os.environ.get("KAGGLE_CONFIG_DIR") or Path.home() / ".kaggle") / "kaggle.json"


def _check_kaggle_json(path: Path) -> None:
    """Stop with one line naming `path` and what is wrong when it is not `{"username": ..., "key": ...}`."""
    fix = "download a new one from https://www.kaggle.com/settings/api (\"Create Legacy API Key\")"
    try:
        content = json.loads(path.read_text())
    except OSError as error:
        raise DownloadError(f"cannot read {path}: {error.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f"{error.msg} at line {error.lineno} column {error.colno}" if isinstance(
            error, json.JSONDecodeError) else "not UTF-8 text"
        raise DownloadError(f"{path} is not valid JSON ({where}); it should hold "
                            f"{{\"username\": \"...\", \"key\": \"...\"}}: {fix}") from None
    if not isinstance(content, dict):
        raise DownloadError(f"{path} holds a JSON {type(content).__name__}, not an object with "
                            f"\"username\" and \"key\": {fix}")
    for field in ("username", "key"):
        if not isinstance(content.get(field), str) or not content[field].strip():
            what = "has no" if field not in content else "has an empty or non-text"
            raise DownloadError(f"{path} {what} \"{field}\" entry: {fix}")


def _warn_if_readable_by_others(path: Path) -> None:
    """One warning line, as the Kaggle client gives, when others on this machine can read the key."""
    mode = path.stat().st_mode & 0o777
    if os.name != "nt" and mode & 0o077:
        print(f"warning: your Kaggle API key {path} is readable by other users on this machine (mode "
              f"{mode:o}); to fix this, run `chmod 600 {path}`", file=sys.stderr)


def kaggle_credentials() -> str | None:
    """Where kagglehub will find Kaggle credentials (a few words for messages), or None.

    Looked for in kagglehub's order: an API token (`KAGGLE_API_TOKEN`, `~/.kaggle/access_token`),
    `KAGGLE_USERNAME` and `KAGGLE_KEY`, kaggle.json (`kaggle_json_path`), Colab secrets
    (`KAGGLE_API_TOKEN`, or `KAGGLE_USERNAME` and `KAGGLE_KEY`). A malformed kaggle.json
    stops here with one line naming the file. Used by tl.data.download (book/data.md).
    """
    from kagglesdk.kaggle_env import get_access_token_from_env

    token, source = get_access_token_from_env()
    if token:
        return f"the API token ({source})"
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME and KAGGLE_KEY"
    path = kaggle_json_path()
    if path.exists():
        _check_kaggle_json(path)
        _warn_if_readable_by_others(path)
        return str(path)
    from kagglehub.config import get_colab_credentials
    from kagglehub.env import is_in_colab_notebook

    if is_in_colab_notebook() and get_colab_credentials() is not None:
        return "the Colab secrets"
    return None


def kaggle_reachable(timeout: float) -> bool:
    """Whether a TCP connection to `KAGGLE_HOST` opens within `timeout` seconds, name lookup included.

    The connect runs in a thread so that a stalled DNS lookup cannot hold the caller longer.
    Used by tl.data.download (book/data.md).
    """
    outcome: list[bool] = []

    def connect():
        try:
            with socket.create_connection(KAGGLE_HOST, timeout=timeout):
                outcome.append(True)
        except OSError:
            outcome.append(False)

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(outcome and outcome[0])


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _explain_kaggle_error(error: Exception, name: str, handle: str, credentials: str) -> str:
    """A kagglehub or network failure as one line that says what to do."""
    import requests
    from kagglehub.exceptions import UnauthenticatedError

    s = spec(name)
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, UnauthenticatedError) or status == 401:
        return (f"Kaggle refused the credentials from {credentials} (expired, revoked or mistyped?). "
                + TOKEN_HELP)
    if status == 403 and s.kaggle_kind == "competition":
        return (f"Kaggle answered 403 for the competition {s.kaggle_ref}: accept its rules with the same "
                f"account at https://www.kaggle.com/competitions/{s.kaggle_ref}/rules, then run again")
    if status == 404:
        return f"Kaggle has no {handle} (404): is the pinned version still published? See {s.kaggle_url}"
    if isinstance(error, requests.exceptions.RequestException):
        return (f"the download of {handle} failed on the network ({_one_line(error)[:200]}); run again, or "
                f"download the zip from {s.kaggle_url} and run `python -m tl_helpers.data install {name} ZIP`")
    return f"the download of {handle} failed: {type(error).__name__}: {_one_line(error)[:300]}"


# --- download ----------------------------------------------------------------------------

def _refuse_non_empty(target: Path, overwrite: bool) -> None:
    if target.exists() and any(target.iterdir()) and not overwrite:
        raise DownloadError(f"{target} already exists and is not empty; nothing was changed. Check it with "
                            f"`python -m tl_helpers.data verify {target.name}`, or pass overwrite=True "
                            "(--overwrite) to replace it.")


def download(name: str, data_dir: str | Path | None = None, timeout: float = 10.0,
             overwrite: bool = False) -> Path:
    """Download dataset `name` from Kaggle with kagglehub, install it in `<data dir>/<name>/`, check it.

    The version in the registry (`kaggle_version`) is downloaded; PCam is a competition
    (`kagglehub.competition_download`): accept its rules on the Kaggle page first. Stops at
    once with instructions when there are no credentials, and within `timeout` seconds when
    Kaggle cannot be reached; it never hangs. kagglehub shows its own progress bar.
    Taught in book/data.md (getting the datasets), not in a chapter.
    """
    s = spec(name)
    base = resolve_data_dir(data_dir)
    target = base / s.name
    _refuse_non_empty(target, overwrite)
    credentials = kaggle_credentials()
    if credentials is None:
        raise DownloadError("no Kaggle credentials found (looked for KAGGLE_API_TOKEN, ~/.kaggle/access_token, "
                            f"KAGGLE_USERNAME and KAGGLE_KEY, {kaggle_json_path()} and Colab secrets). "
                            + TOKEN_HELP)
    if not kaggle_reachable(timeout):
        raise DownloadError(
            f"cannot reach {KAGGLE_HOST[0]}:{KAGGLE_HOST[1]} (gave up within {timeout:g} s; no network here?). Download "
            f"on a connected machine, or get the zip from {s.kaggle_url} by hand and run "
            f"`python -m tl_helpers.data install {name} ZIP`.")
    import kagglehub

    if s.kaggle_kind == "competition":
        handle = s.kaggle_ref
        fetch = kagglehub.competition_download
    else:
        handle = s.kaggle_ref + (f"/versions/{s.kaggle_version}" if s.kaggle_version is not None else "")
        fetch = kagglehub.dataset_download
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{s.name}.download-", dir=base) as tmp:
        try:
            # In Colab or on Kaggle, kagglehub may answer with a read-only mounted copy instead of `tmp`.
            folder = Path(fetch(handle, output_dir=tmp))
        except Exception as error:  # kagglehub raises many kinds; each becomes one line
            raise DownloadError(_explain_kaggle_error(error, name, handle, credentials)) from error
        origin = f"kaggle {s.kaggle_kind} {handle}"
        return install_from_folder(name, folder, data_dir, overwrite=overwrite, origin=origin,
                                   move=Path(tmp) in [folder, *folder.parents])


# --- install -----------------------------------------------------------------------------

# What to take from each Kaggle release: (entries that must be there, entries taken if there).
# The releases hold duplicate copies (brain_tumor_dataset/, lgg-mri-segmentation/, chest_xray/chest_xray/).
_RELEASE_CONTENT = {
    "brain_mri_yes_no": (("yes", "no"), ()),
    "brain_tumor_mri_4class": (("Training",), ("Testing",)),
    "chest_xray": (("train",), ("val", "test")),
    "lgg_mri_segmentation": (("kaggle_3m",), ()),
    "pcam": (("train", "train_labels.csv"), ("test", "sample_submission.csv")),
}


def install_from_zip(name: str, zip_path: str | Path, data_dir: str | Path | None = None,
                     overwrite: bool = False) -> Path:
    """Unpack a Kaggle zip of dataset `name` into `<data dir>/<name>/` in the expected layout.

    A file that is not a zip stops with one line naming it. Unpacks beside the target, then
    goes through `install_from_folder`. Taught in book/data.md (getting the datasets), not in a chapter.
    """
    zip_path = Path(zip_path)
    s = spec(name)
    base = resolve_data_dir(data_dir)
    _refuse_non_empty(base / s.name, overwrite)
    if not zip_path.is_file():
        raise DownloadError(f"{zip_path} does not exist (or is not a file); download the zip from {s.kaggle_url}")
    if not zipfile.is_zipfile(zip_path):
        raise DownloadError(f"{zip_path} is not a zip file ({zip_path.stat().st_size} bytes); "
                            f"download the dataset's zip from {s.kaggle_url}")
    base.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        check_unpacked_size(zip_path, sum(entry.file_size for entry in archive.infolist()), base)
    with tempfile.TemporaryDirectory(prefix=f".{s.name}.unzip-", dir=base) as tmp:
        try:
            with zipfile.ZipFile(zip_path) as archive:
                archive.extractall(tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as error:
            raise DownloadError(f"{zip_path} could not be unpacked: {_one_line(error)}") from error
        return install_from_folder(name, Path(tmp), data_dir, overwrite=overwrite, origin=f"zip {zip_path.name}",
                                   move=True)


def release_folder(name: str, folder: str | Path, origin: str | None = None) -> Path:
    """The shallowest folder under `folder` (itself included) holding all of dataset `name`'s
    entries (a Kaggle release holds duplicate copies; the shallowest is taken). DataLayoutError
    naming `origin` (default the folder) when none does. Used by tl.data.install_from_folder
    and tl.data.link_kaggle_inputs.
    """
    folder = Path(folder)
    required, _ = _RELEASE_CONTENT[name]
    candidates = sorted(
        (p for p in [folder, *folder.rglob("*")] if p.is_dir() and "__MACOSX" not in p.parts
         and all((p / entry).exists() for entry in required)),
        key=lambda p: len(p.parts))
    if not candidates:
        raise DataLayoutError(f"{origin or folder} does not hold {' and '.join(required)} in any folder; "
                              f"is it the release of {spec(name).kaggle_url}?")
    return candidates[0]


KAGGLE_INPUT = "/kaggle/input"  # where Kaggle Notebooks mount the datasets added to a notebook


def link_kaggle_inputs(input_root: str | Path = KAGGLE_INPUT, data_dir: str | Path | None = None) -> dict:
    """On Kaggle Notebooks: make the datasets mounted at `<input_root>/<slug>/` the book's datasets.

    Each dataset of the registry whose Kaggle slug (the last part of its `kaggle_ref`, or the
    competition's name) is mounted becomes `<data dir>/<name>/`: a folder of links to the
    release's entries (`release_folder`), nothing copied, the read-only mount untouched. A
    dataset folder already there is left alone. Returns {name: folder} of the linked ones.
    Used by tl.notebook.setup (on Kaggle).
    """
    from .registry import DATASETS

    input_root, base = Path(input_root), resolve_data_dir(data_dir)
    linked = {}
    for name, s in DATASETS.items():
        mount = input_root / s.kaggle_ref.split("/")[-1]
        target = base / s.name
        if not mount.is_dir():
            continue
        if target.exists() and not all(p.is_symlink() for p in target.iterdir()):
            print(f"{name}: {target} is already there (not links to {mount}); left as it is")
            continue
        release = release_folder(name, mount, origin=f"the Kaggle input {mount}")
        target.mkdir(parents=True, exist_ok=True)
        required, optional = _RELEASE_CONTENT[name]
        for entry in required + optional:
            link = target / entry
            if (release / entry).exists() and not link.is_symlink():
                link.symlink_to(release / entry, target_is_directory=(release / entry).is_dir())
        linked[name] = target
        print(f"{name}: {target} -> {release} (Kaggle input, read-only)")
    return linked


MAX_UNPACK_RATIO = 100  # unpacked / packed bytes; images barely compress, a zip bomb does


def check_unpacked_size(archive: Path, unpacked: int, destination: Path) -> None:
    """Stop before extracting when the archive would unpack to more than the free space at
    `destination`, or to more than MAX_UNPACK_RATIO times its own size (a zip bomb): one line.

    `unpacked` is the total the archive's entries declare. Used by tl.data.install_from_zip.
    """
    packed = max(Path(archive).stat().st_size, 1)
    if unpacked > MAX_UNPACK_RATIO * packed:
        raise DownloadError(f"{archive} would unpack to {unpacked / 2**20:.0f} MiB, {unpacked / packed:.0f} times its "
                            f"own size (the limit is {MAX_UNPACK_RATIO}x; image datasets barely compress): refused "
                            "as a possible zip bomb; nothing was extracted")
    free = shutil.disk_usage(destination).free
    if unpacked > free:
        raise DownloadError(f"{archive} would unpack to {unpacked / 2**20:.0f} MiB but {destination} has "
                            f"{free / 2**20:.0f} MiB free; nothing was extracted. Free some space or choose "
                            "another data directory (--data-dir)")


def install_from_folder(name: str, folder: str | Path, data_dir: str | Path | None = None,
                        overwrite: bool = False, origin: str | None = None, move: bool = False) -> Path:
    """Install dataset `name` from a downloaded or unpacked `folder` into `<data dir>/<name>/`.

    Takes the dataset's entries from the shallowest folder that holds them all (the Kaggle
    releases hold duplicate copies; one is kept), copies them (moves them with `move=True`)
    into a folder beside the target, writes MANIFEST.json, checks layout and counts, and only
    then renames it into place. Prints what it found. Used by tl.data.download and
    tl.data.install_from_zip (book/data.md).
    """
    s = spec(name)
    folder = Path(folder)
    target = resolve_data_dir(data_dir) / s.name
    _refuse_non_empty(target, overwrite)
    required, optional = _RELEASE_CONTENT[name]
    release = release_folder(name, folder, origin)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{s.name}.install-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for entry in required + optional:
            source = release / entry
            if not source.exists():
                continue
            if move:
                shutil.move(str(source), staging / entry)
            elif source.is_dir():
                shutil.copytree(source, staging / entry)
            else:
                shutil.copy2(source, staging / entry)
        manifest = file_manifest(staging)
        manifest.update({"dataset": name, "origin": origin or str(folder), "kaggle_ref": s.kaggle_ref,
                         "kaggle_version": s.kaggle_version})
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
        report = verify_with_manifest(name, staging, deep=False)
        if not report.ok:
            first = str(report.problems[0]).replace(str(staging) + os.sep, "")
            raise DataLayoutError(f"{origin or folder} is not in the expected layout ({len(report.problems)} "
                                  f"problem(s), the first: {first}); nothing was installed")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.root = target
    print(report)
    return target


# --- manifest ----------------------------------------------------------------------------

def file_sha256(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks. Used by tl.data.file_manifest."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_manifest(root: str | Path, contents: bool = True) -> dict:
    """The visible files under `root`: count, sorted relative paths, the sha256 of that list,
    and (with `contents`) each file's size and the sha256 of its bytes.

    The list's checksum says whether the same files are there; the per-file size and sha256
    say whether they still hold what was installed (a replaced or damaged file). MANIFEST.json
    itself and hidden files are left out. Written at install as `<dataset>/MANIFEST.json`.
    Used by tl.data.install_from_folder and tl.data.verify_with_manifest (book/data.md).
    """
    root = Path(root)
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        relative = Path(folder).relative_to(root)
        files += [(relative / n).as_posix() for n in names if not n.startswith(".")]
    files = sorted(f for f in files if f != MANIFEST_FILE)
    digest = hashlib.sha256("".join(f + "\n" for f in files).encode()).hexdigest()
    manifest = {"n_files": len(files), "sha256": digest, "files": files}
    if contents:
        manifest["contents"] = {f: [(root / f).stat().st_size, file_sha256(root / f)] for f in files}
    return manifest


def changed_files(root: Path, recorded: dict, deep: bool = True) -> list[str]:
    """Files of a recorded manifest whose size (always) or sha256 (when `deep`) differs now;
    files that are gone are left to the name check. Used by tl.data.verify_with_manifest."""
    changed = []
    for path, (size, digest) in sorted((recorded.get("contents") or {}).items()):
        file = root / path
        if file.is_file() and (file.stat().st_size != size or (deep and file_sha256(file) != digest)):
            changed.append(path)
    return changed


def _count_differences(name: str, counts: dict) -> list[str]:
    """How `counts` (from verify) differ from the registry's full_counts, one phrase per split/class."""
    full = spec(name).full_counts
    found = {("" if split == "all" else split): value for split, value in counts.items()}
    differences = []
    for split, expected in full.items():
        if not isinstance(expected, dict):  # lgg: {"patients": 110, "slices": 3929}
            if found.get(split) != expected:
                differences.append(f"{split} {found.get(split, 0)} of {expected}")
            continue
        here = found.get(split)
        if here is None:
            differences.append(f"{split or 'images'}/ absent ({sum(expected.values())} files in the release)")
            continue
        for cls, n in expected.items():
            if here.get(cls, 0) != n:
                differences.append(f"{split + '/' if split else ''}{cls} {here.get(cls, 0)} of {n}")
    return differences


def verify_with_manifest(name: str, root: str | Path | None = None, deep: bool = True,
                         progress: bool = False) -> VerifyReport:
    """`verify`, then the manifest: counts against the full release, and the file list's checksum.

    Counts below the release's are a note (a subset), as are files added since the install.
    Files listed in MANIFEST.json (written at install) but gone are problems, each with its
    path. Without MANIFEST.json the checksum is reported for comparing by hand.
    Used by `python -m tl_helpers.data verify` (book/data.md).
    """
    report = verify(name, root, deep=deep, progress=progress)
    s = spec(name)
    differences = _count_differences(name, report.counts)
    if differences:
        report.notes.append(f"against the full Kaggle release ({s.kaggle_ref}"
                            f"{f' version {s.kaggle_version}' if s.kaggle_version else ''}): "
                            + "; ".join(differences))
    else:
        report.notes.append("counts match the full Kaggle release")
    manifest = file_manifest(report.root, contents=False)
    recorded_path = report.root / MANIFEST_FILE
    line = f"manifest: {manifest['n_files']} files, sha256 of the sorted file list {manifest['sha256']}"
    if not recorded_path.is_file():
        report.notes.append(line + f" (no {MANIFEST_FILE}: not installed by tl_helpers, nothing to compare)")
        return report
    try:
        recorded = json.loads(recorded_path.read_text())
        recorded_files = set(recorded["files"])
    except (ValueError, KeyError, TypeError) as error:
        report.problems.append(Problem(str(recorded_path), f"unreadable manifest ({_one_line(error)}); "
                                       "reinstall the dataset, or delete the file"))
        return report
    changed = changed_files(report.root, recorded, deep=deep)
    for path in changed[:20]:
        report.problems.append(Problem(str(report.root / path), f"its {'size or sha256' if deep else 'size'} "
                                       f"differs from {MANIFEST_FILE}: the file was replaced or damaged since "
                                       "the install; reinstall the dataset"))
    if len(changed) > 20:
        report.problems.append(Problem(str(report.root), f"... and {len(changed) - 20} more files changed"))
    if "contents" not in recorded:
        report.notes.append(f"{MANIFEST_FILE} predates per-file checksums: names checked, contents not")
    if recorded.get("sha256") == manifest["sha256"]:
        report.notes.append(line + f" (matches {MANIFEST_FILE} of the install from {recorded.get('origin')})")
        return report
    current = set(manifest["files"])
    missing, added = sorted(recorded_files - current), sorted(current - recorded_files)
    for path in missing[:20]:
        report.problems.append(Problem(str(report.root / path), f"listed in {MANIFEST_FILE} but gone"))
    if len(missing) > 20:
        report.problems.append(Problem(str(report.root), f"... and {len(missing) - 20} more files gone"))
    if added:
        report.notes.append(f"{len(added)} file(s) added since the install, e.g. {', '.join(added[:3])}")
    report.notes.append(line + f" (differs from {MANIFEST_FILE}: {len(missing)} gone, {len(added)} added)")
    return report
