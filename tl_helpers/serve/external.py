"""An exported model on any labelled folder: the chapter's metrics, with 95% intervals.

    tl evaluate MODEL_CARD DATA_DIR [--out report.json] [--split NAME]    (or python -m tl_helpers.serve)
        [--n-boot 1000] [--seed 0] [--batch-size 32] [--device cuda|cpu] [--force] [--quiet]

The folder keeps its dataset's own layout, found with the tl.data tables:

- class folders (`<class>/<image>`, optionally under split folders such as `Training/`,
  `train/`): `tl.data.class_folder_table`; every folder must be one of the card's classes;
  a folder holding several splits needs one chosen (`--split NAME`, or give the split's
  folder): pooling a training and a test split would score the model on its training data;
- PCam (`train/<id>.<ext>` + `train_labels.csv`): `tl.data.pcam_table`; label 1 is the
  card's second class (the positive one);
- LGG (`kaggle_3m/TCGA_*/` with `*_N.tif` slices and `*_N_mask.tif` masks; DATA_DIR may be
  the folder holding `kaggle_3m/` or `kaggle_3m/` itself): `tl.data.lgg_slice_table`.

Metrics, at the card's threshold: binary cards `tl.metrics.binary_report`, multiclass cards
`tl.metrics.multiclass_report`; two-stage cards (chapter 4) the stage-1 report on "slice has
tumour" and the pipeline's Dice (stage 2 on flagged slices, empty masks elsewhere; scored
at the segmenter's input size, as the chapter does) per slice, on tumour slices and per
patient, each with a bootstrap that resamples whole patients (`tl.metrics.bootstrap_ci(...,
groups=patients)`), and per patient the volumetric (3-D) Dice over all its slices
(`tl.segmentation.volumetric_dice`, Buda et al.'s measure). A segmentation card is scored
on every slice the same way, without stage 1.

Bad input stops with an `EvaluationError` naming the file or folder: a layout not
recognised, a label or mask missing, a class the model does not know, a mask whose size
differs from its slice's, an unreadable image, a file in a class (or PCam `train/`) folder
that is not an image the book reads (`.webp`, `.gif`, notes): never dropped without a word.
The arguments and `--out` are checked before anything is read (`tl.paths.check_output_file`,
as predict does); exit status 0 done, 1 bad input, 2 bad arguments or output path.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.images import IMAGE_EXTENSIONS, ImageReadError, image_info, is_image_file, read_mask
from ..data.registry import DataError
from ..data.tables import class_folder_table, is_visible, lgg_slice_table, pcam_table
from ..paths import OutputWriteError, check_output_file
from ..evaluate.metrics import binary_report, bootstrap_ci, dice_estimates, multiclass_report, report_table
from .card_schema import MASK_TASKS
from .model_cards import ModelCardError, Predictor, load_model, read_card, to_jsonable
from .predict import PredictError, check_batch_size, positive_int

LAYOUTS = ("class_folders", "pcam", "lgg")
OUTPUT_HELP = ("\n\nOutput: the metrics with 95% intervals printed as a table, and a JSON report (--out) with "
               "card, data_dir, layout, task, examples, counts, threshold and metrics ({value, low, high} each). "
               "Probabilities are the model's own (the card's threshold was chosen on them).")
LAYOUT_HELP = ("class folders (<class>/<image>, optionally under split folders), PCam (train/ + train_labels.csv) "
               "or LGG (kaggle_3m/TCGA_*/ with *_mask.tif masks)")


class EvaluationError(ValueError):
    """A labelled folder that cannot be evaluated; the message names the file or folder.

    Used by tl.external.evaluate_folder (chapters 1 to 5, exported models).
    """


# --- the folder's layout ----------------------------------------------------------------------

def _lgg_base(root: Path) -> Path | None:
    """The folder holding kaggle_3m/ with patient folders, or None."""
    for base in (root, root.parent):
        folder = base / "kaggle_3m"
        if folder.is_dir() and (base == root or root.name == "kaggle_3m") and any(
                p.is_dir() and p.name.startswith("TCGA_") for p in folder.iterdir()):
            return base
    return None


def detect_layout(data_dir: str | Path) -> str:
    """"pcam", "lgg" or "class_folders": which dataset layout `data_dir` has.

    Raises EvaluationError naming the folder when it has none of them. Used by
    tl.external.labelled_table.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise EvaluationError(f"data folder not found: {root}")
    if (root / "train_labels.csv").is_file() and (root / "train").is_dir():
        return "pcam"
    if _lgg_base(root) is not None:
        return "lgg"
    if any(p.is_dir() and p.name.startswith("TCGA_") for p in root.iterdir()):
        raise EvaluationError(f"{root} holds LGG patient folders (TCGA_*); put them in a folder named kaggle_3m/ "
                              "(the Kaggle layout) and give that folder or the one above it")
    if len(class_folder_table(root)):
        return "class_folders"
    raise EvaluationError(f"{root}: unknown layout (no labelled images found); expected {LAYOUT_HELP}")


