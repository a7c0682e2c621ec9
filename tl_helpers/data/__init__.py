"""`tl.data`: the book's five datasets: what they are, where they live, whether they are intact.

Each dataset is described once, in `DATASETS`: its Kaggle slug, its on-disk layout and
the counts of the full Kaggle release. Around that:

- `locate(name)`: the dataset's folder, from a data-directory setting (argument, then the
  `TL_DATA_DIR` environment variable, then the project's `data/` folder);
- `verify(name)`: layout, counts and every image readable, each problem named with its path;
- `download(name)`: fetch from Kaggle with kagglehub and the reader's credentials (Colab, GPU
  runners), the version pinned in the registry; without credentials or network it stops at
  once with instructions;
- `install_from_zip(name, zip_path)` / `install_from_folder(name, folder)`: a Kaggle zip or
  downloaded folder into the expected layout, with a MANIFEST.json of its files;
- `verify_with_manifest(name)`: `verify` plus counts against the full release and the manifest;
- the same from a shell: `python -m tl_helpers.data list | download NAME | install NAME ZIP | verify NAME`;
- synthetic look-alikes in the same layouts: `tl.synthetic.synthesize(name, root)`;
- `load(name, synthetic=..., data_dir=..., seed=...)`: the one call a chapter makes: its
  data, verified, as a report whose `root` is the dataset's folder;
- `dataset_root(name, synthetic=...)`: the folder alone, unverified;
- tables (`class_folder_table`, `lgg_slice_table`, `pcam_table`) that turn a layout into a
  dataframe of paths and labels.
"""
from pathlib import Path

from .downloads import *  # noqa: F401,F403
from .downloads import __all__ as _download
from .registry import *  # noqa: F401,F403
from .registry import __all__ as _registry
from .tables import *  # noqa: F401,F403
from .tables import __all__ as _tables
from .integrity import *  # noqa: F401,F403
from .integrity import VerifyReport, require
from .integrity import __all__ as _verify
from .registry import dataset_root


def load(name: str, synthetic: bool, data_dir: str | Path | None = None, seed: int = 0,
         size: str = "smoke", deep: bool = True) -> VerifyReport:
    """Dataset `name` for a chapter: the synthetic look-alike or the real folder, verified.

    Returns the VerifyReport (print it for counts, sizes and notes); `report.root` is the
    dataset's folder. Stops with every problem listed, each with its path, when the data
    is missing or damaged. The chapters call it through `tl.notebook.load_data`, which also records it.
    """
    return require(name, dataset_root(name, synthetic, data_dir, seed=seed, size=size), deep=deep)


__all__ = ["load", *_registry, *_tables, *_verify, *_download]
