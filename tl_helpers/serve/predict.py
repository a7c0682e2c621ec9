"""Predictions of an exported model on image files or folders, from Python or a shell.

    tl predict MODEL_CARD PATHS... --out preds.csv      (or python -m tl_helpers.serve.predict)
        [--masks-dir DIR] [--batch-size 32] [--device cuda|cpu] [--skip-unreadable] [--uncalibrated]
        [--force] [--quiet]

PATHS are image files or folders, searched recursively for every format the datasets use
(JPEG, PNG, TIFF, BMP in any letter case; gray, RGB, RGBA, palette; 8- or 16-bit: all read
by tl.images). Hidden files and LGG mask files (`*_mask.*`) found in folders are skipped.

- A classifier's card (binary, multiclass) gives a CSV: `file`, one `p_<class>` column per
  class in the card's order, `predicted`, the class at the card's threshold (binary:
  P(positive) >= threshold; multiclass: the most probable class), and `temperature`: the
  card's temperature (fitted on validation) that calibrated the `p_` columns, empty where
  the card has none or `--uncalibrated` asked for the model's own probabilities. The
  threshold applies to the model's own probabilities, whichever the columns show.
- A two-stage card (chapter 4) runs stage 1 on every image and the segmenter on the
  flagged ones, and writes, per image, a mask PNG (0/255, the image's own size) and an
  overlay PNG (the mask in red on the image) into the masks folder, plus a CSV: `file`,
  `p_<positive>`, `flagged`, `tumour_pixels`, `tumour_fraction` (of the image's pixels),
  `mask_file`, `overlay_file`. A segmentation card does the same without stage 1.

PyTorch models run on the first CUDA GPU when there is one (else the CPU; `--device` to
choose); Keras models where their backend puts them. An unreadable file stops the run
with one line naming it (`--skip-unreadable`: a warning, and the file is left out).

The arguments and `--out` are checked before the model loads (`tl.paths.check_output_file`):
`--out` must not be a folder, lie below a file, be one of the inputs or sit where nothing
can be written, and an existing file is only replaced with `--force`; the masks folder
likewise (`check_masks_folder`: not inside an input folder, earlier masks only with
`--force`). Exit status: 0 done, 1 bad input (card, images), 2 bad arguments or output
path; every error is one line.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.images import IMAGE_EXTENSIONS, ImageReadError, is_image_file, read_image, resize_image
from ..paths import OutputWriteError, check_output_file, check_output_folder
from .card_schema import MASK_TASKS
from .model_cards import ModelCardError, Predictor, load_model, read_card

MASK_COLOUR = (255, 0, 0)
MASK_ALPHA = 0.4


class PredictError(ValueError):
    """Input that cannot be predicted on (a path that is missing or not an image); names the path.

    Used by tl.predict.predict_files (chapters 1 to 5, exported models).
    """


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1 (a batch size), else a one-line usage error.

    Used by the predict and evaluate commands (tl.predict, tl.external).
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value}")
    return value


def check_batch_size(batch_size) -> None:
    """Stop (ValueError) unless `batch_size` is a whole number >= 1; 0 or a negative one would
    predict nothing and say nothing. Used by tl.predict.predict_files and tl.external.evaluate_folder.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise PredictError(f"batch_size must be a whole number >= 1, got {batch_size!r}")


def _is_mask_file(path: Path) -> bool:
    return path.stem.lower().endswith("_mask")


def collect_images(paths: Sequence[str | Path]) -> list[tuple[Path, Path]]:
    """(file, name for outputs) of every image under `paths`, in order, each once.

    A file is taken as given (it must have an image ending); a folder is searched
    recursively, skipping hidden entries and mask files (`*_mask.<ext>`). The output name
    is the file's path below the folder, the folder's own name first.
    Used by tl.predict.predict_files.
    """
    found, seen = [], set()
    for given in map(Path, paths):
        if given.is_dir():
            files = sorted(f for f in given.rglob("*") if f.is_file() and is_image_file(f) and not _is_mask_file(f)
                           and not any(part.startswith(".") for part in f.relative_to(given).parts))
            items = [(f, Path(given.resolve().name) / f.relative_to(given)) for f in files]
        elif given.is_file():
            if not is_image_file(given):
                raise PredictError(f"{given} is not an image file (the endings read: {', '.join(IMAGE_EXTENSIONS)})")
            items = [(given, Path(given.name))]
        else:
            raise PredictError(f"not found: {given}")
        for file, name in items:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.append((file, name))
    return found


