"""Run chapter notebooks headless with papermill, for a profile.

    python -m tl_helpers.workflow.runner --profile smoke                 # every notebook
    python -m tl_helpers.workflow.runner --profile cpu --data-dir ../shared/data notebooks/00_datasets.ipynb
    python -m tl_helpers.workflow.runner --refresh-sources   # update the outputs stored in notebooks/

Each executed notebook and its run card (`<stem>.json`, written by the notebook) go to an
output folder (default `runs/<profile>/`), never to `notebooks/`. A notebook runs in a
hidden folder beside them, and the pair replaces the previous one only when the run
succeeds; a failed run leaves the previous pair alone and its partial notebook as
`<stem>.FAILED.ipynb`. The run stops at the first failing cell and says which notebook and
which cell. Before anything runs, the runner checks the output folder can be written and
that a notebook on real data finds its datasets. Files committed to git (the reference
results under `results/`) are never replaced unless `--overwrite` is given.

The `-p` values are checked against the types in the notebook's parameters cell before any
kernel starts (an int wants a whole number, a float any number, a bool true/false; a
parameter that is None takes anything). The kernel learns where its card and models go,
and whether --overwrite was given, from $TL_OUTPUT_DIR, $TL_MODEL_DIR and $TL_OVERWRITE
(tl.paths.output_dir, model_dir, overwrite_allowed), so a chapter's parameters cell holds
only what it computes with; its models go to the staging folder (`<staging>/models/`) and
join `<out>/models/` with the run card, or go with a failed run. The kernel imports this
checkout's `tl_helpers` (the project root comes first on its PYTHONPATH). SIGTERM or Ctrl-C
stops a run cleanly (with --jobs, every child runner too): the staging folder goes, the
previous result stays, one line says so (exit 130 or 143); the hidden staging folders of
runs that died (`.<stem>.running-<pid>/`) are removed by the next run; a full disk is one
line and leaves the previous notebook and card as they were.
"""
from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import errno
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from ..data.registry import DataError, locate
from ..paths import (MODEL_DIR_ENV, OUTPUT_DIR_ENV, OVERWRITE_ENV, PROGRESS_ENV, OutputWriteError, check_output_folder,
                     process_running, project_root)
from .profiles import PROFILE_ENV, available_profiles, load_profile, notebook_parameters, parameters_for
from .runcard import ResultOverwriteError, guard_overwrite, map_strings, unstaged


class NotebookFailed(RuntimeError):
    """A notebook stopped with an error; the message names the notebook and the cell.

    Used by the book machinery (runner, build).
    """


class UnknownParameterError(ValueError):
    """A parameter the notebook does not define (most likely misspelt); the run has not started.

    Used by the book machinery (runner).
    """


class ParameterTypeError(ValueError):
    """A `-p` value of the wrong type for the notebook's parameters cell; the run has not started.

    Used by the book machinery (runner).
    """


class RunInterrupted(KeyboardInterrupt):
    """SIGTERM (a CI timeout, `kill`, a closed terminal) or SIGINT (Ctrl-C) stopped the runner.

    A KeyboardInterrupt, so that papermill and the runner's `finally` clauses clean up as for
    Ctrl-C. Used by the book machinery (runner).
    """

    def __init__(self, signal_number: int):
        super().__init__(signal.Signals(signal_number).name)
        self.signal_number = signal_number


RUNNER_PARAMETERS = ("PROFILE", "OUTPUT_DIR", "OVERWRITE", "DATA_DIR")  # set by the runner itself


def default_notebooks() -> list[Path]:
    """The chapter notebooks, `notebooks/NN_*.ipynb`, in order. Used by the book machinery (runner)."""
    return sorted((project_root() / "notebooks").glob("[0-9]*.ipynb"))


def _parse_value(text: str):
    """`-p KEY=VALUE` values: JSON when they parse (numbers, true, null, lists), else strings."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _parameter_defaults(notebook: Path) -> dict:
    """The literal values assigned in a notebook's `parameters` cell (`SYNTHETIC = True`, ...)."""
    import nbformat

    defaults = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    try:
                        defaults[node.targets[0].id] = ast.literal_eval(node.value)
                    except ValueError:
                        continue
    return defaults


# tl.data.load("<name>", ...) or tl.notebook.load_data(card, "<name>", ...)
_LOAD_CALL = re.compile(r"""\btl\.(?:data\.load\(|notebook\.load_data\(\s*\w+\s*,)\s*["']([\w-]+)["']""")


