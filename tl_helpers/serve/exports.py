"""A chapter's model leaves the notebook: export it with its card, read it back, compare.

The last step of the evaluation protocol (tl.protocol): the exported files must give the
notebook's own predictions, or the card's numbers would describe another model.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..paths import model_dir as default_model_dir, relative_to_project
from .model_cards import export_model, load_model


def model_folder(profile: str, model_dir: str | Path | None = None) -> Path:
    """Where a chapter exports its models: `model_dir` when given, else the run's
    (tl.paths.model_dir: the runner's, or `runs/<profile>/models/`).

    Used by chapter 3.
    """
    return Path(model_dir) if model_dir else default_model_dir(profile)


def export_and_check(model, card: dict, files: Sequence, expected: np.ndarray, columns=None,
                     segmenter=None, device: str | None = None, what: str = "test files",
                     run_card=None, model_dir: str | Path | None = None):
    """Export `model` with its model card, load it back from the files, and print the largest
    difference between its predictions on `files` and the notebook's own (`expected`).

    card: the model card's fields (tl.model_cards.export_model; `profile` is required).
    columns: which columns of predict_proba to compare (e.g. the positive class), default all.
    run_card: the chapter's run card; the model card then takes the run's profile and, when
        the run read one dataset, that dataset's source (`data_source`), unless `card` names them.
    model_dir: where the files go; default the run's (`model_folder`).
    Returns (card path, the loaded predictor). Taught in chapter 1; used by chapters 2, 3, 4 and 5.
    """
    if run_card is not None:
        datasets = list(run_card.record["data"].values())
        card = {"profile": run_card.record["profile"],
                **({"data_source": datasets[0]["source"]} if len(datasets) == 1 else {}), **card}
    card_path = export_model(model, model_folder(card["profile"], model_dir), card, segmenter=segmenter)
    predictor = load_model(card_path, device=device)
    again = predictor.predict_proba(list(files))
    if columns is not None:
        again = again[:, columns]
    difference = float(np.abs(np.asarray(again) - np.asarray(expected)).max())
    print(f"model card: {relative_to_project(card_path)}")
    print(f"loaded back from the files, on {len(files)} {what}: largest difference from the notebook's own "
          f"prediction {difference:.1e}")
    return card_path, predictor