def _refuse_unread_files(folders, root: Path) -> None:
    """Stop naming the visible files in `folders` that are not images the book reads (`.webp`, notes)."""
    unread = sorted(f for folder in folders for f in Path(folder).iterdir()
                    if f.is_file() and is_visible(f) and not is_image_file(f))
    if unread:
        shown = ", ".join(str(f) for f in unread[:3]) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
        raise EvaluationError(f"{root}: {len(unread)} file(s) are not images the book reads ({shown}); the "
                              f"endings read are {', '.join(IMAGE_EXTENSIONS)}. Convert them or move them out; "
                              "nothing is left out without a word")


def _class_folder_rows(root: Path, classes: list[str], split: str | None) -> pd.DataFrame:
    table = class_folder_table(root)
    splits = sorted(set(table["split"]))
    if split is not None:
        if split not in splits:
            raise EvaluationError(f"{root}: no split folder {split!r} (found: {splits})")
        table = table[table["split"] == split]
    elif len(splits) > 1:
        raise EvaluationError(f"{root} holds {len(splits)} splits ({', '.join(splits)}); evaluating them pooled "
                              f"would mix, say, training and test images. Choose one: --split {splits[-1]} "
                              f"(or give the folder {root / splits[-1]})")
    _refuse_unread_files({root / part / label for part, label in zip(table["split"], table["label"])}, root)
    for (part, label), rows in table.groupby(["split", "label"]):
        if label not in classes:
            raise EvaluationError(f"class folder {root / part / label} is not a class of the model "
                                  f"(its classes: {classes}); e.g. {rows['path'].iloc[0]}")
    return table.reset_index(drop=True)


def _pcam_rows(root: Path, classes: list[str]) -> pd.DataFrame:
    if len(classes) != 2:
        raise EvaluationError(f"{root} is a PCam folder (labels 0/1); the model has {len(classes)} classes {classes}")
    _refuse_unread_files([root / "train"], root)
    table = pcam_table(root)
    missing_file = table[table["path"] == ""]
    if len(missing_file):
        raise EvaluationError(f"{root / 'train_labels.csv'}: id {missing_file['id'].iloc[0]} has no image in "
                              f"{root / 'train'} ({len(missing_file)} such rows)")
    labelled = set(table["id"])
    unlabelled = sorted(f for f in (root / "train").iterdir()
                        if is_visible(f) and is_image_file(f) and f.stem not in labelled)
    if unlabelled:
        raise EvaluationError(f"label missing: {unlabelled[0]} has no row in {root / 'train_labels.csv'} "
                              f"({len(unlabelled)} such images)")
    bad = table[~table["label"].isin([0, 1])]
    if len(bad):
        raise EvaluationError(f"{root / 'train_labels.csv'}: label {bad['label'].iloc[0]!r} of {bad['path'].iloc[0]} "
                              "is not 0 or 1" + (" (label missing)" if pd.isna(bad["label"].iloc[0]) else ""))
    table["label"] = [classes[int(v)] for v in table["label"]]
    return table[["path", "label"]]


def _lgg_rows(root: Path) -> pd.DataFrame:
    table = lgg_slice_table(_lgg_base(root), with_tumour=False)  # masks checked first, has_tumour then
    if not len(table):
        raise EvaluationError(f"{root}: no LGG slices (TCGA_*/<patient>_<n>.tif) found")
    for image, mask in zip(table["image_path"], table["mask_path"]):
        if not Path(mask).is_file():
            raise EvaluationError(f"label missing: the mask of {image} ({Path(mask).name}) is not there")
        try:
            image_size, mask_size = ((info["width"], info["height"]) for info in map(image_info, (image, mask)))
        except OSError as error:
            raise EvaluationError(f"cannot read the header of {image} or its mask {mask}: {error}") from None
        if image_size != mask_size:
            raise EvaluationError(f"mask size mismatch: {mask} is {mask_size[0]}x{mask_size[1]}, its slice "
                                  f"{Path(image).name} {image_size[0]}x{image_size[1]}")
    return lgg_slice_table(_lgg_base(root), with_tumour=True).rename(columns={"image_path": "path"})


