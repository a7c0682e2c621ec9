"""Build the jupyter-book from executed notebooks and the pages in `book/`.

    python -m tl_helpers.workflow.build              # build; run (smoke) only chapters with no committed run
    python -m tl_helpers.workflow.build --fresh      # run every chapter on the smoke profile, show those
    python -m tl_helpers.workflow.build --fresh --profile cpu --data-dir ../shared/data
    python -m tl_helpers.workflow.build --no-run     # build from the runs already in runs/<profile>/

The book never executes notebooks itself (execution is off in `_config.yml`): the runner
has run them. For each chapter the book shows the committed reference run in
`results/cpu/` or `results/paper/` when there is one (a run on real data), else this
build's run, so only chapters without a committed run are run first; `--fresh` runs every
chapter and shows only this build's runs. The results page is generated from the run cards'
JSON and `book/article_results.yml`, never typed by hand: per chapter a table and a figure.

The staged copies in book/generated/ are made for readers (`prepare_page`): a numbered
title, a "what you are looking at" box from the run card, the setup and parameters cells
hidden, no folder of the machine that ran them, captions and alt text on figures, the run
card as a table. The page's download button serves that copy; `book/_ext/tl_book.py`
points the header's Colab button at notebooks/ and offers the source notebook without outputs.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import textwrap
import subprocess
import sys
from pathlib import Path

import yaml

from ..paths import ask_git, project_root
from .backlinks import helpers_page
from .captions import figure_caption
from .runcard import map_strings, notebook_source_hash, scrub_paths

GENERATED = Path("book") / "generated"
REFERENCE_PROFILES = ("cpu", "paper")


def stage_notebooks(runs_dir: Path, fresh: bool = False, article_results: dict | None = None) -> dict[str, Path]:
    """Copy each chapter's executed notebook into book/generated/, made ready for a page
    (`prepare_page`); return {stem: source}.

    Used by the book machinery (scripts/build_book.sh).
    """
    root = project_root()
    target = root / GENERATED
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.ipynb"):  # a staged copy of a notebook that is gone
        stale.unlink()
    chosen = {}
    for notebook in sorted((root / "notebooks").glob("[0-9]*.ipynb")):
        reference = None if fresh else reference_run(root, notebook.name)
        source = reference or (runs_dir / notebook.name if (runs_dir / notebook.name).is_file() else None)
        if source is None:
            raise FileNotFoundError(f"no executed copy of {notebook.name} in {runs_dir} or results/; "
                                    "run `python -m tl_helpers.workflow.runner` first")
        card_file = source.with_suffix(".json")
        card = json.loads(card_file.read_text()) if card_file.is_file() else None
        page = prepare_page(json.loads(source.read_text()), notebook.stem, card,
                            (article_results or {}).get(notebook.stem) or {}, source_changed(notebook),
                            notebook_source_hash(notebook), gpu_run_card(root, notebook.stem))
        (target / notebook.name).write_text(json.dumps(page, indent=1, ensure_ascii=False) + "\n")
        chosen[notebook.stem] = source
    return chosen


def reference_run(root: Path, name: str) -> Path | None:
    """The committed reference run of notebook `name` that the book shows (results/cpu/, else
    results/paper/), or None. Used by the book machinery (build: what to stage, what to run)."""
    return next((f for f in (root / "results" / p / name for p in REFERENCE_PROFILES) if f.is_file()), None)


def gpu_run_card(root: Path, stem: str) -> dict | None:
    """The run card of the chapter's gpu-profile run (results/gpu/, else runs/gpu/), or None.

    Used by the book machinery (build: the cost line at the top of each chapter).
    """
    card = next((f for f in (root / "results" / "gpu" / f"{stem}.json", root / "runs" / "gpu" / f"{stem}.json")
                 if f.is_file()), None)
    return json.loads(card.read_text()) if card else None


# ---------------------------------------------------------------------------------------
# A chapter's page: the staged copy of its executed notebook, made for readers. The copy is
# also what the page's download button serves, so it keeps every cell (hidden ones tagged)
# and loses only the machine's paths. notebooks/ and the runs are never changed.

BACKBONE_NAMES = {"efficientnet_lite0": "EfficientNet-Lite0", "efficientnetb3": "EfficientNetB3",
                  "xception": "Xception", "resnet50": "ResNet50"}
HIDDEN_INPUT_TAGS = ("parameters", "injected-parameters")  # and the first code cell, the setup
TEXT_MIME = ("text/plain", "text/html", "text/markdown", "text/latex", "application/json")
IMAGE_MIME = ("image/png", "image/jpeg", "image/svg+xml")
_TITLE = re.compile(r"^#[ \t]+(?:Chapter[ \t]+\d+[ \t]*[:.][ \t]*)?(?P<title>.+)$", re.M)
_COLAB_BADGE = re.compile(r"\[!\[Open in Colab\]\([^)]*\)\]\([^)]*\)[ \t]*\n*")
_PATH_SETTING = re.compile(r'^(?P<name>[A-Z_][A-Z0-9_]*) = (?P<q>["\'])(?:[A-Za-z]:)?/[^"\']*(?P=q)', re.M)
_HEADING = re.compile(r"^#{1,4}[ \t]+(.+)$", re.M)
_SECTION_NUMBER = re.compile(r"^(#{2,4}[ \t]+)\d+(?:\.\d+)*[.):]?[ \t]+(?=\S)", re.M)


def pretty_backbone(name) -> str:
    return BACKBONE_NAMES.get(str(name).lower(), str(name)) if name else "?"


def _text(value) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def scrub_output(output: dict, root: str | Path | None = None) -> None:
    """Remove machine paths from an output's text (never from image data); those under `root`
    (default the project) become relative. Used by the book machinery (build, runner)."""
    def scrubbed(value):  # kept as a list of lines when it was one (as notebooks store text)
        text = scrub_paths(_text(value), root)
        return text.splitlines(keepends=True) if isinstance(value, list) else text

    if "text" in output:
        output["text"] = scrubbed(output["text"])
    for mime in list(output.get("data", {})):
        if mime in TEXT_MIME and isinstance(output["data"][mime], (str, list)):
            output["data"][mime] = scrubbed(output["data"][mime])
    if "traceback" in output:
        output["traceback"] = [scrub_paths(line, root) for line in output["traceback"]]


def _total_images(counts) -> int:
    """Images (or slices) counted in a run card's or the registry's `counts`."""
    if isinstance(counts, dict) and "slices" in counts:
        return int(counts["slices"])
    if isinstance(counts, dict):
        return sum(_total_images(v) for k, v in counts.items() if "patient" not in str(k))
    return int(counts) if isinstance(counts, (int, float)) else 0


def _class_totals(counts: dict) -> dict[str, int]:
    """{class: images} over all splits of `counts` ({split: {class: n}})."""
    totals: dict[str, int] = {}
    for value in (counts or {}).values():
        if isinstance(value, dict):
            for name, n in value.items():
                if isinstance(n, (int, float)):
                    totals[str(name)] = totals.get(str(name), 0) + int(n)
    return totals


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "?"


def _where(text: str) -> str:
    """Where a test split came from, from a card's note: "carved from train/, by patient"."""
    while re.search(r"\([^()]*\)", text):  # innermost brackets first
        text = re.sub(r"\s*\([^()]*\)", "", text)
    text = text.split(";")[0].split(" because")[0]
    text = re.sub(r"^(the )?test split( was)?:? ", "", text.strip(), flags=re.I)
    return text.strip().rstrip(".,")