def overlay_mask(image: np.ndarray, mask: np.ndarray, colour=MASK_COLOUR, alpha: float = MASK_ALPHA) -> np.ndarray:
    """RGB uint8 image with the boolean mask blended in `colour` (alpha 0.4).

    Used by tl.predict.predict_files (two-stage and segmentation cards).
    """
    out = image.astype(np.float32).copy()
    out[mask] = (1 - alpha) * out[mask] + alpha * np.asarray(colour, np.float32)
    return np.round(out).astype(np.uint8)


def _unique_names(names: list[Path]) -> list[Path]:
    """Output names made unique by a numeric suffix where two inputs share one."""
    used, out = set(), []
    for name in names:
        candidate, index = name, 2
        while candidate in used:
            candidate, index = name.with_name(f"{name.stem}_{index}{name.suffix}"), index + 1
        used.add(candidate)
        out.append(candidate)
    return out


def _predict_batch(predictor: Predictor, files: list[Path], batch_size: int, skip_unreadable: bool):
    """The batch's outputs and the files they belong to (unreadable ones dropped when skipping)."""
    run = predictor.run_pipeline if predictor.segmenter is not None else predictor.predict_proba
    try:
        return run(files, batch_size), files
    except ImageReadError as error:
        if not skip_unreadable:
            raise
        kept = []
        for file in files:
            try:
                read_image(file)
                kept.append(file)
            except ImageReadError as bad:
                print(f"warning: skipped: {_one_line(bad)}", file=sys.stderr)
        if len(kept) == len(files):
            raise error
        return (run(kept, batch_size) if kept else None), kept


def default_masks_dir(out_csv: str | Path) -> Path:
    """Where mask PNGs go when no folder is given: `<out_csv stem>_masks/` beside the CSV.

    Used by tl.predict.predict_files and the predict command.
    """
    return Path(out_csv).with_name(Path(out_csv).stem + "_masks")


def check_masks_folder(masks_dir: str | Path, inputs: Sequence[str | Path] = (), force: bool = False) -> Path:
    """Stop before any work when mask PNGs cannot or must not be written into `masks_dir`; return it, absolute.

    Refused, each with one line (OutputWriteError): a place `tl.paths.check_output_folder`
    refuses (below a file, read-only); an input folder or a folder inside one (the next run
    would read the overlays as scans); a folder that already holds masks or overlays of an
    earlier run, unless `force`. Used by the predict command.
    """
    masks_dir = Path(masks_dir).expanduser().absolute()
    check_output_folder(masks_dir, choose="--masks-dir")
    for given in inputs:
        given = Path(given).expanduser().resolve()
        if given.is_dir() and masks_dir.resolve().is_relative_to(given):
            raise OutputWriteError(f"--masks-dir {masks_dir} is inside the input folder {given}: the next run "
                                   "would read the overlays as scans. Choose a folder outside the inputs.")
    earlier = [f for pattern in ("*_pred_mask.png", "*_overlay.png") for f in masks_dir.rglob(pattern)]
    if earlier and not force:
        raise OutputWriteError(f"--masks-dir {masks_dir} already holds {len(earlier)} mask or overlay files of "
                               "an earlier run; nothing was done. Pass --force to replace them, or choose "
                               "another folder.")
    return masks_dir


def _card_writes_masks(card: str | Path) -> bool:
    """Whether a card's model writes mask files (segmentation, two-stage), read without loading the model;
    False when the card cannot be read (loading it then says why)."""
    try:
        return read_card(card)[0]["task"] in MASK_TASKS
    except ModelCardError:
        return False


def _write_masks(predictor: Predictor, files, names, masks, masks_dir: Path) -> list[dict]:
    """Mask and overlay PNGs at each image's own size; one row of areas per image."""
    from PIL import Image

    rows = []
    for file, name, mask in zip(files, names, masks):
        image = read_image(file, channels=3)
        height, width = image.shape[:2]
        full = resize_image(mask.astype(np.float32), (height, width)) >= predictor.mask_threshold
        mask_file = masks_dir / name.parent / f"{name.stem}_pred_mask.png"
        overlay_file = masks_dir / name.parent / f"{name.stem}_overlay.png"
        mask_file.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(full.astype(np.uint8) * 255).save(mask_file)
        Image.fromarray(overlay_mask(image, full)).save(overlay_file)
        pixels = int(full.sum())
        rows.append({"tumour_pixels": pixels, "tumour_fraction": pixels / float(height * width),
                     "mask_file": str(mask_file), "overlay_file": str(overlay_file)})
    return rows