def labelled_table(data_dir: str | Path, card: dict, split: str | None = None) -> tuple[str, pd.DataFrame]:
    """(layout, table) of a labelled folder, checked against the model's card.

    Classification: columns path, label (class names). LGG: patient, slice, path, mask_path.
    Used by tl.external.evaluate_folder.
    """
    root = Path(data_dir)
    layout = detect_layout(root)
    segmenting = card["task"] in MASK_TASKS
    if segmenting != (layout == "lgg"):
        wanted = "LGG patient folders with masks" if segmenting else "class folders or PCam"
        raise EvaluationError(f"{root} has the {layout} layout; a {card['task']} model is evaluated on {wanted}")
    if layout == "class_folders":
        return layout, _class_folder_rows(root, list(card["classes"]), split)
    if layout == "pcam":
        return layout, _pcam_rows(root, list(card["classes"]))
    return layout, _lgg_rows(root)


# --- evaluation -------------------------------------------------------------------------------

def _in_batches(function, items: list, batch_size: int, progress: bool, desc: str):
    from tqdm import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="image", disable=not progress, file=sys.stderr)
    parts = []
    for start in range(0, len(items), batch_size):
        parts.append(function(items[start:start + batch_size]))
        bar.update(len(items[start:start + batch_size]))
    bar.close()
    return parts


def _segmentation_metrics(predictor: Predictor, table: pd.DataFrame, batch_size: int, n_boot: int, seed: int,
                          progress: bool) -> tuple[dict, pd.DataFrame]:
    segmenter = predictor.segmenter or predictor
    paths = table["path"].tolist()
    true_masks = np.stack([read_mask(m, segmenter.input_size)[..., 0] for m in table["mask_path"]])
    has_tumour = table["has_tumour"].to_numpy(bool)  # at the file's own size, as tl.data.lgg_slice_table
    metrics: dict = {}
    if predictor.segmenter is not None:
        results = _in_batches(lambda part: predictor.run_pipeline(part, batch_size), paths, batch_size, progress,
                              "evaluate")
        masks = np.concatenate([r.masks for r in results])
        p_positive = np.concatenate([r.p_positive for r in results])
        stage1 = binary_report(has_tumour.astype(int), p_positive, threshold=float(predictor.card["stage1_threshold"]),
                               n_boot=n_boot, seed=seed)
        metrics.update({f"stage1_{name}": value for name, value in stage1.items()})
    else:
        masks = np.concatenate(_in_batches(lambda part: predictor.predict_proba(part, batch_size), paths, batch_size,
                                           progress, "evaluate"))
    patients = table["patient"].to_numpy()
    dice_metrics, dice, _ = dice_estimates(patients, true_masks, masks >= segmenter.mask_threshold,
                                           n_boot=n_boot, seed=seed)
    metrics["dice_mean"] = dice_metrics.pop("dice_mean")
    if has_tumour.any():
        metrics["dice_tumour_slices_mean"] = bootstrap_ci(np.mean, dice[has_tumour], n_boot=n_boot, seed=seed,
                                                          groups=patients[has_tumour])
    metrics.update(dice_metrics)  # per patient and volumetric: intervals resample patients
    predictions = table.assign(dice=dice, predicted_pixels=(masks >= segmenter.mask_threshold)
                               .sum(axis=(1, 2)))
    if predictor.segmenter is not None:
        predictions["p_positive"] = p_positive
    return metrics, predictions