def _backbone_of(card: dict):
    """The card's model backbone, else the BACKBONE parameter in effect (chapter 4 records only that)."""
    return (card.get("model") or {}).get("backbone") or (card.get("parameters") or {}).get("BACKBONE")


def run_facts(card: dict) -> dict:
    """What a run card says about the run, in words: data, share, test set, prevalence, backbone.

    Used by the book machinery (build: the top of each chapter, the results page).
    """
    facts = {"profile": card.get("profile", "?"), "date": str(card.get("started_utc", ""))[:10],
             "commit": str(card.get("commit") or "")[:10], "wall_time_s": card.get("wall_time_s"),
             "backbone": pretty_backbone(_backbone_of(card)),
             "synthetic": any("SYNTHETIC" in str(d.get("source", "")).upper() for d in card.get("data", {}).values()),
             "scored": card.get("scored") or {}}
    shares, tests, prevalence = [], [], []
    try:
        from ..data import DATASETS
    except Exception:  # the registry is only needed for the share of the full release
        DATASETS = {}
    for name, entry in (card.get("data") or {}).items():
        used = _total_images(entry.get("counts"))
        spec = DATASETS.get(name)
        full = _total_images(spec.full_counts) if spec is not None and getattr(spec, "full_counts", None) else 0
        unit = "slices" if "slices" in (entry.get("counts") or {}) else "images"
        if used and full and not facts["synthetic"]:
            shares.append(f"{used:,} of the {full:,} {unit} of {name} ({_percent(used, full)})")
        elif used:
            shares.append(f"{used:,} {unit} of {name}")
        test = (entry.get("splits") or {}).get("test")
        if isinstance(test, dict):
            n, positives = test.get("slices") or test.get("images"), test.get("tumour_slices")
            tests.append(f"{n} {unit}" + (f" of {test['patients']} patients" if test.get("patients") else ""))
            if n and positives is not None:
                prevalence.append(f"{_percent(positives, n)} with tumour")
        elif test:
            tests.append(f"{test:,} {unit}")
        classes = _class_totals(entry.get("counts") or {})
        if len(classes) == 2 and not prevalence:
            positive = sorted(classes)[-1]  # yes, PNEUMONIA, 1: the positive class sorts last
            named = f"label {positive}" if positive.isdigit() else positive
            prevalence.append(f"{_percent(classes[positive], sum(classes.values()))} {named}")
        elif len(classes) > 2 and not prevalence:
            shares_of = [classes[c] / sum(classes.values()) for c in classes]
            prevalence.append(f"{len(classes)} classes, {100 * min(shares_of):.0f}-{100 * max(shares_of):.0f}% each")
        if entry.get("test_split"):
            tests.append(_where(str(entry["test_split"])))
    note = next((n for n in card.get("notes", []) if "test" in n.lower()), None)
    if note and not any("carved" in t or "folder" in t for t in tests):  # "test split carved from X (...) because ..."
        tests.append(_where(note))
    facts.update(share="; ".join(shares), test=", ".join(tests), prevalence="; ".join(prevalence))
    return facts


def source_changed(notebook: Path) -> str | None:
    """When the chapter's source notebook last changed (ISO date-time): now if it has uncommitted
    changes, else its last commit; None outside git. Used by the book machinery (build)."""
    from datetime import datetime, timezone

    if ask_git("status", "--porcelain", "--", notebook.name, cwd=notebook.parent, timeout=10):
        return datetime.now(timezone.utc).isoformat(timespec="seconds")
    return ask_git("log", "-1", "--format=%cI", "--", notebook.name, cwd=notebook.parent, timeout=10) or None


def run_is_older_than_source(card: dict, changed: str | None, source_hash: str | None = None) -> bool:
    """True when the run was made from another version of its chapter than today's: by the
    card's `source_sha256` when it has one, else by date (the run started before the source
    last changed)."""
    from datetime import datetime

    if card.get("source_sha256") and source_hash:
        return card["source_sha256"] != source_hash
    started = card.get("started_utc")
    if not (started and changed):
        return False
    return datetime.fromisoformat(str(started)) < datetime.fromisoformat(changed)