def notebook_datasets(notebook: Path) -> list[str]:
    """The datasets a notebook loads: the names in its `tl.data.load("<name>", ...)` and
    `tl.notebook.load_data(card, "<name>", ...)` calls (read, not run).

    Used by the book machinery (runner.check_data).
    """
    import nbformat

    cells = nbformat.read(notebook, as_version=4).cells
    return sorted({name for cell in cells if cell.cell_type == "code" for name in _LOAD_CALL.findall(cell.source)})


def check_data(notebook: Path, parameters: dict) -> None:
    """Stop, before a notebook on real data (SYNTHETIC False) starts, when a dataset it loads is absent.

    The data directory is the notebook's DATA_DIR (relative to the notebook's folder, as the
    kernel sees it), else $TL_DATA_DIR, else `data/`; the error (a DataError, from
    `tl.data.locate`) names the folder looked for and how to get the dataset.
    Used by the book machinery (runner).
    """
    notebook = Path(notebook)
    defaults = _parameter_defaults(notebook)
    if parameters.get("SYNTHETIC", defaults.get("SYNTHETIC", True)):
        return
    data_dir = parameters.get("DATA_DIR", defaults.get("DATA_DIR"))
    if data_dir and not Path(data_dir).expanduser().is_absolute():
        data_dir = notebook.parent / data_dir
    for name in notebook_datasets(notebook):
        try:
            locate(name, data_dir)
        except DataError as error:
            raise type(error)(f"{notebook.name} runs on real data and cannot start (nothing was run): "
                              f"{error}") from None


def check_parameters(notebook: Path, parameters: dict, profile: str, overrides: dict | None = None) -> None:
    """Stop, before anything runs, when a parameter is not one the notebook defines.

    `parameters` are the profile's (`parameters_for`), `overrides` the `-p` ones. Allowed
    everywhere: the runner's own (`RUNNER_PARAMETERS`) and the profile's `defaults` that a
    chapter notebook defines. Anything else must be assigned in the notebook's `parameters`
    cell; papermill would only log "Passed unknown parameter" and run with the defaults.
    Used by the book machinery (runner).
    """
    notebook = Path(notebook)
    known = notebook_parameters(notebook)
    chapters = set().union(*(notebook_parameters(n) for n in default_notebooks()))
    shared = set(RUNNER_PARAMETERS) | (set(load_profile(profile).get("defaults") or {}) & chapters)
    sources = {name: f"profiles/{profile}.yml" for name in parameters}
    sources.update({name: "-p" for name in overrides or {}})
    lines = []
    for name in sorted(set(sources) - known - shared):
        close = difflib.get_close_matches(name, sorted(known), n=3)
        hint = f"did you mean {' or '.join(close)}?" if close else "no parameter of it comes close"
        lines.append(f"unknown parameter {name} (from {sources[name]}) for {notebook.name}: {hint}")
    if lines:
        raise UnknownParameterError(
            "\n".join(lines) + f"\nNothing was run. The parameters cell of {notebook.name} defines: "
            + (", ".join(sorted(known)) or "nothing (it has no cell tagged `parameters`)"))


_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list "
               "(JSON, e.g. [1, 2])", dict: "a mapping (JSON, e.g. {\"a\": 1})", tuple: "a list (JSON, e.g. [1, 2])"}


