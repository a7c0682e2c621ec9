"""Write the generated parts of every chapter notebook: the setup cell and the Colab badge.

Both come from `tl_helpers.notebook` (setup_cell_source, colab_url), which reads the one
repository URL in `_config.yml`. The setup cell clones the tag of this version of the book,
`v<tl_helpers.__version__>` (`tl.notebook.book_ref`): after changing the version, run this
and publish that tag with the commit, or Colab and Kaggle readers cannot clone it. Run after
changing either; tests/test_notebook_skeleton.py fails while a notebook differs.

    .venv/bin/python scripts/notebook_setup.py
"""
import re
from pathlib import Path

import nbformat

import tl_helpers as tl

BADGE = re.compile(r"\[!\[Open in Colab\]\(https://colab\.research\.google\.com/assets/colab-badge\.svg\)\]\([^)]*\)")


def main() -> None:
    for path in sorted((tl.paths.project_root() / "notebooks").glob("[0-9]*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        badge = f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({tl.notebook.colab_url(path.stem)})"
        title = nb.cells[0]
        title.source = BADGE.sub(badge, title.source)
        setup = next(cell for cell in nb.cells if cell.cell_type == "code")
        changed = setup.source != tl.notebook.setup_cell_source()
        setup.source = tl.notebook.setup_cell_source()
        nbformat.write(nb, path)
        print(f"{path.name}: setup cell {'rewritten' if changed else 'unchanged'}")
    print(f"the setup cells clone {tl.notebook.book_ref()}: make sure that tag is published")


if __name__ == "__main__":
    main()