def _minutes(seconds) -> str:
    return "?" if not isinstance(seconds, (int, float)) else (
        f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min")


def _run_cost(card: dict) -> str:
    """ "12 min on 2 CPU cores (AMD EPYC), peak memory 3.1 GiB": one run's time, machine and memory."""
    hw = card.get("hardware") or {}
    gpu = hw.get("gpu")
    machine = (f"a GPU ({gpu})" if gpu else f"{hw.get('cpu_count', '?')} CPU cores"
               + (f" ({hw['cpu']})" if hw.get("cpu") else ""))
    memory = card.get("peak_memory_gib")
    return (f"{_minutes(card.get('wall_time_s'))} on {machine}, "
            + (f"peak memory {memory:.1f} GiB" if isinstance(memory, (int, float)) else "peak memory not recorded by this run"))


def _download_size(card: dict) -> str:
    """ "about 750 MB (lgg_mri_segmentation)": the Kaggle archives a chapter's real data needs."""
    try:
        from ..data import DATASETS
    except Exception:  # the registry is only needed for the sizes
        DATASETS = {}
    sizes = [(name, DATASETS[name].download_mb) for name in (card.get("data") or {})
             if name in DATASETS and DATASETS[name].download_mb]
    if not sizes:
        return "not known"
    total = sum(mb for _, mb in sizes)
    amount = f"{total / 1000:.1f} GB" if total >= 1000 else f"{total:.0f} MB"
    return f"about {amount} from Kaggle ({', '.join(name for name, _ in sizes)})"


def run_cost(card: dict, gpu_card: dict | None = None) -> str:
    """The chapter's cost, in one line of the box at its top: minutes and peak memory of the
    run shown (and of a gpu run when there is one), the size of the data to download.

    Used by the book machinery (build.run_summary).
    """
    shown = f"this `{card.get('profile', '?')}` run took {_run_cost(card)}"
    synthetic = any("SYNTHETIC" in str(d.get("source", "")).upper() for d in (card.get("data") or {}).values())
    if gpu_card and gpu_card is not card:
        shown += f"; the `gpu` run took {_run_cost(gpu_card)}"
    elif not (card.get("hardware") or {}).get("gpu"):
        shown += "; no GPU run yet"
    data = (f"none for this run (synthetic data); the real data: {_download_size(card)}" if synthetic
            else _download_size(card))
    return f"- **Cost:** {shown}. Data to download: {data}."


def run_summary(card: dict | None, article: dict, changed: str | None = None, source_hash: str | None = None,
                gpu_card: dict | None = None) -> str:
    """The short "what you are looking at" box under a chapter's title, from its run card:
    profile and data, backbone (and the article's), share of the data, test set, date,
    commit when the card has one, the source article. Used by the book machinery (build).
    """
    if not card:
        return ("```{admonition} What you are looking at\n:class: warning\n"
                "This page was built from a run without a run card: its numbers cannot be traced.\n```\n")
    f = run_facts(card)
    when = f"started {f['date']}" + (f", commit `{f['commit']}`" if f["commit"] else "")
    data = ("**synthetic** look-alike data: its numbers only show that the code runs" if f["synthetic"]
            else "the real data")
    lines = [run_cost(card, gpu_card), f"- **Run:** the `{f['profile']}` profile on {data} ({when})."]
    if _backbone_of(card):
        lines.append(f"- **Model:** {f['backbone']}" + (f" (the article: {article['backbone']})." if article.get("backbone") else "."))
    data_line = "; ".join(x for x in (f["share"], f"test set: {f['test']}" if f["test"] else "") if x)
    if data_line:
        lines.append(f"- **Data:** {data_line}" + (f" ({f['prevalence']})." if f["prevalence"] and f["test"] else "."))
    headline = next(iter(overview_rows({card.get("notebook"): card}, {card.get("notebook"): article})), None)
    if headline and not f["synthetic"]:  # the number the chapter leads with, and how many cases it rests on
        spread = _spread_text(headline["ours"])
        lines.append(f"- **Headline:** {headline['label']} {headline['ours']['value']:.3f}"
                     f"{' ' + spread if spread else ''}, scored on {headline['scored']}.")
    source = article.get("article")
    if source:
        name = f"*{source['title']}*" + (f" by {source['author']}" if source.get("author") else "")
        lines.append(f"- **Article:** [{name}]({source['url']}); " if source.get("url") else f"- **Article:** {name}; ")
        lines[-1] += "its numbers beside ours: [results page](results.md)."
    kind = "tip"
    if card.get("dry_run"):
        kind = "warning"
        lines.insert(0, f"- **Dry run:** {card['dry_run']}.")
    if run_is_older_than_source(card, changed, source_hash):
        kind = "warning"
        lines.append(f"- **Older than the chapter:** this run started {f['date']}, and the chapter's source has "
                     f"changed since ({(changed or '?')[:10]}). Code and prose are today's, outputs and numbers are "
                     "the run's, until the chapter's next run.")
    return f"```{{admonition}} What you are looking at\n:class: {kind}\n" + "\n".join(lines) + "\n```\n"


def _section(heading: str) -> str:
    """A heading as a caption's subject: without its number or "(chapter N)"."""
    return re.sub(r"^\d+[.)]?\s+|\s*\(chapter \d+\)$", "", heading).strip()


def _shows_image(output: dict) -> bool:
    return any(m in output.get("data", {}) for m in IMAGE_MIME)


def split_figure_cells(cells: list[dict]) -> list[dict]:
    """Cells where each code cell holds at most one displayed output when it draws a figure.

    myst-nb puts a cell's figure caption on every displayed output of the cell, so a cell
    drawing two figures showed two figures with the same number; its later displayed outputs
    move to cells of their own, input hidden, each numbered and captioned by `prepare_page`.
    Used by the book machinery (build.prepare_page).
    """
    result = []
    for cell in cells:
        outputs = cell.get("outputs", []) if cell["cell_type"] == "code" else []
        shown = [i for i, o in enumerate(outputs) if o.get("output_type") in ("display_data", "execute_result")]
        if len(shown) < 2 or not any(_shows_image(outputs[i]) for i in shown):
            result.append(cell)
            continue
        cuts = shown[1:] + [len(outputs)]
        cell["outputs"] = outputs[:shown[1]]
        result.append(cell)
        for part, (begin, end) in enumerate(zip(cuts, cuts[1:]), start=1):
            extra = {"cell_type": "code", "execution_count": None, "source": "", "outputs": outputs[begin:end],
                     "metadata": {"tags": ["remove-input"], "tl_continues": "the cell above"}}
            if "id" in cell:
                extra["id"] = f"{cell['id']}-{part}"[:64]
            result.append(extra)
    return result


def prepare_page(nb: dict, stem: str, card: dict | None, article: dict, changed: str | None = None,
                 source_hash: str | None = None, gpu_card: dict | None = None) -> dict:
    """Make an executed notebook (JSON) into a chapter page, in place; return it.

    Title "Chapter N: ..." (the Colab badge moves to the page header); a "what you are
    looking at" box from the run card; the setup, parameters and injected-parameters cells
    hidden on the page (kept in the download); folders of the machine that ran it scrubbed
    from sources, outputs and metadata; each figure with a caption saying what to look at
    and alt text; the run card drawn as a table; a warning when the run is older than the
    chapter's source (`changed`). Used by the book machinery (build).
    """
    number = article.get("chapter", int(stem[:2]) if stem[:2].isdigit() else None)
    cells = nb.get("cells", [])
    summary = run_summary(card, article, changed, source_hash, gpu_card)
    first_md = next((c for c in cells if c["cell_type"] == "markdown"), None)
    if first_md is not None and _TITLE.search(_text(first_md["source"])):
        text = _COLAB_BADGE.sub("", _text(first_md["source"]), count=1)
        # the title, numbered, then the box: the first thing a reader sees under it
        first_md["source"] = _TITLE.sub(lambda m: (f"# Chapter {number}: " if number is not None else "# ")
                                        + m.group("title").strip() + "\n\n" + summary, text, count=1)
    else:
        cells.insert(0, {"cell_type": "markdown", "metadata": {}, "source": summary})
        if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5):
            cells[0]["id"] = "tl-run-summary"

    cells[:] = split_figure_cells(cells)
    first_code = next((c for c in cells if c["cell_type"] == "code"), None)
    heading, figures, drawn_by, drawn = "", 0, "", 0  # drawn: figures of the current code cell so far
    for cell in cells:
        source = _text(cell["source"])
        if cell["cell_type"] == "markdown":
            source = _SECTION_NUMBER.sub(r"\1", source)  # some chapters number their sections: none do on a page
            found = _HEADING.findall(source)
            heading = re.sub(r"[*_`]", "", found[-1]).strip() if found else heading
            cell["source"] = scrub_paths(source)
            continue
        if cell["cell_type"] != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if cell is first_code or any(t in tags for t in HIDDEN_INPUT_TAGS):
            if "remove-input" not in tags:
                tags.append("remove-input")
        if "injected-parameters" in tags:  # the machine's folders: back to "the default"
            source = _PATH_SETTING.sub(lambda m: f"{m.group('name')} = None  # the folder of the machine that ran it", source)
        cell["source"] = scrub_paths(source)
        for output in cell.get("outputs", []):
            scrub_output(output)
        if "tl.notebook.finish(" in source and card:
            from .runcard import RunCard  # noqa: F811 (also imported at the top)

            shown = RunCard(card["notebook"], card.get("profile", "?"))
            shown.record = card
            metrics = len(card.get("metrics") or {})
            folded = ('<details class="tl-runcard-details"><summary>Run card: how this run was made'
                      + (f" and its {metrics} numbers" if metrics else "") + " (click to open)</summary>\n"
                      + shown._repr_html_(label=metric_label) + "\n</details>")
            cell["outputs"] = [{"output_type": "display_data", "metadata": {},
                                "data": {"text/html": folded, "text/plain": shown.text()}},
                               {"output_type": "stream", "name": "stdout",
                                "text": f"run card written to {card['notebook']}.json\n"}]
        if not cell["metadata"].get("tl_continues"):  # a continuation draws with its cell's code
            drawn_by, drawn = source, 0
        image = next((o for o in cell.get("outputs", []) if _shows_image(o)), None)
        if image is not None:
            figures += 1
            caption = figure_caption(drawn_by, _section(heading), drawn, cell, image)
            drawn += 1
            place = f"chapter {number}" if number is not None else stem
            mystnb = cell["metadata"].setdefault("mystnb", {})
            mystnb.setdefault("image", {})["alt"] = f"Figure {figures} of {place}" + (f", section {heading}" if heading else "") + f". {caption}"
            mystnb.setdefault("figure", {})["caption"] = f"Figure {figures}. {caption}"
    nb["metadata"] = map_strings(nb.get("metadata", {}), scrub_paths)
    return nb


