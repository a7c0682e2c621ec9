"""The first and last steps every chapter notebook takes, in one call each.

    import tl_helpers as tl; tl.notebook.setup()          # the setup cell (generated)
    card = tl.notebook.start(globals(), "01_xception_brain_tumor", frameworks=("keras",))
    ...
    tl.notebook.finish(card, OUTPUT_DIR, OVERWRITE)

`setup` makes a Colab runtime ready (the setup cell clones the book first); `start`
silences framework log noise, imports the chapter's frameworks, applies a profile named by
$TL_PROFILE (when set), seeds every generator, makes figures display compactly, and opens
the run card. `finish` writes the card as JSON (default `runs/<profile>/<notebook>.json`)
and prints it. The setup cell and the Colab badge are generated from the one repository
URL in `_config.yml` (`setup_cell_source`, `colab_url`; `scripts/notebook_setup.py`).
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

from ..paths import project_root, runs_dir
from . import profiles, repro
from .runcard import RunCard

COLAB_BOOK_DIR = "/content/book"  # where the setup cell clones the book in Colab
COLAB_REQUIREMENTS = "requirements-colab.txt"


def repository_url() -> str:
    """The book's repository URL, from `_config.yml` (`repository.url`): the one place it is kept."""
    config = yaml.safe_load((project_root() / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


def colab_url(notebook: str) -> str:
    """The "Open in Colab" address of `notebooks/<notebook>.ipynb` on the repository's main branch."""
    github = repository_url().removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/main/notebooks/{notebook}.ipynb"


def setup_cell_source() -> str:
    """The first code cell of every chapter (written into the notebooks by scripts/notebook_setup.py)."""
    return (
        "# Setup: in Colab, fetch the book (once) and what the runtime lacks; elsewhere just import.\n"
        "import os, subprocess, sys\n"
        "if \"google.colab\" in sys.modules:\n"
        f"    if not os.path.isdir(\"{COLAB_BOOK_DIR}\"):\n"
        f"        subprocess.run([\"git\", \"clone\", \"-q\", \"--depth\", \"1\", \"{repository_url()}\", \"{COLAB_BOOK_DIR}\"], check=True)\n"
        f"    sys.path.insert(0, \"{COLAB_BOOK_DIR}\")\n"
        "import tl_helpers as tl  # not found? run `pip install -e .` in the book's folder\n"
        "tl.notebook.setup()"
    )


def in_colab() -> bool:
    return "google.colab" in sys.modules


def setup(book_dir: str | Path | None = None) -> None:
    """Make the runtime ready for a chapter. In Colab: install what it lacks, once, and work
    from the book's notebooks/ folder (default `COLAB_BOOK_DIR`, where the setup cell cloned
    the book); elsewhere (an installed checkout) nothing to do. Used by every chapter (the setup cell)."""
    if not in_colab():
        return
    book_dir = Path(book_dir or COLAB_BOOK_DIR)
    stamp = book_dir / ".colab-installed"
    if not stamp.is_file():  # a re-run of the cell skips the install
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", str(book_dir / COLAB_REQUIREMENTS),
                        "-e", str(book_dir)], check=True)
        stamp.write_text("installed\n")
    os.chdir(book_dir / "notebooks")


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


def show_figures_compactly(dpi: int = 80) -> None:
    """Show matplotlib figures in Jupyter as JPEG at a modest dpi.

    Sample grids of noisy medical images compress badly as PNG (hundreds of KB each); as
    JPEG they stay small, and so do the executed notebooks the book is built from. Also
    makes figures built without pyplot (as `tl_helpers.plotting` does) display at all.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return
    import matplotlib
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    matplotlib.rcParams["figure.dpi"] = dpi
    matplotlib.rcParams["savefig.dpi"] = dpi
    set_matplotlib_formats("jpeg", bbox_inches="tight")


def start(namespace: dict, notebook: str, frameworks: tuple[str, ...] = ()) -> RunCard:
    """Quiet logs, import `frameworks` ("keras", "torch"), apply $TL_PROFILE, seed everything
    from SEED (frameworks included), set up figures; return the run card. Used by every chapter."""
    quiet_framework_logs()
    for framework in frameworks:
        import_module(framework)
    quiet_framework_logs()
    profiles.apply_profile(namespace, notebook)
    seed = namespace.get("SEED", 0)
    repro.seed_everything(seed)
    show_figures_compactly()
    print(f"{notebook}: profile {namespace.get('PROFILE')}, seed {seed}, "
          f"synthetic data: {namespace.get('SYNTHETIC')}")
    return RunCard(notebook, namespace.get("PROFILE", "?"), seed=seed)


def finish(card: RunCard, output_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Save the run card (default runs/<profile>/) and print it; committed cards are kept.
    Used by every chapter (its last code cell)."""
    path = card.save(output_dir or runs_dir(card.record["profile"]), overwrite=overwrite)
    card.show()
    print(f"run card written to {path.name}")
    return path
