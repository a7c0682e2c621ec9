"""The model card as a `README.md` in the Hugging Face format, written beside the exported files.

A YAML header (license, library_name, pipeline_tag, tags, datasets, base_model, model-index
with the run's metrics, their 95% intervals and the test set they came from), then intended
use (teaching and research, not diagnosis), limitations taken from the card (test size,
near-duplicates, synthetic data, backbone against the article's), how to use the files
(with and without this package) and the dataset's licence and citation.
Used by tl.model_cards.export_model.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import yaml

from ..data.registry import DATASETS
from .card_schema import MASK_TASKS

LICENSE = "apache-2.0"  # the book's code and the weights it trains; the data keep their own terms (below)
BASE_MODELS = {"efficientnet_lite0": "timm/tf_efficientnet_lite0.in1k", "resnet50": "timm/resnet50.tv_in1k",
               "xception": "keras-io/xception (keras.applications ImageNet)",
               "efficientnetb3": "keras-io/efficientnetb3 (keras.applications ImageNet)"}
ARTICLE_BACKBONES = {1: "xception", 2: "efficientnetb3", 4: "resnet50", 5: "resnet50"}


def dataset_of(card: dict):
    """The registry entry (tl.data.DATASETS) the card's model was trained on, or None.

    The card's `dataset`, else a dataset named in `data_source`, else the chapter number the
    card's name starts with. Used by tl.hub_readme.readme_text.
    """
    if card.get("dataset") in DATASETS:
        return DATASETS[card["dataset"]]
    for spec in DATASETS.values():
        if spec.name in str(card.get("data_source") or ""):
            return spec
    prefix = str(card.get("name", "")).split("_")[0]
    for spec in DATASETS.values():
        if prefix.isdigit() and spec.chapter.split(":")[0].strip() == str(int(prefix)):
            return spec
    return None


def _metric_rows(metrics: dict | None, split: str) -> list[dict]:
    """model-index metrics: one row per estimate with its interval (per-class dicts flattened)."""
    rows = []
    for name, value in (metrics or {}).items():
        if isinstance(value, dict) and "value" in value:
            if value["value"] is None:
                continue
            interval = f" (95% CI {value['low']:.3f} to {value['high']:.3f})" if value.get("low") is not None else ""
            rows.append({"type": name, "value": round(float(value["value"]), 4), "name": f"{name}{interval}, {split}"})
        elif isinstance(value, dict):
            rows += _metric_rows({f"{name}_{key}": item for key, item in value.items()}, split)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            rows.append({"type": name, "value": round(float(value), 4), "name": f"{name}, {split}"})
    return rows


def readme_header(card: dict) -> dict:
    """The YAML header (a dict) of the card's README. Used by tl.hub_readme.readme_text."""
    spec = dataset_of(card)
    segmenting = card["task"] in MASK_TASKS
    split = card.get("metrics_on") or "test split"
    header = {"license": LICENSE, "library_name": "keras" if card["framework"] == "keras" else "pytorch",
              "pipeline_tag": "image-segmentation" if segmenting else "image-classification",
              "tags": ["medical-imaging", "transfer-learning", "teaching", card["framework"]]
              + (["onnx"] if card.get("onnx_file") else []),
              "datasets": [spec.kaggle_ref] if spec else [],
              }
    if card["preprocessing"] in BASE_MODELS:
        header["base_model"] = BASE_MODELS[card["preprocessing"]]
    header["model-index"] = [{"name": card["name"], "results": [{
        "task": {"type": header["pipeline_tag"]},
        "dataset": {"name": spec.title if spec else str(card.get("data_source")), "type": spec.kaggle_ref if spec
                    else "unknown", "split": split},
        "metrics": _metric_rows(card.get("metrics"), split)}]}]
    return header


def _limitations(card: dict, spec) -> list[str]:
    lines = []
    if card.get("metrics_on"):
        lines.append(f"The metrics come from one {card['metrics_on']}: a small test set gives wide intervals; read "
                     "the 95% intervals, not the point values.")
    if "SYNTHETIC" in str(card.get("data_source") or "").upper():
        lines.append("Trained and tested on synthetic look-alike images made by tl_helpers (a smoke run): the "
                     "numbers say the code runs, nothing about medical images.")
    if card.get("note"):
        lines.append(f"From the chapter: {card['note']}.")
    chapter = int(str(card.get("name", "0")).split("_")[0]) if str(card.get("name", "")).split("_")[0].isdigit() else 0
    article = ARTICLE_BACKBONES.get(chapter)
    if article and article != card["preprocessing"]:
        lines.append(f"The backbone is {card['preprocessing']}, not the article's {article} (the {card.get('profile')} "
                     "profile; the paper profile uses the article's), so the numbers are not the article's.")
    lines.append("Kaggle medical image sets hold near-duplicate images and unknown patient overlap between "
                 "splits; the chapters audit this, but scores on such sets overstate performance on new patients.")
    lines.append("Not validated on any clinical population, scanner or protocol; no regulatory clearance.")
    return lines


