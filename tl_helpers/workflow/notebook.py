"""The first and last steps every chapter notebook takes, in one call each.

    import tl_helpers as tl; tl.notebook.setup()          # the setup cell (generated)
    card = tl.notebook.start(globals(), "01_xception_brain_tumor", frameworks=("keras",))
    ...
    tl.notebook.finish(card)

`setup` makes a Colab runtime ready (the setup cell clones the book first); `start`
silences framework log noise, imports the chapter's frameworks, applies the profile the
parameters cell names (or $TL_PROFILE; a value edited by hand wins), seeds every generator, makes figures display compactly, and opens
the run card. `finish` writes the card as JSON (default `runs/<profile>/<notebook>.json`, or
where the runner says) and prints it. The setup cell and the Colab badge are generated from
the one repository URL in `_config.yml` (`setup_cell_source`, `colab_url`; `scripts/notebook_setup.py`).
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from importlib import import_module
from pathlib import Path

import yaml

from ..data.downloads import KAGGLE_INPUT
from ..data.registry import DATA_DIR_ENV
from ..paths import CACHE_DIR_ENV, RUNS_DIR_ENV, overwrite_allowed, project_root, show_book_warnings_briefly
from ..paths import output_dir as default_output_dir
from . import profiles, repro
from .runcard import RunCard

COLAB_BOOK_DIR = "/content/book"  # where the setup cell clones the book in Colab
KAGGLE_BOOK_DIR = "/kaggle/working/book"  # and on Kaggle Notebooks
COLAB_REQUIREMENTS = "requirements-colab.txt"
BOOK_REF_ENV = "TL_BOOK_REF"  # the git branch or tag the setup cell clones instead of this version's tag
DRIVE_ENV = "TL_DRIVE"  # "1": tl.notebook.setup() keeps data, cache and runs on Google Drive
DRIVE_MOUNT = "/content/drive"
DRIVE_FOLDER = "/content/drive/MyDrive/tl-medical-book"  # the book's folder on the reader's Drive


def repository_url() -> str:
    """The book's repository URL, from `_config.yml` (`repository.url`): the one place it is kept."""
    config = yaml.safe_load((project_root() / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def book_ref() -> str:
    """The git tag of this version of the book, `v<tl_helpers.__version__>`: what the setup cell
    clones, so a reader runs the code the chapter was written with. Used by the setup cell."""
    from .. import __version__

    return f"v{__version__}"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" address of `notebooks/<notebook>.ipynb` on the repository's main branch."""
    github = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/main/notebooks/{notebook}.ipynb"


def setup_cell_source() -> str:
    """The first code cell of every chapter (written into the notebooks by scripts/notebook_setup.py).

    In Colab or on Kaggle it clones this version of the book (`book_ref`; $TL_BOOK_REF names
    another branch or tag) once, then `tl.notebook.setup()` installs what the runtime lacks.
    """
    return (
        "import os, subprocess, sys  # in Colab or on Kaggle: fetch this version of the book\n"
        f"book = \"{COLAB_BOOK_DIR}\" if \"google.colab\" in sys.modules else \"{KAGGLE_BOOK_DIR}\"\n"
        f"if \"google.colab\" in sys.modules or os.path.isdir(\"{KAGGLE_INPUT}\"):\n"
        f"    url = \"{repository_url()}\"\n"
        f"    ref = os.environ.get(\"{BOOK_REF_ENV}\", \"{book_ref()}\")  # this version's tag, or another\n"
        "    if not os.path.isdir(book):\n"
        "        subprocess.run([\"git\", \"clone\", \"--depth=1\", \"-b\", ref, url, book], check=True)\n"
        "    sys.path.insert(0, book)\n"
        "import tl_helpers as tl  # not found? run `pip install -e .` in the book's folder\n"
        "tl.notebook.setup()  # in Colab, setup(drive=True) keeps data and models on Google Drive"
    )


def in_colab() -> bool:
    return "google.colab" in sys.modules


def on_kaggle(input_root: str | Path = KAGGLE_INPUT) -> bool:
    """True in a Kaggle Notebook, where the datasets added to it are mounted under `input_root`."""
    return Path(input_root).is_dir()


def setup(book_dir: str | Path | None = None, drive: bool | None = None, drive_folder: str | Path = DRIVE_FOLDER,
          kaggle_input: str | Path = KAGGLE_INPUT) -> None:
    """Make the runtime ready for a chapter. In Colab or on Kaggle: install what it lacks, once,
    and work from the book's notebooks/ folder (default `COLAB_BOOK_DIR` or `KAGGLE_BOOK_DIR`,
    where the setup cell cloned the book); elsewhere (an installed checkout) nothing to do.

    In Colab, `drive=True` (or $TL_DRIVE=1) mounts Google Drive and keeps data, cache, run
    cards and models in `drive_folder` (`use_drive`), so a reset runtime loses none of them.
    On Kaggle, the datasets added to the notebook become the book's data (`tl.data.link_kaggle_inputs`).
    Used by the dataset tour (chapter 0) and every chapter.
    """
    kaggle = not in_colab() and on_kaggle(kaggle_input)
    if not in_colab() and not kaggle:
        return
    book_dir = Path(book_dir or (KAGGLE_BOOK_DIR if kaggle else COLAB_BOOK_DIR))
    stamp = book_dir / ".colab-installed"
    if not stamp.is_file():  # a re-run of the cell skips the install
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(book_dir / COLAB_REQUIREMENTS),
                        "-e", str(book_dir)], check=True)
        stamp.write_text("installed\n")
    os.chdir(book_dir / "notebooks")
    if kaggle:
        from ..data.downloads import link_kaggle_inputs

        os.environ[DATA_DIR_ENV] = str(book_dir / "data")
        link_kaggle_inputs(kaggle_input, book_dir / "data")
    elif drive or (drive is None and os.environ.get(DRIVE_ENV) == "1"):
        use_drive(drive_folder)