def write_toc(root: Path) -> Path:
    """The build's table of contents: `_toc.yml` without chapters not written yet.

    Used by the book machinery (scripts/build_book.sh).
    """
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    exists = lambda entry: any((root / (entry["file"] + ext)).is_file() for ext in (".md", ".ipynb"))  # noqa: E731
    always = ("/results", "/helpers")  # written by every build
    toc["chapters"] = [c for c in toc["chapters"] if exists(c) or c["file"].endswith(always)]
    path = root / GENERATED / "_toc.yml"
    path.write_text(yaml.safe_dump(toc, sort_keys=False))
    return path


# ---------------------------------------------------------------------------------------
# The results page: per chapter, one table and one figure, from the run cards.

METRIC_NAMES = {"roc_auc": "ROC AUC", "macro_f1": "macro F1", "accuracy_dedup": "accuracy, near-duplicates removed",
                "dedup_accuracy": "accuracy, near-duplicates removed",
                "all_test_images_accuracy": "accuracy, near-duplicates included", "dice_mean": "Dice, mean over slices",
                "dice_per_patient_mean": "Dice, mean of patients", "pipeline_dice_mean": "Dice of the whole pipeline",
                "stage1_accuracy": "stage 1 accuracy", "stage1_roc_auc": "stage 1 ROC AUC",
                "stage1_sensitivity": "stage 1 sensitivity (threshold chosen on validation)",
                "dice_volumetric_per_patient_mean": "Dice, per-patient 3-D (volumetric), mean of patients",
                "baseline_dice_mean": "Dice, mean over slices: ResUNet from scratch, same epoch budget",
                "pipeline_dice_volumetric_per_patient_mean": "Dice of the whole pipeline, per-patient 3-D",
                "cv_pipeline_dice_volumetric_per_patient_mean":
                    "Dice of the whole pipeline, per-patient 3-D, cross-validated (all patients)",
                "segmenter_cv_dice_volumetric_per_patient_mean":
                    "Dice, per-patient 3-D, segmenter cross-validated (all patients)"}