def evaluate_folder(model: str | Path | Predictor, data_dir: str | Path, split: str | None = None,
                    n_boot: int = 1000, seed: int = 0, batch_size: int = 32, device: str | None = None,
                    progress: bool = True) -> dict:
    """Evaluate an exported model on a labelled folder in its dataset's layout.

    Returns {"card", "data_dir", "layout", "task", "examples", "counts", "threshold",
    "metrics" (name -> Estimate, or class -> Estimate for per-class recall), "predictions"
    (a DataFrame, one row per example)}. `split` picks one split folder of a class-folder
    dataset (default: all). Used by chapters 1 to 5 (exported models) and the command line.
    """
    check_batch_size(batch_size)
    card = model.card if isinstance(model, Predictor) else read_card(model)[0]
    layout, table = labelled_table(data_dir, card, split)  # the folder is checked before the model loads
    predictor = model if isinstance(model, Predictor) else load_model(model, device=device)
    task = predictor.card["task"]
    if task in MASK_TASKS:
        metrics, predictions = _segmentation_metrics(predictor, table, batch_size, n_boot, seed, progress)
        counts = {"slices": int(len(table)), "patients": int(table["patient"].nunique()),
                  "tumour_slices": int(predictions["has_tumour"].sum())}
    else:
        paths = table["path"].tolist()
        probabilities = np.concatenate(_in_batches(lambda part: predictor.predict_proba(part, batch_size), paths,
                                                   batch_size, progress, "evaluate"))
        predicted = predictor.labels_from_proba(probabilities)
        classes = predictor.classes
        if task == "binary":
            y_true = (table["label"] == classes[1]).astype(int).to_numpy()
            metrics = binary_report(y_true, probabilities[:, 1], threshold=float(predictor.threshold),
                                    n_boot=n_boot, seed=seed)
        else:
            metrics = multiclass_report(table["label"].tolist(), predicted, classes, n_boot=n_boot, seed=seed)
        predictions = table.assign(**{f"p_{c}": probabilities[:, i] for i, c in enumerate(classes)},
                                   predicted=predicted)
        counts = {str(k): int(v) for k, v in table["label"].value_counts().sort_index().items()}
    return {"card": str(predictor.card_path), "data_dir": str(data_dir), "layout": layout, "task": task,
            "examples": int(len(table)), "counts": counts, "threshold": predictor.threshold,
            "metrics": metrics, "predictions": predictions}


def result_json(result: dict) -> str:
    """The result of `evaluate_folder` as JSON (intervals as {value, low, high}; predictions left out).

    Used by the command line (`python -m tl_helpers.evaluate`).
    """
    return json.dumps(to_jsonable({k: v for k, v in result.items() if k != "predictions"}), indent=1,
                      allow_nan=False)


def result_table(result: dict) -> str:
    """The metrics of `evaluate_folder` as a printed table: value and 95% interval per row.

    Used by the command line (`python -m tl_helpers.evaluate`).
    """
    table = report_table(result["metrics"]).round(3)
    header = (f"{result['task']} model {Path(result['card']).name} on {result['data_dir']} "
              f"({result['layout']} layout): {result['examples']} examples {result['counts']}, "
              f"threshold {result['threshold']}")
    return header + "\n" + table.rename(columns={"low": "95% low", "high": "95% high"}).to_string()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's description); 0 on success, 1 on bad input, 2 on bad arguments.

    Used by `python -m tl_helpers.evaluate`.
    """
    parser = argparse.ArgumentParser(
        prog="tl evaluate", description=__doc__.split("\n\n", 1)[1] + OUTPUT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: tl evaluate runs/cpu/models/02_efficientnet_brain_tumor_4class_efficientnet_lite0_seed0"
               ".card.json data/brain_tumor_mri_4class --split Testing --out testing.json")
    parser.add_argument("card", help="the model card (<name>.card.json)")
    parser.add_argument("data_dir", help="a labelled folder: " + LAYOUT_HELP)
    parser.add_argument("--out", default=None, help="JSON report to write (default: <card name>_on_<folder>.json)")
    parser.add_argument("--split", default=None, help="class folders: evaluate this split folder only")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the intervals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", default=None, help="PyTorch device (default: cuda if available, else cpu)")
    parser.add_argument("--force", action="store_true", help="replace the report when it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)  # old spelling
    args = parser.parse_args(argv)
    out = Path(args.out or f"{Path(args.card).name.split('.')[0]}_on_{Path(args.data_dir).resolve().name}.json")
    try:
        check_output_file(out, [args.card, args.data_dir], force=args.force)
    except OutputWriteError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    try:
        result = evaluate_folder(args.card, args.data_dir, args.split, args.n_boot, args.seed, args.batch_size,
                                 args.device, progress=not args.quiet)
    except (EvaluationError, ModelCardError, ImageReadError, DataError, PredictError) as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(result_json(result) + "\n")
    except OSError as error:  # the disk filled up or the folder went away while evaluating
        print(f"error: cannot write the report {out}: {error.strerror or error}", file=sys.stderr)
        return 1
    print(result_table(result))
    print(f"report -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