def predict_files(model: str | Path | Predictor, paths: Sequence[str | Path], out_csv: str | Path | None = None,
                  masks_dir: str | Path | None = None, batch_size: int = 32, device: str | None = None,
                  skip_unreadable: bool = False, progress: bool = True, calibrated: bool = True) -> pd.DataFrame:
    """Predict on the images under `paths` with an exported model; the table (also written to `out_csv`).

    `model`: a card path (or a loaded Predictor). Segmentation and two-stage cards write
    mask and overlay PNGs into `masks_dir` (default: `<out_csv stem>_masks/` beside the
    CSV). `calibrated`: the classifier's probabilities with the card's temperature (when it
    has one). See the module's description for the columns. Used by chapters 1 to 5
    (exported models) and the command line.
    """
    from tqdm import tqdm

    check_batch_size(batch_size)
    predictor = model if isinstance(model, Predictor) else load_model(model, device=device)
    items = collect_images(paths)
    if not items:
        raise PredictError(f"no image files under {', '.join(map(str, paths))}")
    segmenting = predictor.card["task"] in MASK_TASKS
    if segmenting:
        if masks_dir is None:
            if out_csv is None:
                raise PredictError("a segmentation model writes mask files: give masks_dir (or out_csv)")
            masks_dir = default_masks_dir(out_csv)
        masks_dir = Path(masks_dir)
    names = dict(zip([f for f, _ in items], _unique_names([n for _, n in items])))
    rows = []
    bar = tqdm(total=len(items), desc="predict", unit="image", disable=not progress, file=sys.stderr)
    for start in range(0, len(items), batch_size):
        files = [f for f, _ in items[start:start + batch_size]]
        outputs, files = _predict_batch(predictor, files, batch_size, skip_unreadable)
        bar.update(len(items[start:start + batch_size]))
        if outputs is None:
            continue
        if not segmenting:
            labels = predictor.labels_from_proba(outputs)
            temperature = predictor.temperature if calibrated else None
            shown = predictor.calibrate(outputs) if temperature is not None else outputs
            for file, p, label in zip(files, shown, labels):
                rows.append({"file": str(file), **{f"p_{c}": float(v) for c, v in zip(predictor.classes, p)},
                             "predicted": label, "temperature": temperature})
            continue
        if predictor.segmenter is not None:
            masks, extra = outputs.masks, [{f"p_{predictor.classes[1]}": float(p), "flagged": bool(f)}
                                           for p, f in zip(outputs.p_positive, outputs.flagged)]
        else:
            masks, extra = outputs, [{} for _ in files]
        areas = _write_masks(predictor, files, [names[f] for f in files], masks, masks_dir)
        rows.extend({"file": str(file), **more, **area} for file, more, area in zip(files, extra, areas))
    bar.close()
    table = pd.DataFrame(rows)
    if out_csv is not None:
        Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_csv, index=False)
    return table


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def main(argv: Sequence[str] | None = None) -> int:
    """The command line (see the module's description); 0 on success, 1 on bad input, 2 on bad arguments.

    Used by `python -m tl_helpers.serve.predict`.
    """
    parser = argparse.ArgumentParser(
        prog="tl predict", description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example: tl predict runs/cpu/models/05_pcam_efficientnet_lite0_seed0.card.json patches/ --out p.csv")
    parser.add_argument("card", help="the model card (<name>.card.json) written by tl.model_cards.export_model")
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--out", required=True, help="the CSV of predictions to write")
    parser.add_argument("--masks-dir", default=None,
                        help="segmentation / two-stage: folder for mask and overlay PNGs (default: <out>_masks/)")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--device", default=None, help="PyTorch device (default: cuda if available, else cpu)")
    parser.add_argument("--skip-unreadable", action="store_true", help="warn about unreadable files and go on")
    parser.add_argument("--uncalibrated", action="store_true",
                        help="the model's own probabilities, without the card's temperature")
    parser.add_argument("--force", action="store_true", help="replace --out (and earlier masks) when they exist")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--no-progress", dest="quiet", action="store_true", help=argparse.SUPPRESS)  # old spelling
    args = parser.parse_args(argv)
    try:
        check_output_file(args.out, [args.card, *args.paths], force=args.force)
        if args.masks_dir or _card_writes_masks(args.card):
            check_masks_folder(args.masks_dir or default_masks_dir(args.out), args.paths, force=args.force)
    except OutputWriteError as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 2
    try:
        table = predict_files(args.card, args.paths, args.out, args.masks_dir, args.batch_size, args.device,
                              args.skip_unreadable, progress=not args.quiet, calibrated=not args.uncalibrated)
    except (ModelCardError, PredictError, ImageReadError) as error:
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # the disk filled up or the folder went away while predicting
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return 1
    print(f"{len(table)} images -> {args.out}")
    if "temperature" in table and table["temperature"].notna().any():
        print(f"probabilities calibrated with the card's temperature {table['temperature'].iloc[0]:.4g} "
              "(fitted on validation); --uncalibrated for the model's own")
    elif "temperature" in table:
        print("probabilities: the model's own (uncalibrated: " +
              ("--uncalibrated" if args.uncalibrated else "the card has no temperature") + ")")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