def metric_label(name: str) -> str:
    if name in METRIC_NAMES:
        return METRIC_NAMES[name]
    for suffix, words in (("_seed_mean", ", mean over seeds"), ("_seed_sd", ", sd over seeds")):
        if name.endswith(suffix):  # a spread over seeds of a metric: that metric's label, then the words
            return metric_label(name.removesuffix(suffix)) + words
    label = name.replace("domain_b_as_is_", "domain B, model A as is: ").replace("domain_b_retrained_", "domain B, retrained: ")
    label = label.replace("domain_b_scratch_", "domain B, from scratch: ").replace("domain_a_", "domain A: ")
    label = label.replace("domain_b_fine_tuned_", "domain B, fine-tuned: ").replace("domain_b_frozen_", "domain B, frozen: ")
    return label.replace("roc_auc", "ROC AUC").replace("_", " ")


def _format_metric(entry: dict) -> str:
    text = f"{entry['value']:.3f}"
    if "ci95" in entry:
        text += f" ({entry['ci95'][0]:.3f}-{entry['ci95'][1]:.3f})"
    return text


def _ours(metrics: dict, name: str) -> dict:
    """A card's metric entry, with `sd` added for a mean over seeds (its `<name>_sd` sibling): a mean
    over seeds has no interval; its spread is the seeds' standard deviation."""
    ours = dict(metrics[name])
    sd = metrics.get(name[:-len("_mean")] + "_sd") if name.endswith("_seed_mean") else None
    if sd:
        ours["sd"] = sd["value"]
    return ours


def _spread_text(ours: dict, none: str = "") -> str:
    """"(sd 0.012 over seeds)", "(0.940-0.970)", or `none` for a number without either."""
    if "sd" in ours:
        return f"(sd {ours['sd']:.3f} over seeds)"
    if "ci95" in ours:
        return f"({ours['ci95'][0]:.3f}-{ours['ci95'][1]:.3f})"
    return none


def _html_table(css_class: str, headings: list[str], labels: list[str], rows: list[list[str]]) -> list[str]:
    """An HTML table as lines; every cell carries its column's label (`data-label`), which the
    book's CSS shows before the value when a phone stacks the table."""
    lines = [f'<table class="table {css_class}">',
             "<thead><tr>" + "".join(f"<th>{h}</th>" for h in headings) + "</tr></thead>", "<tbody>"]
    for cells in rows:
        lines.append("<tr>" + "".join(f'<td data-label="{name}">{value}</td>' for name, value in zip(labels, cells))
                     + "</tr>")
    return lines + ["</tbody>", "</table>"]


def result_rows(card: dict, article: dict) -> list[dict]:
    """The table rows of one chapter: the article's `rows` found in the card (or, without any,
    the card's first five test metrics), each {metric, label, ours, article, field, comparable, why,
    definition, article_definition}.

    Used by the book machinery (build).
    """
    metrics = card.get("metrics") or {}
    wanted = article.get("rows") or [{"metric": m} for m, e in metrics.items() if e.get("split") == "test"][:5]
    rows = []
    for spec in wanted:
        name = next((n for n in [spec["metric"], *spec.get("aliases", [])] if n in metrics), None)
        if name is None:
            continue
        rows.append({"metric": name, "label": metric_label(spec["metric"]), "ours": _ours(metrics, name),
                     "article": spec.get("article"), "article_note": spec.get("article_note", ""),
                     "field": spec.get("field"), "comparable": spec.get("comparable", True), "why": spec.get("why", ""),
                     "definition": spec.get("definition", ""), "article_definition": spec.get("article_definition", ""),
                     "figure": spec.get("figure", True)})
    return rows


def _comparison_text(row: dict, facts: dict, article: dict) -> str:
    """The "comparable?" cell (HTML): verdict, then test set, positives and backbone, ours vs theirs."""
    esc = html.escape
    if row["article"] is None and not row["field"]:
        return "no published number"
    verdict = "yes" if row["comparable"] and not facts["synthetic"] else "no"
    if row["field"] and row["article"] is None:
        theirs_test, theirs_prev, theirs_model = row["field"].get("note", "?"), "", row["field"]["source"]
    else:
        theirs_test, theirs_prev, theirs_model = (article.get("test_set", "?"), article.get("prevalence", "not stated"),
                                                   article.get("backbone", "?"))
    # a number on cases the card names itself (chapter 4's cross-validated patients), not the test split
    named = _scored_entry(facts.get("scored") or {}, row["metric"])[1] or {}
    ours_test = f"{named['count']:,} {named['what']}" if named.get("what") else facts["test"]
    parts = [f"<strong>{verdict}</strong>",
             f"test set: {esc(ours_test or '?')} <em>vs</em> {esc(theirs_test)}"]
    if theirs_prev or facts["prevalence"]:
        parts.append(f"positives: {esc(facts['prevalence'] or '?')} <em>vs</em> {esc(theirs_prev or '?')}")
    parts.append(f"backbone: {esc(facts['backbone'])} <em>vs</em> {esc(theirs_model)}")
    if row.get("definition") or row.get("article_definition"):  # the same name can mean different numbers
        parts.append(f"metric: {esc(row.get('definition') or 'as named')} <em>vs</em> "
                     f"{esc(row.get('article_definition') or 'as named')}")
    if facts["synthetic"]:
        parts.append("ours on synthetic data")
    text = "; ".join(parts) + "."
    return text + (f" {esc(row['why'][0].upper() + row['why'][1:])}." if row["why"] else "")


