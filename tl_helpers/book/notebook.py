"""The first and last steps every chapter notebook takes, in one call each.

    card = tl.notebook.start(globals(), "01_xception_brain_tumor")
    ...
    tl.notebook.finish(card, OUTPUT_DIR, OVERWRITE)

`start` applies a profile named by $TL_PROFILE (when set), seeds every generator, makes
figures display compactly, and opens the run card. `finish` writes the card as JSON
(default `runs/<profile>/<notebook>.json`) and prints it.
"""
from __future__ import annotations

from pathlib import Path

from . import profiles, repro
from ..paths import project_root
from .runcard import RunCard


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


def start(namespace: dict, notebook: str) -> RunCard:
    """Apply $TL_PROFILE, seed everything from SEED, set up figures; return the run card."""
    profiles.apply_profile(namespace, notebook)
    seed = namespace.get("SEED", 0)
    repro.seed_everything(seed)
    show_figures_compactly()
    print(f"{notebook}: profile {namespace.get('PROFILE')}, seed {seed}, "
          f"synthetic data: {namespace.get('SYNTHETIC')}")
    return RunCard(notebook, namespace.get("PROFILE", "?"), seed=seed)


def finish(card: RunCard, output_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Save the run card (default runs/<profile>/) and print it; committed cards are kept."""
    path = card.save(output_dir or project_root() / "runs" / card.record["profile"], overwrite=overwrite)
    card.show()
    print(f"run card written to {path.name}")
    return path