def use_drive(folder: str | Path = DRIVE_FOLDER) -> dict:
    """Mount Google Drive (Colab asks the reader to allow it, once a session) and point the book's
    data ($TL_DATA_DIR), cache ($TL_CACHE_DIR) and runs with their models ($TL_RUNS_DIR) at
    `<folder>/data`, `cache` and `runs`, made when absent. Returns {variable: folder}.
    Used by tl.notebook.setup (drive=True).
    """
    from google.colab import drive  # only in Colab

    drive.mount(DRIVE_MOUNT)
    folder = Path(folder)
    folders = {DATA_DIR_ENV: folder / "data", CACHE_DIR_ENV: folder / "cache", RUNS_DIR_ENV: folder / "runs"}
    for variable, path in folders.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[variable] = str(path)
    print(f"Google Drive: data in {folders[DATA_DIR_ENV]}, cache in {folders[CACHE_DIR_ENV]}, "
          f"run cards and models in {folders[RUNS_DIR_ENV]}")
    return folders


def quiet_framework_logs() -> None:
    """Keep TensorFlow's C++ log lines, its Python warnings (retracing) and widget nags off the page.

    The C++ level must be set before TensorFlow is imported; in a notebook TensorFlow sets its
    Python logger to INFO on first use, so the level is fixed again once it is loaded.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm/timm asking for widgets
    if "tensorflow" in sys.modules and hasattr(sys.modules["tensorflow"], "get_logger"):
        sys.modules["tensorflow"].get_logger().setLevel(logging.ERROR)


FIGURE_DPI = 144   # pixels per inch of a figure's image: 1.5 device pixels per CSS pixel, sharp on laptops
DISPLAY_PPI = 96   # CSS pixels per inch a page shows it at: 12 pt text is 16 px, the body size
FIGURE_FONT_PT = 12


def figure_image(fig) -> tuple[bytes, dict, str]:
    """A figure as (image bytes, display metadata, mime type) for a notebook page.

    Rendered at FIGURE_DPI and displayed at DISPLAY_PPI (the width/height metadata), so text
    stays sharp and keeps its point size. Plots become a 256-colour PNG (small, exact); a
    figure that is mostly photographs (sample grids), where PNG would be over 1.5 times the
    size, becomes a quality-85 JPEG at the same resolution, so executed notebooks stay small.
    Used by tl.notebook.show_figures_compactly (every chapter).
    """
    import io

    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=FIGURE_DPI, bbox_inches="tight", facecolor="white")
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    png, jpeg = io.BytesIO(), io.BytesIO()
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(png, format="PNG", optimize=True)
    image.save(jpeg, format="JPEG", quality=85)
    width, height = (round(side * DISPLAY_PPI / FIGURE_DPI) for side in image.size)
    if len(png.getvalue()) <= 1.5 * len(jpeg.getvalue()):
        return png.getvalue(), {"width": width, "height": height}, "image/png"
    return jpeg.getvalue(), {"width": width, "height": height}, "image/jpeg"


def show_figures_compactly() -> None:
    """Show matplotlib figures in Jupyter sharp, readable and small (see `figure_image`).

    Text defaults to FIGURE_FONT_PT (the page's body size at DISPLAY_PPI). Also makes figures
    built without pyplot (as `tl_helpers.plotting` does) display at all.
    Used by tl.notebook.start (every chapter).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    matplotlib.rcParams["figure.dpi"] = DISPLAY_PPI
    matplotlib.rcParams["savefig.dpi"] = FIGURE_DPI
    matplotlib.rcParams["font.size"] = FIGURE_FONT_PT
    set_matplotlib_formats("png")  # registers the formatters; ours replace its PNG below
    formatters = shell.display_formatter.formatters
    formatters["image/jpeg"].pop(Figure, None)

    def as_mime(mime):
        def formatter(fig):  # the PNG formatter runs first and leaves its image for the JPEG one
            rendered = fig.__dict__.pop("_tl_image", None) or figure_image(fig)
            if mime == "image/png":
                fig._tl_image = rendered
            data, metadata, kind = rendered
            return (data, metadata) if kind == mime else None
        return formatter

    for mime in ("image/png", "image/jpeg"):
        formatters[mime].for_type(Figure, as_mime(mime))


def start(namespace: dict, notebook: str, frameworks: tuple[str, ...] = ()) -> RunCard:
    """Quiet logs, import `frameworks` ("keras", "torch"), apply the profile (`PROFILE` as the
    parameters cell sets it, or $TL_PROFILE; values edited by hand win: `profiles.apply_profile`),
    seed everything from SEED (frameworks included), set up figures; return the run card, which
    records every parameter in effect. Used by every chapter.

    Used by the dataset tour (chapter 0) and every chapter.
    """
    quiet_framework_logs()
    show_book_warnings_briefly()  # no helper path (this machine's folders) in saved outputs
    for framework in frameworks:
        import_module(framework)
    quiet_framework_logs()
    profiles.apply_profile(namespace, notebook)
    seed = namespace.get("SEED", 0)
    repro.seed_everything(seed)
    show_figures_compactly()
    print(f"{notebook}: profile {namespace.get('PROFILE')}, seed {seed}, "
          f"synthetic data: {namespace.get('SYNTHETIC')}")
    return RunCard(notebook, namespace.get("PROFILE", "?"), seed=seed,
                   parameters=profiles.parameters_in_effect(namespace, notebook))


def load_data(card: RunCard, name: str, synthetic: bool, data_dir: str | Path | None = None,
              seed: int = 0):
    """Find dataset `name` (`tl.data.load`: the real files, else synthetic look-alikes), record
    where it came from and its counts on the run card, print what was found; the report.
    Used by the dataset tour (chapter 0) and every chapter.
    """
    from .. import data

    report = data.load(name, synthetic=synthetic, data_dir=data_dir, seed=seed)
    card.data(name, report.source, counts=report.counts)
    print(report)
    return report


def finish(card: RunCard, output_dir: str | Path | None = None, overwrite: bool | None = None) -> Path:
    """Save the run card and print it; committed cards are kept.

    output_dir: default the run's (tl.paths.output_dir: the runner's staging folder, else
        runs/<profile>/). overwrite: may a committed card be replaced; default: the runner
        was given --overwrite (tl.paths.overwrite_allowed).

    Used by the dataset tour (chapter 0) and every chapter.
    """
    overwrite = overwrite_allowed() if overwrite is None else overwrite
    path = card.save(output_dir or default_output_dir(card.record["profile"]), overwrite=overwrite)
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(card)  # a table (RunCard._repr_html_); text where HTML is not shown
    else:
        card.show()
    print(f"run card written to {path.name}")
    return path


def current_version_key(card: RunCard) -> str:
    """The version key this run's card will carry (tl.runcard.version_key), known before it is saved.

    Used by other_seed_cards and spread_over_seeds (chapters 1, 2 and 4).
    """
    from .runcard import helpers_source_hash, notebook_source_hash, version_key

    record = card.record
    source = project_root() / "notebooks" / f"{record['notebook']}.ipynb"
    return version_key({**record, "source_sha256": notebook_source_hash(source) if source.is_file() else None,
                        "helpers_sha256": helpers_source_hash()})


def other_seed_cards(card: RunCard, folders: tuple[str, ...] = ("results", "runs"),
                     key: str | None = None) -> list[dict]:
    """Run cards of this chapter's version made with other seeds: the separate seed step.

    Looks for `<folder>/<profile>-seed*/<notebook>.json` under the project (the committed
    `results/` first, then `runs/`), keeps those made from this very version of the chapter
    (the same version key: profile, notebook source and helper package; another seed, one card
    per seed), and prints which it used and which it left out, and why. `key`: this run's
    version key when the caller has it already (current_version_key hashes the whole package).
    Used by chapters 1 and 4 (`spread_over_seeds`).
    """
    import json

    key = key or current_version_key(card)
    record = card.record
    found, seeds = [], {record.get("seed")}
    for folder in folders:
        for path in sorted((project_root() / folder).glob(f"{record['profile']}-seed*/{record['notebook']}.json")):
            other = json.loads(path.read_text())
            shown = path.relative_to(project_root())
            if other.get("seed") in seeds:
                print(f"left out ({'this run' if other.get('seed') == record.get('seed') else 'seed already used'}): "
                      f"{shown} (seed {other.get('seed')})")
            elif other.get("version_key") != key:
                print(f"left out (another version of the chapter): {shown} (seed {other.get('seed')})")
            else:
                print(f"using: {shown} (seed {other.get('seed')})")
                found.append(other)
                seeds.add(other.get("seed"))
    return found


def seed_table(pattern: str, names, what: str = "run cards"):
    """One row per committed run card that `pattern` matches: its seed and the metrics `names`.

    `pattern` is a glob under the project (e.g. `results/cpu-v*/seed*/01_x.json`); a metric a
    card lacks is NaN; the index is the seed, sorted; the column `version` names the folder
    under `results/` the card came from (`cpu-v1`). Prints which cards it read (as `what`).
    Used by chapter 1 (the previous versions' seeds, beside this version's).
    """
    import json

    import pandas as pd

    rows = []
    for path in sorted(project_root().glob(pattern)):
        record = json.loads(path.read_text())
        rows.append({"seed": record.get("seed"), "version": path.relative_to(project_root()).parts[1],
                     **{name: record.get("metrics", {}).get(name, {}).get("value") for name in names}})
        print(f"{what}: {path.relative_to(project_root())} (seed {record.get('seed')}, "
              f"commit {str(record.get('commit'))[:8]})")
    return (pd.DataFrame(rows, columns=["seed", "version", *names]).astype({n: float for n in names})
            .set_index("seed").sort_index())


def spread_over_seeds(card: RunCard, names, minimum: int = 2):
    """Mean and spread over seeds of the metrics `names`: this run and the other seeds' runs.

    The other runs come from `other_seed_cards`; with at least `minimum` of them the table
    (`tl.metrics.seed_spread`) is returned, its `mean ± sd` column noted on the run card and
    each mean and sd recorded as the metrics `<name>_seed_mean` and `<name>_seed_sd` (which
    the results page shows as a mean with its spread), otherwise None, after saying how to
    make them. Taught in chapter 1; used by chapters 2 and 4.
    """
    from ..evaluate.metrics import seed_spread

    key = current_version_key(card)
    others = other_seed_cards(card, key=key)
    if len(others) < minimum:
        print(f"{len(others)} run(s) of this version of the chapter with other seeds: at least {minimum} are needed "
              f"for a spread; run the seed step above first (runs/{card.record['profile']}-seed*/)")
        return None
    table = seed_spread([{**card.record, "version_key": key}, *others], names=names)
    for name, row in table.iterrows():
        card.metric(f"{name}_seed_mean", row["mean"], split=row["split"])
        card.metric(f"{name}_seed_sd", row["sd"], split=row["split"])
    card.note(f"spread over seeds {table.seeds.iloc[0]}: "
              + "; ".join(f"{name} {row['mean ± sd']}" for name, row in table.iterrows()))
    return table