def results_table(rows: list[dict], facts: dict, article: dict) -> list[str]:
    """One chapter's table as HTML lines (class `tl-results`): metric, ours with its 95%
    interval, the article's number, the field's reference, comparable? Used by the book machinery."""
    esc = html.escape
    cells = []
    for row in rows:
        ours, spread = row["ours"], _spread_text(row["ours"])
        ci = f'<br><span class="tl-ci">{spread}</span>' if spread else ""
        theirs = (f"{row['article']:.3f}" + (f"<br><small>{esc(row['article_note'])}</small>" if row["article_note"] else "")
                  if row["article"] is not None else "-")
        field = (f"{row['field']['value']:.3f}<br><small>{esc(row['field']['source'])}</small>" if row["field"] else "-")
        cells.append([esc(row["label"]), f"{ours['value']:.3f}{ci}", theirs, field, _comparison_text(row, facts, article)])
    return _html_table("tl-results", ["metric", "ours (95% CI)", "article", "field reference",
                                      "comparable? (ours <em>vs</em> theirs)"],
                       ["metric", "ours (95% CI)", "article", "field reference", "comparable?"], cells)


def results_figure(rows: list[dict], title: str, path: Path) -> Path:
    """Dot plot of one chapter: ours with 95% intervals (a mean over seeds with its sd), the
    article's and the field's numbers.

    Written as SVG at `path`, from the rows of `result_rows`. Narrow (4.6 in) with each metric's
    name written above its line rather than beside it, so that the text stays at least 9 pt
    when a phone shows the figure 360 px wide. Used by the book machinery (build).
    """
    from matplotlib.figure import Figure

    names = [textwrap.wrap(row["label"], 48) for row in reversed(rows)]  # bottom line first
    fig = Figure(figsize=(4.6, 1.2 + 0.45 * len(rows) + 0.22 * sum(map(len, names))), layout="constrained")
    ax = fig.add_subplot()
    lows = []
    for y, row in enumerate(reversed(rows)):
        ours = row["ours"]
        if "sd" in ours:  # a mean over seeds: its spread, not an interval
            low, high = ours["value"] - ours["sd"], min(1.0, ours["value"] + ours["sd"])
            color, label = "#7f7f7f", "ours, mean ± sd over seeds"
        else:
            low, high = ours.get("ci95", [ours["value"], ours["value"]])
            color, label = "black", "ours, 95% interval"
        below, above = max(0.0, ours["value"] - low), max(0.0, high - ours["value"])  # a percentile bootstrap may exclude the value
        ax.errorbar(ours["value"], y, xerr=[[below], [above]], fmt="o", color=color,
                    capsize=4, markersize=7, label=label)
        lows.append(low)
        if row["article"] is not None:
            ax.plot(row["article"], y, "D", color="#c0392b", markersize=8, label="the article")
            lows.append(row["article"])
        if row["field"]:
            ax.plot(row["field"]["value"], y, "s", color="#2471a3", markersize=8, label=row["field"]["source"])
            lows.append(row["field"]["value"])
    left = max(0.0, min(lows) - 0.05) // 0.1 * 0.1
    for y, name in enumerate(names):  # the name above its line, wrapped to the axes' width
        label = ax.text(0.01, y + 0.25, "\n".join(name), fontsize=12, va="bottom", ha="left",
                        transform=ax.get_yaxis_transform())
        label.set_in_layout(False)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.set_yticks([])
    ax.set_xlim(left, 1.0)
    ax.set_ylim(-0.5, len(rows) - 0.1 + 0.2 * max(len(names[-1]) - 1, 0))  # room for the top name's extra lines
    ax.grid(axis="x", color="#dddddd")
    ax.tick_params(axis="x", labelsize=12)
    ax.set_title(title, fontsize=13, loc="left")
    ax.legend(unique.values(), unique.keys(), fontsize=11, loc="upper center", bbox_to_anchor=(0.5, -0.08),
              ncol=1 if len(unique) > 2 else 2, frameon=False)
    fig.savefig(path, format="svg", bbox_inches="tight")
    return path


def _chapter_title(notebook: Path | None) -> str:
    if notebook is None or not notebook.is_file():
        return ""
    first = next((c for c in json.loads(notebook.read_text()).get("cells", []) if c["cell_type"] == "markdown"), None)
    match = _TITLE.search(_text(first["source"])) if first else None
    return match.group("title").strip() if match else ""


_UNITS = {"pcam": "patches", "chest_xray": "films", "lgg_mri_segmentation": "slices"}


def _split_size(card: dict, split: str = "test", per_patient: bool = False) -> tuple[int | None, str, int]:
    """How many cases a card's data say the split holds, their unit, and how many of them the
    near-duplicate audit flagged (0 when the card says nothing)."""
    for name, entry in (card.get("data") or {}).items():
        size = (entry.get("splits") or {}).get(split)
        if isinstance(size, dict):
            if per_patient and size.get("patients"):
                return size["patients"], "patients", 0
            size = size.get("slices") or size.get("images")
        if isinstance(size, int):
            return size, _UNITS.get(name, "images"), int(entry.get(f"near_duplicate_{split}_images") or 0)
    return None, "cases", 0


def _scored_entry(scored: dict, metric: str) -> tuple[str, dict | None]:
    """The card's `scored` entry a metric belongs to (the longest name it starts with), else "test"'s."""
    key = next((k for k in sorted(scored, key=len, reverse=True) if metric == k or metric.startswith(k + "_")), "test")
    return key, scored.get(key)


def scored_text(card: dict, metric: str) -> str:
    """How many cases a headline number rests on, from the card: "36 of 50 test images (near-
    duplicates of earlier splits left out)", else the test split's size (patients for a
    per-patient metric)."""
    key, entry = _scored_entry(card.get("scored") or {}, metric)
    if entry and entry.get("what"):  # cases named by the card (chapter 4's cross-validated patients)
        return f"{entry['count']:,} {entry['what']}"
    # a headline on a split of its own (chapter 5's official_valid) counts that split, not the test split
    split = key if key != "test" and _split_size(card, key)[0] else "test"
    total, unit, flagged = _split_size(card, split, per_patient="per_patient" in metric)
    if entry is None and flagged and total:  # a card that names the flagged test images but not the count
        entry = {"count": total - flagged}
    what = f"{split.replace('_', ' ')} {unit}"
    if entry is None:
        return f"{total:,} {what}" if total else "?"
    count, total = entry["count"], entry.get("total", total)
    text = f"{count:,}" + (f" of {total:,}" if total and total != count else "") + f" {what}"
    reason = entry.get("left_out")
    if not reason and total and total > count and (flagged or any("near-duplicate" in n for n in card.get("notes", []))):
        reason = "near-duplicates of earlier splits left out"
    return text + (f" ({reason})" if reason else "")