def _fits(value, default) -> bool:
    """Whether a `-p` value may replace `default`: the same type; an int for a float; anything for None."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, list)
    return isinstance(value, type(default))


def check_parameter_types(notebook: Path, overrides: dict) -> None:
    """Stop, before any kernel starts, when a `-p` value's type differs from the notebook's default.

    The defaults are the literals of the `parameters` cell (read with `ast`, not run):
    `IMAGE_SIZE = 224` wants a whole number, `LR = 1e-3` any number, `SYNTHETIC = True`
    true or false, a string text, a list a JSON list; a parameter whose default is None (or
    not a literal) takes any value. Raises ParameterTypeError naming each bad value.
    Used by the book machinery (runner).
    """
    notebook = Path(notebook)
    defaults = _parameter_defaults(notebook)
    lines = []
    for name, value in (overrides or {}).items():
        if name in defaults and not _fits(value, defaults[name]):
            default = defaults[name]
            lines.append(f"-p {name}={json.dumps(value) if not isinstance(value, str) else value}: {name} is "
                         f"{type(default).__name__} in the parameters cell of {notebook.name} "
                         f"({name} = {default!r}); give {_TYPE_WORDS.get(type(default), type(default).__name__)}, "
                         f"e.g. -p {name}={json.dumps(default)}")
    if lines:
        raise ParameterTypeError("\n".join(lines) + "\nNothing was run.")


def remove_dead_staging(out_dir: Path, stem: str) -> list[Path]:
    """Delete the hidden staging folders `.<stem>.running-<pid>/` in `out_dir` of runs no longer alive.

    A run killed outright (SIGKILL, a power cut) cannot clean up; the next run does. A live
    run's folder (another runner on the same output) is left alone. Returns what was removed.
    Used by the book machinery (runner).
    """
    removed = []
    for folder in Path(out_dir).glob(f".{stem}.running-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not process_running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _keep_models(staged: Path, out_dir: Path) -> None:
    """Move the models a successful run exported (into `staged`) to `<out_dir>/models/`, file by file.

    A model alone in the folder has its Hugging Face card as `README.md`; with several, each
    README is `<name>.README.md` (tl.hub_readme.settle_readmes), so that one chapter's export
    never replaces another's README (the runs of one profile share the folder).
    """
    from ..serve.hub_readme import settle_readmes

    if not staged.is_dir():
        return
    models = out_dir / "models"
    settle_readmes(models, keep_single=False)  # its README.md must not be replaced by the new one
    settle_readmes(staged, keep_single=False)
    for source in sorted(p for p in staged.rglob("*") if p.is_file()):
        target = models / source.relative_to(staged)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    settle_readmes(models)


@contextmanager
def stop_cleanly_on_signals():
    """Within the block, SIGTERM and SIGINT raise RunInterrupted in the main thread (then restored).

    So a CI timeout or `kill` unwinds like Ctrl-C: staging removed, previous results kept.
    Used by the book machinery (runner.main).
    """
    def interrupt(number, frame):
        raise RunInterrupted(number)

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def other_tl_helpers(root: Path) -> str | None:
    """A line saying so when `import tl_helpers` here resolves outside the project root `root`, else None.

    The runner's kernels are given `root` first on their PYTHONPATH (`kernel_pythonpath`), so
    they import this checkout's copy whatever is installed. Used by the book machinery (runner).
    """
    import tl_helpers

    found = Path(tl_helpers.__file__).resolve().parent.parent
    if found == Path(root).resolve():
        return None
    return (f"note: this Python imports tl_helpers from {found}, not from the project {root}; the notebooks' "
            f"kernels are given {root} first (PYTHONPATH), so they use the project's copy")


@contextmanager
def kernel_environment(name: str, value: str | None):
    """$`name` set to `value` while a kernel starts (it inherits this process's environment),
    then restored; a `value` of None leaves it as it is. Used by the runner."""
    before = os.environ.get(name)
    if value:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def kernel_profile(profile: str | None):
    """$TL_PROFILE set to `profile` while a kernel starts.

    The kernel's `tl.notebook.start` then sees the profile papermill injected confirmed and
    changes nothing, so the injected values stand, `-p` overrides included, whatever
    $TL_PROFILE the caller's shell holds. Used by the book machinery (runner.run_notebook).
    """
    return kernel_environment(PROFILE_ENV, profile)


def kernel_without_progress_bars():
    """$TL_PROGRESS = "0" while a kernel starts: `tl.paths.progress` draws no bars there, so an
    executed notebook keeps none in its outputs (the log shows a line per epoch instead).
    Used by the book machinery (runner.run_notebook, refresh_sources)."""
    return kernel_environment(PROGRESS_ENV, "0")


@contextmanager
def kernel_pythonpath(root: Path):
    """Within the block, $PYTHONPATH starts with the project root, so the kernels papermill starts
    (they inherit this environment) import the checkout's own tl_helpers. Used by the runner.
    """
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), *([before] if before else [])])
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def _relative_folder(value, root: Path):
    """A folder of the machine as the project-relative folder it ends up in (the hidden
    `.<stem>.running-<pid>` staging folder as its destination), None outside the project;
    any other value as it is."""
    if not isinstance(value, str) or not value.startswith("/"):
        return value
    folder = Path(unstaged(value))
    return folder.relative_to(root).as_posix() if folder.is_relative_to(root) else None


def relative_card_parameters(path: Path, root: Path) -> None:
    """Rewrite a run card (in place) so its `parameters` name folders as `relative_parameters`
    does: relative to the project `root`, None outside it (a reader's $TL_DATA_DIR); and so
    every path through the staging folder (an exported model) names where the file is kept.
    Used by the book machinery (runner.run_notebook)."""
    card = map_strings(json.loads(path.read_text()), unstaged)
    if isinstance(card.get("parameters"), dict):
        root = Path(root).resolve()
        card["parameters"] = {k: _relative_folder(v, root) for k, v in card["parameters"].items()}
    path.write_text(json.dumps(card, indent=1) + "\n")  # as RunCard writes it


def relative_parameters(path: Path, root: Path) -> None:
    """Rewrite an executed notebook (in place) without the folders of the machine that ran it.

    Its injected-parameters cell and papermill's metadata name folders relative to the project
    `root` (the hidden `.<stem>.running-<pid>` folder as the folder it is moved to), and any
    folder outside it, such as the reader's $TL_DATA_DIR, as None (the chapter's default);
    printed outputs are scrubbed alike (tl.runcard.scrub_paths). Sources other than the injected
    cell are left as they are, so `notebook_source_hash` does not change.
    Used by the book machinery (runner.run_notebook; once by hand on the runs in results/).
    """
    from .build import scrub_output

    root = Path(root).resolve()

    def relative(value):
        return _relative_folder(value, root)

    def setting(match):
        value = relative(match.group(2))
        if value is not None:
            return f"{match.group(1)} = {value!r}  # relative to the project"
        where = "($TL_DATA_DIR or the default)" if match.group(1) == "DATA_DIR" else "outside the project"
        return f"{match.group(1)} = None  # a folder of the machine that ran it {where}"

    nb = json.loads(path.read_text())
    for cell in nb.get("cells", []):
        if "injected-parameters" in cell.get("metadata", {}).get("tags", []):
            lines = cell["source"] if isinstance(cell["source"], list) else None
            source = re.sub(r'^([A-Z_][A-Z0-9_]*) = "(/[^"\n]*)"', setting, "".join(cell["source"]), flags=re.M)
            cell["source"] = source.splitlines(keepends=True) if lines is not None else source
        for output in cell.get("outputs", []):
            scrub_output(output, root)
    papermill = nb.get("metadata", {}).get("papermill", {})
    for key in ("input_path", "output_path"):
        papermill[key] = relative(papermill.get(key))
    papermill["parameters"] = {k: relative(v) for k, v in (papermill.get("parameters") or {}).items()}
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True))  # as papermill writes it


def run_notebook(notebook: Path, out_dir: Path, parameters: dict, progress: bool = True,
                 show_output: bool = False) -> Path:
    """Execute one notebook into `out_dir`; raise NotebookFailed naming the failing cell.

    With `show_output`, what the notebook prints (a line per training epoch, progress of long
    steps) is echoed to this process's stdout as it comes, so the runner's log shows training move.

    The notebook runs in a hidden folder in `out_dir` (its OUTPUT_DIR, where it writes its
    run card); only on success do the executed notebook and its card replace the previous
    pair. A failed or interrupted run leaves the previous pair as it was and its partial
    notebook as `<stem>.FAILED.ipynb`.
    Used by the book machinery (runner).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    output, card = out_dir / notebook.name, out_dir / f"{notebook.stem}.json"
    failed = out_dir / f"{notebook.stem}.FAILED.ipynb"
    staging = out_dir / f".{notebook.stem}.running-{os.getpid()}"
    remove_dead_staging(out_dir, notebook.stem)
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    # Where the run card and the models go, and --overwrite, reach the kernel as $TL_OUTPUT_DIR,
    # $TL_MODEL_DIR and $TL_OVERWRITE (tl.paths); a notebook that still declares OUTPUT_DIR,
    # MODEL_DIR or OVERWRITE in its parameters cell gets them as parameters as well.
    declared = notebook_parameters(notebook)
    models = parameters.get("MODEL_DIR") or str(staging / "models")  # kept or discarded with the card
    overwrite = bool(parameters.get("OVERWRITE", False))
    plumbing = {"OUTPUT_DIR": str(staging), "MODEL_DIR": models, "OVERWRITE": overwrite}
    parameters = {**{k: v for k, v in parameters.items() if k not in plumbing},
                  **{k: v for k, v in plumbing.items() if k in declared}}
    try:
        with kernel_profile(parameters.get("PROFILE")), kernel_pythonpath(project_root()), \
                kernel_without_progress_bars(), kernel_environment(OUTPUT_DIR_ENV, str(staging)), \
                kernel_environment(MODEL_DIR_ENV, models), \
                kernel_environment(OVERWRITE_ENV, "1" if overwrite else "0"):
            papermill.execute_notebook(str(notebook), str(staging / notebook.name), parameters=parameters,
                                       kernel_name="python3", progress_bar=progress, cwd=str(notebook.parent),
                                       stdout_file=sys.stdout if show_output else None,
                                       extra_arguments=QUIET_KERNEL)
        _keep_models(staging / "models", out_dir)
        if (staging / card.name).is_file():
            relative_card_parameters(staging / card.name, project_root())
            os.replace(staging / card.name, card)
        else:
            card.unlink(missing_ok=True)  # a card of an earlier run would not describe this one
        relative_parameters(staging / notebook.name, project_root())
        os.replace(staging / notebook.name, output)
        failed.unlink(missing_ok=True)
    except BaseException as error:  # a failing cell, a dead kernel, Ctrl-C, SIGTERM, a full disk
        full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
        if (staging / notebook.name).is_file() and not full:  # on a full disk it is truncated: not kept
            os.replace(staging / notebook.name, failed)
        if full:
            raise OutputWriteError(f"{notebook.name}: the disk under {out_dir} is full ({error.strerror}); the run "
                                   f"was stopped and its files removed, the previous notebook and card in "
                                   f"{out_dir} are as they were. Free some space or choose another --out.") from None
        if not isinstance(error, PapermillExecutionError):
            raise
        import nbformat

        # Name the cell as a reader counts it in the source notebook (1-based), which
        # papermill's index does not: it counts the parameters cell it injected.
        cells = nbformat.read(notebook, as_version=4).cells
        position = next((i + 1 for i, c in enumerate(cells) if c.source.strip() == error.source.strip()), None)
        first_line = (error.source.strip().splitlines() or [""])[0]
        where = f"cell {position} of {len(cells)}" if position else f"executed cell {error.cell_index}"
        raise NotebookFailed(
            f"{notebook.name} failed in {where} (starting `{first_line[:80]}`): {error.ename}: {error.evalue}\n"
            f"The partly executed notebook is at {failed}; the previous run in {out_dir} is left as it was."
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def run(profile: str, notebooks: list[Path] | None = None, out_dir: Path | None = None,
        data_dir: str | None = None, overrides: dict | None = None, overwrite: bool = False,
        progress: bool = True, jobs: int = 1, show_output: bool = False) -> list[Path]:
    """Run `notebooks` (default: all chapters) for `profile`; return the executed notebooks.

    `show_output` echoes what each notebook prints (epoch lines) as it runs (one at a time only).

    `jobs` > 1 runs that many notebooks at once, each in its own process (and, on a machine
    with several GPUs, each on its own GPU); the outputs are the same as one at a time.
    Used by the book machinery (runner, build, tests).
    """
    root = project_root()
    notebooks = [Path(n).resolve() for n in (notebooks or default_notebooks())]
    out_dir = (Path(out_dir) if out_dir else root / "runs" / profile).resolve()
    for notebook in notebooks:
        if not notebook.is_file():
            raise FileNotFoundError(f"notebook not found: {notebook}")
        if out_dir == notebook.parent:
            raise ValueError(f"the output folder {out_dir} is the notebooks' source folder; choose another")
    # Settle every notebook's parameters and check every destination before running
    # anything (or making a folder), so that an unknown profile, a misspelt parameter or a
    # refusal loses no work.
    planned = []
    for notebook in notebooks:
        parameters = parameters_for(profile, notebook.stem)  # an unknown profile stops here
        check_parameters(notebook, parameters, profile, overrides)
        check_parameter_types(notebook, overrides)
        parameters["OUTPUT_DIR"] = str(out_dir)
        parameters["OVERWRITE"] = overwrite
        if data_dir:
            parameters["DATA_DIR"] = str(Path(data_dir).resolve())
        parameters.update(overrides or {})
        check_data(notebook, parameters)
        planned.append((notebook, parameters))
    for notebook in notebooks:
        for target in (out_dir / notebook.name, out_dir / f"{notebook.stem}.json"):
            guard_overwrite(target, overwrite)
    check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    note = other_tl_helpers(root)
    if note:
        print(note)
    if jobs > 1 and len(planned) > 1:
        return _run_in_parallel(profile, planned, out_dir, data_dir, overrides, overwrite, jobs, progress)
    executed = []
    from tqdm.auto import tqdm

    for notebook, parameters in tqdm(planned, desc=f"profile {profile}", unit="notebook", disable=not progress):
        started = time.perf_counter()
        executed.append(run_notebook(notebook, out_dir, parameters, progress, show_output))
        card = out_dir / f"{notebook.stem}.json"
        metrics = json.loads(card.read_text()).get("metrics", {}) if card.is_file() else {}
        shown = ", ".join(f"{k}={v['value']:.4g}" for k, v in list(metrics.items())[:6])
        print(f"{notebook.name}: done in {time.perf_counter() - started:.0f} s -> {out_dir}"
              + (f" ({shown})" if shown else ""))
    return executed


def visible_gpus() -> list[str]:
    """The GPU ids this process may use: $CUDA_VISIBLE_DEVICES, else those `nvidia-smi -L` lists.

    Used by the book machinery (runner --jobs).
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return [g for g in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout
    return [str(i) for i, line in enumerate(listed.splitlines()) if line.startswith("GPU ")]


# The kernel's own log lines go to the runner's terminal: a warning on every start (TCP without
# encryption, on this local machine) and, when a signal stops the run, a traceback of the dying
# kernel's closed socket above the runner's one line. A failing cell is reported by the runner.
QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]


def _run_in_parallel(profile, planned, out_dir, data_dir, overrides, overwrite, jobs, progress) -> list[Path]:
    """`run` with `jobs` notebooks at a time: one runner process each, GPUs dealt out round-robin.

    Every failure is collected and reported together (the others still finish). When this
    process is stopped (SIGTERM, Ctrl-C), no further notebook starts and each running child
    gets SIGTERM and is waited for: it removes its staging folder and keeps the previous result.
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    gpus = visible_gpus()
    children, lock, stopping = [], threading.Lock(), threading.Event()

    def start(command, env):
        with lock:  # so no child starts after the children were signalled
            if stopping.is_set():
                return None
            child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            children.append(child)
            return child

    def stop_children():
        with lock:
            stopping.set()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            child.wait()

    def one(slot_and_notebook):
        slot, notebook = slot_and_notebook
        command = [sys.executable, "-m", "tl_helpers.workflow.runner", "--profile", profile, "--out", str(out_dir),
                   "--no-progress", str(notebook)]
        command += ["--data-dir", str(data_dir)] if data_dir else []
        command += ["--overwrite"] if overwrite else []
        for key, value in (overrides or {}).items():
            command += ["-p", f"{key}={json.dumps(value)}"]
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[slot % len(gpus)]
        started = time.perf_counter()
        child = start(command, env)
        if child is None:
            return notebook, None, 0.0
        _, stderr = child.communicate()
        return notebook, (child.returncode, stderr), time.perf_counter() - started

    failures, executed = [], []
    with ThreadPoolExecutor(jobs) as pool:
        work = [(i % jobs, notebook) for i, (notebook, _) in enumerate(planned)]
        try:
            for notebook, result, seconds in tqdm(pool.map(one, work), total=len(work), desc=f"profile {profile}",
                                                  unit="notebook", disable=not progress):
                returncode, stderr = result
                if returncode == 0:
                    executed.append(out_dir / notebook.name)
                    print(f"{notebook.name}: done in {seconds:.0f} s -> {out_dir}")
                else:
                    failures.append(f"{notebook.name}: {stderr.strip().splitlines()[-1] if stderr.strip() else 'failed'}")
        except BaseException:  # RunInterrupted (SIGTERM, Ctrl-C): the children stop too, before the pool waits
            pool.shutdown(wait=False, cancel_futures=True)
            stop_children()
            raise
    if failures:
        raise NotebookFailed(f"{len(failures)} of {len(planned)} notebooks failed:\n  " + "\n  ".join(failures))
    return executed


# TensorFlow's C++ runtime logs through absl straight to the kernel's stderr file descriptor,
# whatever TF_CPP_MIN_LOG_LEVEL says for its first lines (measured with TF 2.21): time-stamped
# lines that differ on every run. nbval's kernel does not see them, so they must not be stored.
_NATIVE_LOG_LINE = re.compile(r"^(?:[IWEF]\d{4} [\d:.]+ +\d+ \S+:\d+\] .*"
                              r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
                              r"|To enable the following instructions: .*|rebuild TensorFlow with .*)$")


def drop_native_log_lines(nb) -> int:
    """Remove C++ runtime log lines (TensorFlow/absl) from a notebook's stderr outputs; return how many.

    Used by the book machinery (runner --refresh-sources).
    """
    dropped = 0
    for cell in nb.cells:
        kept_outputs = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = output["text"].splitlines(keepends=True)
                kept = [line for line in lines if not _NATIVE_LOG_LINE.match(line.rstrip("\n"))]
                dropped += len(lines) - len(kept)
                if not kept:
                    continue
                output["text"] = "".join(kept)
            kept_outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = kept_outputs
    return dropped


def refresh_sources(notebooks: list[Path] | None = None) -> None:
    """Re-execute the source notebooks in place with their own (smoke) parameters.

    Their stored outputs are what `pytest --nbval` compares against, so this is only run
    on purpose (`--refresh-sources`) after a change that alters what a notebook prints.
    Used by the book machinery (runner --refresh-sources).
    """
    import os

    import nbformat
    from nbclient import NotebookClient

    if os.environ.get("TL_PROFILE", "smoke") != "smoke":
        raise ValueError("refresh the sources under the smoke profile: unset TL_PROFILE")
    for notebook in notebooks or default_notebooks():
        nb = nbformat.read(notebook, as_version=4)
        with kernel_without_progress_bars():  # as nbval's kernels (tests/conftest.py)
            NotebookClient(nb, kernel_name="python3", timeout=1800,
                           resources={"metadata": {"path": str(notebook.parent)}}).execute()
        drop_native_log_lines(nb)
        nbformat.write(nb, notebook)
        print(f"{notebook.name}: outputs refreshed")


def main(argv: list[str] | None = None) -> int:
    """The command line `python -m tl_helpers.workflow.runner` (see the module doc).

    Used by the book machinery (runner, build).
    """
    parser = argparse.ArgumentParser(prog="python -m tl_helpers.workflow.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all)")
    parser.add_argument("--profile", default="smoke", help=f"one of {', '.join(available_profiles())}")
    parser.add_argument("--out", type=Path, help="output folder (default runs/<profile>/)")
    parser.add_argument("--data-dir", help="data directory holding the datasets (default $TL_DATA_DIR, else data/)")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="KEY=VALUE",
                        help="override one notebook parameter (repeatable)")
    parser.add_argument("--overwrite", action="store_true", help="allow replacing committed results")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-output", action="store_true",
                        help="do not echo what the notebook prints (a line per training epoch) while it runs")
    parser.add_argument("--weights", choices=["none"], help="none: random backbone weights, a dry run at full "
                        "size where the profile's weights cannot be fetched (timing and memory; metrics meaningless)")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N notebooks at once (one process each; one GPU each when there are several)")
    parser.add_argument("--refresh-sources", action="store_true",
                        help="re-execute notebooks/ in place (smoke) to update the outputs nbval compares")
    args = parser.parse_args(argv)
    if args.refresh_sources:
        refresh_sources([Path(n).resolve() for n in args.notebooks] or None)
        return 0
    overrides = {}
    for item in args.parameter:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"-p expects KEY=VALUE, got {item!r}")
        overrides[key] = _parse_value(value)
    if args.weights == "none":
        os.environ["TL_WEIGHTS"] = "none"  # the kernels (and --jobs processes) inherit it
    try:
        with stop_cleanly_on_signals():
            run(args.profile, args.notebooks or None, args.out, args.data_dir, overrides, args.overwrite,
                progress=not args.no_progress, jobs=args.jobs, show_output=not args.no_output)
    except KeyboardInterrupt as stop:  # RunInterrupted (SIGTERM, SIGINT), or Ctrl-C before the handler
        number = getattr(stop, "signal_number", signal.SIGINT)
        print(f"stopped by {signal.Signals(number).name}: the unfinished run's staging folder was removed; the "
              "previous results are as they were", file=sys.stderr)
        return 128 + number
    except (NotebookFailed, ResultOverwriteError, OutputWriteError, DataError, FileNotFoundError,
            ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