def readme_text(card: dict) -> str:
    """The README.md text of an exported model's card. Used by tl.hub_readme.write_readme."""
    spec = dataset_of(card)
    header = yaml.safe_dump(readme_header(card), sort_keys=False, allow_unicode=True, width=1000)
    classes = ", ".join(f"`{c}`" for c in card["classes"])
    calibration = (f"The card's temperature {card['temperature']:.4g} (fitted on validation) calibrates the "
                   "probabilities; `tl predict` applies it unless `--uncalibrated`." if card.get("temperature")
                   else "No temperature was fitted: probabilities are the model's own.")
    files = ", ".join(f"`{name}`" for name in card.get("sha256", {}))
    lines = [f"---\n{header}---", f"# {card['name']}", "",
             f"A {card['task']} model ({card['framework']}) from the book *Transfer learning for medical imaging*, "
             f"profile `{card.get('profile')}`. Classes in output order: {classes}.", "",
             "## Intended use", "",
             "Teaching and research: reproducing and studying the book's chapter. **Not for diagnosis** or any "
             "clinical decision; not a medical device.", "",
             "## Limitations", "", *[f"- {line}" for line in _limitations(card, spec)], "",
             "## How to use", "",
             f"Files: {files} (sha256 in `{card['name']}.card.json`). Input: {card['input_size'][0]}x"
             f"{card['input_size'][1]} pixels, {card['channels']} channels, preprocessing `{card['preprocessing']}` "
             "(its numbers: the card's `input`). " + calibration, "",
             "```bash", f"tl predict {card['name']}.card.json images/ --out predictions.csv", "```", "",
             "Without TensorFlow, Keras or PyTorch (onnxruntime, numpy, Pillow): "
             f"`python onnx_predict.py {card['name']}.card.json image.png` (tl_helpers/serve/onnx_predict.py).", "",
             "## Dataset licence and citation", ""]
    if spec is not None:
        lines += [f"{spec.title}: {spec.kaggle_url}. The images keep the licence and terms stated on that page; "
                  "check them before any reuse.", "", f"Citation: {spec.citation}"]
    else:
        lines += [f"Data: {card.get('data_source')}."]
    lines += ["", "## Provenance", "", f"Created {card.get('created')}, git commit {card.get('git_commit')}, "
              f"versions {json.dumps(card.get('versions'))}.", ""]
    return "\n".join(lines)


def write_readme(card_path: str | Path) -> Path:
    """Write the card's README beside it: `README.md` while the card is alone in its folder (as
    on the Hub), else `<name>.README.md` (`settle_readmes`); returns its path.

    Used by tl.model_cards.export_model.
    """
    card_path = Path(card_path)
    card = json.loads(card_path.read_text())
    path = card_path.with_name(f"{card['name']}.README.md")
    settle_readmes(card_path.parent, keep_single=False)  # a README.md: another model's, or this one's older
    path.write_text(readme_text(card))
    return settle_readmes(card_path.parent).get(card["name"], path)


def readme_owner(path: str | Path) -> str | None:
    """The model a README written by `readme_text` describes (its `# <name>` title), or None."""
    found = re.search(r"^# (\S+)\s*$", Path(path).read_text(), re.MULTILINE)
    return found.group(1) if found else None


def settle_readmes(folder: str | Path, keep_single: bool = True) -> dict[str, Path]:
    """Name the READMEs of a folder of exported models after their models: `README.md` when the
    folder holds one model card, else one `<name>.README.md` per model, so that no model's README
    replaces another's (the chapters of one profile export into one folder). With
    `keep_single=False` a `README.md` is always renamed after its model (before another file may
    arrive under that name). Returns {model name: its README}. Used by tl.hub_readme.write_readme
    and the runner (keeping a run's models).
    """
    folder = Path(folder)
    names = sorted(path.name[:-len(".card.json")] for path in folder.glob("*.card.json"))
    single = folder / "README.md"
    owner = readme_owner(single) if single.is_file() and (len(names) != 1 or not keep_single) else None
    if owner:
        os.replace(single, folder / f"{owner}.README.md")
    if len(names) == 1 and keep_single and (folder / f"{names[0]}.README.md").is_file():
        os.replace(folder / f"{names[0]}.README.md", single)
    found = {name: folder / f"{name}.README.md" for name in names if (folder / f"{name}.README.md").is_file()}
    if len(names) == 1 and single.is_file():
        found = {names[0]: single}
    return found