def overview_rows(by_notebook: dict, article_results: dict) -> list[dict]:
    """One row per chapter for the results page's overview: our headline (the first of the
    chapter's `overview.metrics` its card has), what it was scored on, the article's and the field's
    numbers (from the rows named by `overview.theirs`: the first with an article number, the first
    with a field reference) and the main difference in a few words.

    Used by the book machinery (results_page)."""
    rows = []
    for notebook, card in sorted(by_notebook.items()):
        article = article_results.get(notebook) or {}
        spec = article.get("overview")
        metrics = card.get("metrics") or {}
        if not spec or not metrics:
            continue
        name = next((m for m in spec["metrics"] if m in metrics), None)
        if name is None:
            continue
        ours = _ours(metrics, name)
        wanted = spec.get("theirs") or []
        wanted = [wanted] if isinstance(wanted, str) else wanted
        theirs = {}
        for metric in wanted:  # the article's number and the field's may sit on different rows
            row = next((r for r in article.get("rows", []) if r["metric"] == metric), {})
            if row.get("article") is not None and theirs.get("article") is None:
                theirs.update(article=row["article"], metric=row["metric"])
            if row.get("field") and not theirs.get("field"):
                theirs["field"] = row["field"]
        rows.append({"notebook": notebook, "chapter": article.get("chapter", notebook[:2].lstrip("0")),
                     "label": spec.get("labels", {}).get(name) or metric_label(name), "ours": ours,
                     "scored": scored_text(card, name), "article": theirs.get("article"),
                     "article_label": spec.get("article_label", metric_label(theirs.get("metric", ""))),
                     "field": theirs.get("field"), "difference": spec.get("difference", "")})
    return rows


def overview_table(rows: list[dict]) -> list[str]:
    """The overview as HTML lines (class `tl-results tl-overview`, stacked on a phone)."""
    esc = html.escape
    cells = []
    for row in rows:
        spread = f' <span class="tl-ci">{_spread_text(row["ours"], "(no interval)")}</span>'
        article = f"{esc(row['article_label'])} {row['article']:.3f}" if row["article"] is not None else "-"
        field = (f"{row['field']['value']:.3f} <small>{esc(row['field']['source'])}</small>" if row["field"] else "-")
        cells.append([f'<a href="{row["notebook"]}.html">{esc(str(row["chapter"]))}</a>',
                      f"{esc(row['label'])} <strong>{row['ours']['value']:.3f}</strong>{spread}", esc(row["scored"]),
                      article, field, esc(row["difference"])])
    return _html_table("tl-results tl-overview", ["chapter", "our headline (95% CI)", "scored on", "the article",
                                                  "the field", "main difference"],
                       ["chapter", "our headline", "scored on", "the article", "the field", "main difference"], cells)


# What the page's numbers are, for its glossary (issue 24: every metric on the page defined).
GLOSSARY = {
    "ROC AUC": "the chance that a random positive case scores above a random negative one (0.5: chance, 1: "
               "perfect ranking); it needs no threshold",
    "accuracy": "the share of cases called right at the stated threshold",
    "sensitivity": "the share of positive cases (tumour, pneumonia, metastasis) called positive",
    "specificity": "the share of negative cases called negative",
    "balanced accuracy": "the mean of sensitivity and specificity (of per-class recall with four classes)",
    "operating point": "the threshold chosen on the validation split for a stated goal (e.g. sensitivity "
                       ">= 0.95), then applied once to test",
    "macro F1": "the mean over classes of the F1 score (the harmonic mean of precision and recall)",
    "ECE": "expected calibration error: the case-weighted gap between confidence and accuracy over 10 bins; "
           "no interval below 100 cases",
    "Brier": "the mean squared error of the predicted probabilities",
    "Dice": "twice the overlap of predicted and true mask over their summed areas (1: identical); a slice "
            "with both masks empty scores 1 by rule",
    "volumetric Dice": "Dice of a patient's slices summed into one 3-D volume, then averaged over patients",
    "mean over seeds": "the same run repeated with other seeds (other splits and initialisations); "
                       "the spread is their standard deviation, not a confidence interval",
    "95% CI": "a percentile bootstrap (Wilson for proportions), resampling patients where a chapter has "
              "them; none is given from fewer than 10 patients",
}


def results_page(cards: list[Path], article_results: dict, figures_dir: Path | None = None) -> str:
    """Markdown for the results page: per chapter, a table of our numbers beside the article's
    and the field's, saying whether each pair is comparable, and a figure of the same (SVG in
    `figures_dir`, default book/generated/). Used by the book machinery (scripts/build_book.sh).
    """
    root = project_root()
    figures_dir = figures_dir or root / GENERATED
    figures_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# Results: our runs beside the articles", "",
             "Generated from the run cards (`<notebook>.json`) of the runs this book was built from and from "
             "the articles' own reports (`book/article_results.yml`); no number here is typed by hand. Ours are "
             "on each chapter's held-out test split, with 95% confidence intervals. The last column says whether "
             "a pair can be compared: it names the test set, the share of positive cases and the backbone on "
             "both sides. None of the pairs is like for like, and numbers from synthetic data (profile `smoke`) "
             "only show that the code runs.", ""]
    by_notebook = {json.loads(p.read_text())["notebook"]: json.loads(p.read_text()) for p in cards}
    overview = overview_rows(by_notebook, article_results)
    if overview:
        lines += ["## At a glance", "",
                  "One row per chapter: our headline number, the cases it was scored on, the article's number and "
                  "the field's reference, and what differs most. The sections below give every number.", ""]
        lines += overview_table(overview) + [""]
        lines += ["```{admonition} What the numbers mean", ":class: dropdown", ""]
        lines += [f"- **{term}**: {meaning}." for term, meaning in GLOSSARY.items()] + ["```", ""]
    no_metrics = [n for n, c in sorted(by_notebook.items()) if not c.get("metrics")]
    if no_metrics:
        lines += ["Without a model, and so without numbers: " + ", ".join(
            f"[{(article_results.get(n) or {}).get('claim', n).split(':')[0]}]({n}.ipynb)" for n in no_metrics) + ".", ""]
    for notebook, card in sorted(by_notebook.items()):
        if not card.get("metrics"):
            continue
        article = article_results.get(notebook) or {}
        number = article.get("chapter", notebook[:2].lstrip("0") or "0")
        title = _chapter_title(root / GENERATED / f"{notebook}.ipynb") or notebook
        facts = run_facts(card)
        rows = result_rows(card, article)
        lines += [f"## Chapter {number}: {title}", ""]
        run = (f"[The chapter]({notebook}.ipynb) shows a run of the `{facts['profile']}` profile on "
               f"{'synthetic' if facts['synthetic'] else 'real'} data with {facts['backbone']}, started {facts['date']}"
               + (f", commit `{facts['commit']}`" if facts["commit"] else "")
               + (f", {facts['wall_time_s']:.0f} s" if isinstance(facts["wall_time_s"], (int, float)) else "") + ".")
        source = article.get("article")
        if source:
            name = f"*{source['title']}*" + (f" ({source['author']})" if source.get("author") else "")
            run += f" Article: [{name}]({source['url']})" if source.get("url") else f" Article: {name}"
            run += f", {article['backbone']}." if article.get("backbone") else "."
        lines += [run, ""]
        if rows:
            lines += results_table(rows, facts, article) + [""]
        plotted = [row for row in rows if row["figure"]]  # rates and differences: table only
        if plotted:
            figure = results_figure(plotted, f"Chapter {number}: ours ({facts['backbone']})",
                                    figures_dir / f"results_{notebook}.svg")
            refs = [r for r in plotted if r["article"] is not None or r["field"]]
            alt = (f"Dot plot for chapter {number}: our " + ", ".join(r["label"] for r in plotted)
                   + " with 95% intervals" + (", beside the published numbers" if refs else "") + ".")
            caption = ("Black dots: ours, with 95% intervals; grey dots: our means over seeds, with their sd. "
                       + ("Red diamonds: the article's numbers. " if any(r["article"] is not None for r in plotted) else "")
                       + ("Blue squares: " + ", ".join(sorted({r["field"]["source"] for r in plotted if r["field"]}))
                          + ". " if any(r["field"] for r in plotted) else "")
                       + ("A marker outside our interval is still no verdict: the pairs differ in test set, "
                          "data and backbone (table above)." if refs else "The article published none of these."))
            lines += [f"```{{figure}} {figure.name}", f":alt: {alt}", f":name: results-{notebook}", "",
                      caption, "```", ""]
        others = {k: v for k, v in card["metrics"].items() if k not in {r["metric"] for r in rows}}
        if others:
            lines += ["```{admonition} " + f"The other {len(others)} numbers of this run", ":class: dropdown", "",
                      "| metric | split | value (95% CI) |", "|---|---|---|"]
            lines += [f"| {metric_label(k)} | {v.get('split', '')} | {_format_metric(v)} |" for k, v in others.items()]
            lines += ["```", ""]
    return "\n".join(lines) + "\n"


def build(profile: str = "smoke", run_first: bool = True, fresh: bool = False, data_dir: str | None = None,
          output: Path | None = None, runs_dir: Path | None = None) -> Path:
    """Run (optionally) and build the book; return the path of its index.html.

    The executed notebooks and run cards come from `runs_dir` (default runs/<profile>/).
    Used by the book machinery (scripts/build_book.sh, tests).
    """
    root = project_root()
    runs_dir = Path(runs_dir) if runs_dir else root / "runs" / profile
    if run_first:
        from .runner import default_notebooks, run

        # A chapter with a committed reference run is shown from it, so running it here would
        # cost minutes (the smoke runs took 9 min on two cores) and change nothing on its page.
        references = {n: None if fresh else reference_run(root, n.name) for n in default_notebooks()}
        to_run = [n for n, reference in references.items() if reference is None]
        shown = [reference for reference in references.values() if reference is not None]
        if shown:
            print(f"{len(shown)} chapter(s) shown from their committed runs, not run here: "
                  + ", ".join(str(f.relative_to(root)) for f in shown)
                  + f"; `--fresh` runs every chapter on the {profile} profile and shows those")
        if to_run:
            run(profile, to_run, out_dir=runs_dir, data_dir=data_dir)
    article_file = root / "book" / "article_results.yml"
    article = (yaml.safe_load(article_file.read_text()) if article_file.is_file() else {}) or {}
    chosen = stage_notebooks(runs_dir, fresh=fresh, article_results=article)
    cards = [source.with_suffix(".json") for source in chosen.values() if source.with_suffix(".json").is_file()]
    (root / GENERATED / "results.md").write_text(results_page(cards, article))
    (root / GENERATED / "helpers.md").write_text(helpers_page())
    output = Path(output or root).resolve()  # jupyter-book writes <output>/_build/html
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book) if jupyter_book.exists() else "jupyter-book", "build", str(root),
               "--path-output", str(output), "--toc", str(write_toc(root))]
    subprocess.run(command, check=True, cwd=root)
    index = output / "_build" / "html" / "index.html"
    print(f"Book built: open {index}")
    return index


def main(argv: list[str] | None = None) -> int:
    """The command line `python -m tl_helpers.workflow.build` (see the module doc).

    Used by the book machinery (scripts/build_book.sh).
    """
    parser = argparse.ArgumentParser(prog="python -m tl_helpers.workflow.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--data-dir", help="data directory for the run (default $TL_DATA_DIR, else data/)")
    parser.add_argument("--no-run", action="store_true", help="build from the runs already in runs/<profile>/")
    parser.add_argument("--fresh", action="store_true",
                        help="run every chapter here and show those runs, not the committed ones in results/")
    parser.add_argument("--output", type=Path, help="the HTML goes to <output>/_build/html (default: the project)")
    args = parser.parse_args(argv)
    build(args.profile, not args.no_run, args.fresh, args.data_dir, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
