"""The book end to end: run the notebooks (smoke), build with jupyter-book, open every page in
Chromium at a desktop and a phone width, and save screenshots of each (runs/screenshots/,
git-ignored, for the notes of a change).

What a reader needs is checked in the browser: the navigation opens on a phone and on a
desktop, one search box, no page scrolls sideways outside code cells and wide tables (at both
widths), images load and have alt text that is not a path, every figure has a caption written
for it (no placeholder) with a number used once per page, figure images are shown no larger
than their natural size and no smaller than 80% of the size their text was set for, chapters
number their sections alike, the run card is folded, the favicon loads, no script comes from a
CDN (math is drawn at build time), the results page has one figure per chapter, no folder of
the machine that ran the notebooks shows. The page-preparation steps are also tested without a
browser, on small notebooks made here.
"""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

from conftest import written_this_session
from tl_helpers.workflow import build as book
from tl_helpers.workflow.captions import PLACEHOLDER

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "runs" / "screenshots"
DESKTOP, PHONE = {"width": 1280, "height": 900}, {"width": 400, "height": 860}
MACHINE_PATH = re.compile(r"(?<![\w.:/-])/(?:work|home|root|tmp|Users)/")


def _chromium() -> str | None:
    return os.environ.get("TL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def this_sessions_smoke_runs(folder: Path) -> Path | None:
    """When this pytest session's nbval run of notebooks/ wrote every chapter's smoke card, a
    runs folder made of those cards and the notebooks' stored smoke outputs (which nbval has
    just re-executed and compared): the book is then built without running each notebook a
    second time. None otherwise."""
    notebooks = sorted((REPO / "notebooks").glob("[0-9]*.ipynb"))
    cards = [REPO / "runs" / "smoke" / f"{nb.stem}.json" for nb in notebooks]
    if not notebooks or not all(written_this_session(c) for c in cards):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for notebook, card in zip(notebooks, cards):
        shutil.copy(notebook, folder / notebook.name)
        shutil.copy(card, folder / card.name)
    return folder


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """The smoke book, built in a temporary folder: from this session's nbval run when there was
    one (see `this_sessions_smoke_runs`), else after running every notebook (minutes);
    TL_BOOK_NO_RUN=1 builds it from the smoke runs already in runs/smoke/."""
    out = tmp_path_factory.mktemp("book")
    session_runs = this_sessions_smoke_runs(out / "runs")
    if session_runs is not None:
        return book.build("smoke", run_first=False, fresh=True, output=out, runs_dir=session_runs)
    return book.build("smoke", run_first=os.environ.get("TL_BOOK_NO_RUN") != "1", fresh=True, output=out)


def content_pages(html_root: Path) -> list[Path]:
    return sorted(p for p in html_root.rglob("*.html")
                  if not {"_static", "_sources", "_notebooks"} & set(p.parts)
                  and p.name not in ("genindex.html", "search.html"))


@functools.cache
def _serve(html_root: Path) -> str:
    """Serve the book over HTTP (as readers get it: fonts and icons load, unlike from file://)."""
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass
    handler = functools.partial(Quiet, directory=str(html_root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/"


# Run in the page: elements that scroll sideways although they are not code, and the page itself.
_SIDEWAYS = """() => {
  const doc = document.scrollingElement;
  const found = doc.scrollWidth > doc.clientWidth + 1 ? ['the page: ' + doc.scrollWidth + ' > ' + doc.clientWidth] : [];
  for (const el of document.querySelectorAll('article *')) {
    const style = getComputedStyle(el);
    if (!['auto', 'scroll'].includes(style.overflowX) || el.scrollWidth <= el.clientWidth + 1) continue;
    if (el.closest('div.cell, div.highlight, pre, .cell_output, .output, .pst-scrollable-table-container, .tl-math-block, .tl-runcard')) continue;
    found.push(el.tagName.toLowerCase() + '.' + el.className + ': ' + el.scrollWidth + ' > ' + el.clientWidth);
  }
  return found;
}"""
# Run in the page: each figure's caption, and its image's displayed, intended (the inline CSS
# size its text was set for) and natural widths.
_FIGURES = """() => Array.from(document.querySelectorAll('article figure')).map(f => {
  const img = f.querySelector('img');
  const caption = f.querySelector('figcaption');
  return {caption: caption ? caption.innerText.trim() : '', src: img ? img.getAttribute('src') : '',
          shown: img ? img.getBoundingClientRect().width : 0, natural: img ? img.naturalWidth : 0,
          intended: img && img.style.width ? parseFloat(img.style.width) : 0};
})"""
_IMAGES = """() => Array.from(document.querySelectorAll('img')).filter(i => !i.closest('.dropdown-menu'))
  .map(i => [i.currentSrc || i.src, i.complete && i.naturalWidth > 0, i.getAttribute('alt') || ''])"""


def _bad_alt(alt: str) -> bool:
    """No alt text, or one that is a file name or path rather than words."""
    alt = alt.strip()
    return (not alt or "/" in alt.split(" ")[0] or re.search(r"\.(png|jpe?g|svg|gif)$", alt, re.I) is not None
            or re.fullmatch(r"[0-9a-f]{16,}(\.\w+)?", alt) is not None or len(alt.split()) < 3)


def check_figures(figures: list[dict], where: str, problems: dict) -> None:
    """Add to `problems` what is wrong with a page's figures (from `_FIGURES`): a placeholder or
    missing caption, a figure number used twice, an image shown larger than its natural size
    (blurred) or smaller than 80% of its intended size (its text below 9 pt for 11 pt labels)."""
    numbers = []
    for figure in figures:
        caption = figure["caption"]
        if not caption or PLACEHOLDER.search(caption):
            problems["captions"].append(f"{where}: {caption[:80]!r}")
        number = re.match(r"Figure (\d+)\.", caption)
        numbers += [number.group(1)] if number else []
        if figure["natural"] and figure["shown"] > figure["natural"] * 1.05:
            problems["figure_sizes"].append(f"{where}: {figure['src']} shown {figure['shown']:.0f} px > natural "
                                            f"{figure['natural']} px")
        if figure["intended"] and figure["shown"] < 0.8 * figure["intended"]:
            problems["figure_sizes"].append(f"{where}: {figure['src']} shown {figure['shown']:.0f} px < 80% of "
                                            f"{figure['intended']:.0f} px")
    problems["figure_numbers"] += [f"{where}: Figure {n} twice" for n in sorted(set(numbers)) if numbers.count(n) > 1]


def _navigation_opens(page) -> str | None:
    """Click the header's menu button; None when the table of contents is then on screen."""
    toggle = next((b for b in page.query_selector_all("button.primary-toggle, label.primary-toggle") if b.is_visible()), None)
    if toggle is None:
        return "no visible menu button"
    sidebar = page.query_selector("#pst-primary-sidebar, .bd-sidebar-primary")
    before = sidebar.bounding_box()
    toggle.click()
    page.wait_for_timeout(600)
    after = sidebar.bounding_box()
    width = page.viewport_size["width"]
    shown = lambda box: box is not None and box["width"] > 100 and box["x"] >= -1 and box["x"] < width  # noqa: E731
    if shown(before) == shown(after):
        return f"menu button did not change the sidebar ({before} -> {after})"
    if not shown(after):
        toggle.click()  # desktop: it hid the sidebar; open it again
        page.wait_for_timeout(600)
        if not shown(sidebar.bounding_box()):
            return "menu button does not show the sidebar again"
    visible_links = [a for a in sidebar.query_selector_all("a.reference") if a.is_visible()]
    return None if visible_links else "sidebar open but no chapter link visible"


def check_book(html_root: Path, screenshots: Path = SCREENSHOTS) -> dict:
    """Open every page at DESKTOP and PHONE widths, save screenshots, collect problems.

    Returns {problem kind: [descriptions]} (empty lists when all is well) and the page names.
    """
    from playwright.sync_api import sync_playwright

    screenshots.mkdir(parents=True, exist_ok=True)
    for old in screenshots.glob("*.png"):
        old.unlink()
    base = _serve(html_root.resolve())
    pages = content_pages(html_root)
    problems = {k: [] for k in ("images", "alt", "links", "requests", "sideways", "navigation", "search",
                                "paths", "results", "captions", "figure_numbers", "figure_sizes", "numbering",
                                "runcard", "favicon", "cdn")}
    found = {"pages": [p.name for p in pages], "screenshots": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
            page = browser.new_page(viewport=viewport)
            page.on("requestfailed", lambda r: problems["requests"].append(r.url) if r.url.startswith(base) else None)
            page.on("request", lambda r: problems["cdn"].append(r.url) if r.resource_type == "script"
                    and not r.url.startswith(base) else None)
            for html in pages:
                rel = html.relative_to(html_root).as_posix()
                url = urljoin(base, rel)
                redirect = re.search(r'http-equiv="refresh" content="\d+;\s*url=([^"]+)"', html.read_text(), re.I)
                if redirect:  # the root index.html only forwards to the first page
                    if label == "desktop" and not (html.parent / urlparse(redirect.group(1)).path).exists():
                        problems["links"].append(f"{rel}: redirect to {redirect.group(1)}")
                    continue
                page.goto(url, wait_until="load")
                page.wait_for_timeout(150)
                name = html.stem
                shot = screenshots / f"{name}_{label}.png"
                page.screenshot(path=str(shot), full_page=False)
                found["screenshots"].append(shot.name)
                check_figures(page.evaluate(_FIGURES), f"{rel} ({label})", problems)
                problems["sideways"] += [f"{rel} ({label}): {s}" for s in page.evaluate(_SIDEWAYS)]
                if label == "phone":
                    if html.stem in ("index", "results") or html.stem.startswith(("00_", "01_")):
                        page.screenshot(path=str(screenshots / f"{name}_{label}_full.png"), full_page=True)
                        found["screenshots"].append(f"{name}_{label}_full.png")
                    continue
                page.screenshot(path=str(screenshots / f"{name}_{label}_full.png"), full_page=True)
                found["screenshots"].append(f"{name}_{label}_full.png")
                for src, ok, alt in page.evaluate(_IMAGES):
                    if not ok and not src.startswith("http") or (src.startswith(base) and not ok):
                        problems["images"].append(f"{rel}: {src}")
                    if _bad_alt(alt):
                        problems["alt"].append(f"{rel}: {src.rsplit('/', 1)[-1]} alt={alt!r}")
                for href in page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))"):
                    target = urlparse(urljoin(url, href))
                    if target.netloc == urlparse(base).netloc and not (html_root / target.path.lstrip("/")).exists():
                        problems["links"].append(f"{rel}: {href}")
                if html.parent.name == "generated" and html.stem[:2].isdigit():
                    numbered = page.eval_on_selector_all("article h2", "hs => hs.map(h => h.innerText)")
                    problems["numbering"] += [f"{rel}: {h!r}" for h in numbered if re.match(r"\d+[.)]?\s", h)]
                    folded = page.eval_on_selector_all("details.tl-runcard-details", "ds => ds.map(d => d.open)")
                    if folded != [False]:  # one run card, folded
                        problems["runcard"].append(f"{rel}: run card folds {folded}")
                icon = page.eval_on_selector("link[rel~=icon]", "l => l.href") if page.query_selector("link[rel~=icon]") else None
                if icon is None or page.request.get(icon).status != 200:
                    problems["favicon"].append(f"{rel}: {icon}")
                searches = [e for e in page.query_selector_all("input[type=search], .search-button-field") if e.is_visible()]
                if len(searches) > 1:
                    problems["search"].append(f"{rel}: {len(searches)} search boxes")
                text = page.inner_text("body")
                problems["paths"] += [f"{rel}: ...{text[max(0, m.start() - 40):m.end() + 40]}..."
                                      for m in MACHINE_PATH.finditer(text)]
                if html.stem == "results":
                    chapters = page.eval_on_selector_all(  # the overview ("At a glance") is no chapter
                        "article h2", "hs => hs.map(h => h.innerText).filter(t => t.startsWith('Chapter'))")
                    figures = page.eval_on_selector_all("article figure img", "fs => fs.map(f => f.getAttribute('src'))")
                    if not chapters or len(figures) != len(chapters):
                        problems["results"].append(f"{len(chapters)} chapter sections, {len(figures)} figures")
                    found["results_text"] = page.inner_text("article")
            # the menu, once per width: on a chapter page
            chapter = next((p for p in pages if p.stem.startswith("01_")), pages[-1])
            page.goto(urljoin(base, chapter.relative_to(html_root).as_posix()), wait_until="load")
            failure = _navigation_opens(page)
            if failure:
                problems["navigation"].append(f"{label}: {failure}")
            page.screenshot(path=str(screenshots / f"menu_open_{label}.png"))
            found["screenshots"].append(f"menu_open_{label}.png")
            page.close()
        browser.close()
    for notebook in list((html_root / "_sources").rglob("*.ipynb")) + list((html_root / "_notebooks").glob("*.ipynb")):
        problems["paths"] += [f"{notebook.name}: {m.group(0)}" for m in MACHINE_PATH.finditer(notebook.read_text())]
    return {"problems": problems, **found}


@pytest.mark.after_notebooks  # builds from what the nbval run of notebooks/ wrote, when it ran
def test_book_reads_well_on_desktop_and_phone(built_book):
    if _chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the browser test (scripts/setup_browser.sh installs it)")
        pytest.skip("no Chromium here")
    html_root = built_book.parent
    report = check_book(html_root)
    assert {"index.html", "data.html", "reproducing.html", "00_datasets.html", "results.html"} <= set(report["pages"])
    assert {k: v for k, v in report["problems"].items() if v} == {}
    assert "Chapter 1" in report["results_text"] and "smoke" in report["results_text"]
    assert (SCREENSHOTS / "00_datasets_desktop.png").stat().st_size > 10_000
    assert (SCREENSHOTS / "00_datasets_phone.png").stat().st_size > 10_000


@pytest.mark.after_notebooks  # builds from what the nbval run of notebooks/ wrote, when it ran
def test_tour_page_shows_five_datasets_as_synthetic(built_book):
    text = (built_book.parent / "book" / "generated" / "00_datasets.html").read_text()
    for name in ("brain_mri_yes_no", "brain_tumor_mri_4class", "chest_xray", "lgg_mri_segmentation", "pcam"):
        assert f"{name}: SYNTHETIC" in text
    assert text.count("<img") >= 5


@pytest.mark.after_notebooks  # builds from what the nbval run of notebooks/ wrote, when it ran
def test_chapter_pages_open_with_the_run_and_hide_the_plumbing(built_book):
    html_root = built_book.parent
    page = (html_root / "book" / "generated" / "01_xception_brain_tumor.html").read_text()
    assert "What you are looking at" in page and "smoke" in page
    assert "<h1>Chapter 1: " in page.replace("¶", "")
    assert "tl.notebook.setup()" not in page and "values edited here win" not in page  # hidden inputs
    assert 'class="tl-runcard"' in page  # the run card as a table
    download = json.loads((html_root / "_sources" / "book" / "generated" / "01_xception_brain_tumor.ipynb").read_text())
    sources = ["".join(c["source"]) for c in download["cells"]]
    assert any("tl.notebook.setup()" in s for s in sources) and any("values edited here win" in s for s in sources)
    assert "colab.research.google.com/github/tl-medical-book/tl-medical-book/blob/main/notebooks/01_xception_brain_tumor.ipynb" in page
    source = json.loads((html_root / "_notebooks" / "01_xception_brain_tumor.ipynb").read_text())
    assert all(not c.get("outputs") for c in source["cells"])


@pytest.mark.after_notebooks  # builds from what the nbval run of notebooks/ wrote, when it ran
def test_chapter_pages_leave_progress_bars_out(built_book):
    """Progress bars are for a reader watching a cell: executed notebooks keep none (the runner
    and the tests set TL_PROGRESS=0), and a page drops stderr, where a reader's own run in
    Jupyter would carry them (_config.yml: nb_output_stderr remove)."""
    import yaml

    for notebook in sorted((REPO / "notebooks").glob("0*.ipynb")):
        assert "it/s]" not in notebook.read_text(), f"{notebook.name} keeps a progress bar"
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert config["sphinx"]["config"]["nb_output_stderr"] == "remove"
    page = (built_book.parent / "book" / "generated" / "05_pcam_resnet50_pytorch.html").read_text()
    assert "it/s]" not in page and "epoch 1/" not in page


# --- the page preparation alone, without a build ------------------------------------------

def _notebook() -> dict:
    code = lambda source, tags=(), outputs=(): {"cell_type": "code", "metadata": {"tags": list(tags)},  # noqa: E731
                                                "source": source, "outputs": list(outputs), "execution_count": 1}
    return {"nbformat": 4, "nbformat_minor": 4, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source":
            "# Four kinds of scan\n\n[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            "(https://colab.research.google.com/github/x/y/blob/main/notebooks/02_x.ipynb)\n\nText."},
        code("import tl_helpers as tl\ntl.notebook.setup()"),
        code('PROFILE = "smoke"', tags=["parameters"]),
        code('# Parameters\nPROFILE = "cpu"\nDATA_DIR = "/work/shared/data"\nOUTPUT_DIR = "/home/me/book/results/cpu"\n',
             tags=["injected-parameters"]),
        {"cell_type": "markdown", "metadata": {}, "source": "## Training the head"},
        code("tl.plotting.plot_training_curves(history)", outputs=[
            {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}},
            {"output_type": "stream", "name": "stdout", "text": "saved /tmp/tl_ch2_abc/model.keras\n"}]),
        code("tl.notebook.finish(card, OUTPUT_DIR, OVERWRITE)", outputs=[
            {"output_type": "stream", "name": "stdout", "text": "Run card: ... /work/main/x\n"}]),
    ], "metadata": {"papermill": {"parameters": {"DATA_DIR": "/work/shared/data", "IMAGE_SIZE": 192},
                                  "input_path": "/work/main/notebooks/02_x.ipynb"}}}


CARD = {"notebook": "02_x", "profile": "cpu", "seed": 0, "started_utc": "2026-11-22T03:15:19+00:00",
        "data": {"brain_tumor_mri_4class": {"source": "real data",
                                            "counts": {"Training": {"glioma": 1321, "meningioma": 1339, "notumor": 1591, "pituitary": 1457}},
                                            "splits": {"train": 3996, "val": 857, "test": 855},
                                            "test_split": "carved from Training/"}},
        "model": {"backbone": "efficientnet_lite0", "weights": "file /work/main/.venv/lib/site-packages/w.pth"},
        "metrics": {"accuracy": {"value": 0.96, "split": "test", "ci95": [0.94, 0.97]},
                    "roc_auc": {"value": 0.99, "split": "test", "ci95": [0.98, 1.0]}},
        "notes": [], "wall_time_s": 12.0, "hardware": {"machine": "x86_64", "cpu_count": 2, "gpu": None},
        "versions": {"python": "3.11"}}
ARTICLE = {"chapter": 2, "backbone": "EfficientNetB3", "test_set": "Testing/, 1,311 images", "prevalence": "4 classes",
           "article": {"title": "An article", "author": "Someone", "url": "https://example.org/a"},
           "rows": [{"metric": "accuracy", "article": 0.9923, "article_note": "Testing/", "comparable": False,
                     "why": "another test set"}, {"metric": "roc_auc"}, {"metric": "missing_metric"}]}


def test_prepare_page_numbers_hides_scrubs_and_captions():
    nb = book.prepare_page(_notebook(), "02_x", CARD, ARTICLE)
    cells = nb["cells"]
    assert cells[0]["source"].startswith("# Chapter 2: Four kinds of scan") and "colab-badge" not in cells[0]["source"]
    summary = cells[0]["source"]
    assert "What you are looking at" in summary and "`cpu`" in summary and "EfficientNet-Lite0" in summary
    assert "EfficientNetB3" in summary and "https://example.org/a" in summary
    assert "2026-11-22" in summary and "855 images" in summary
    cost = summary.split("What you are looking at\n:class: tip\n")[1].splitlines()[0]
    assert cost == ("- **Cost:** this `cpu` run took 12 s on 2 CPU cores, peak memory not recorded by this run; "
                    "no GPU run yet. Data to download: about 150 MB from Kaggle (brain_tumor_mri_4class).")
    hidden = [c for c in cells if "remove-input" in c.get("metadata", {}).get("tags", [])]
    assert len(hidden) == 3  # the setup, parameters and injected-parameters cells, still in the notebook
    injected = next(c for c in cells if "injected-parameters" in c["metadata"].get("tags", []))
    assert "DATA_DIR = None" in injected["source"] and "/home/" not in injected["source"]
    assert not MACHINE_PATH.search(json.dumps(nb))
    figure = next(c for c in cells if "plot_training_curves" in c["source"])
    assert figure["metadata"]["mystnb"]["figure"]["caption"].startswith(
        "Figure 1. Training the head: training curves (loss, accuracy): train solid, validation dashed")
    assert "Training the head" in figure["metadata"]["mystnb"]["image"]["alt"]
    assert figure["outputs"][0]["data"]["image/png"] == "iVBORw0KGgo="  # image data untouched
    finish = cells[-1]
    assert 'class="tl-runcard"' in finish["outputs"][0]["data"]["text/html"]


def test_results_page_has_a_table_and_a_figure_per_chapter(tmp_path):
    card_file = tmp_path / "02_x.json"
    card_file.write_text(json.dumps(CARD))
    text = book.results_page([card_file], {"02_x": ARTICLE}, figures_dir=tmp_path)
    assert "## Chapter 2: 02_x" in text or "## Chapter 2:" in text
    assert '<table class="table tl-results">' in text and "<th>field reference</th>" in text
    row = re.sub(r' data-label="[^"]*"', "", next(line for line in text.splitlines() if line.startswith("<tr><td")))
    assert row.startswith('<tr><td>accuracy</td><td>0.960<br><span class="tl-ci">(0.940-0.970)</span></td><td>0.992<br>'
                          "<small>Testing/</small></td><td>-</td><td><strong>no</strong>; test set: 855 images")
    assert "backbone: EfficientNet-Lite0 <em>vs</em> EfficientNetB3" in text
    assert "missing_metric" not in text
    assert text.count("```{figure}") == 1 and (tmp_path / "results_02_x.svg").stat().st_size > 1000
    assert "Testing/, 1,311 images" in text


def test_results_page_names_both_metric_definitions_when_they_differ(tmp_path):
    card_file = tmp_path / "02_x.json"
    card_file.write_text(json.dumps(CARD))
    article = dict(ARTICLE, rows=[{"metric": "roc_auc", "article": 0.986, "comparable": False,
                                   "definition": "from probabilities", "article_definition": "from raw logits"}])
    text = book.results_page([card_file], {"02_x": article}, figures_dir=tmp_path)
    assert "metric: from probabilities <em>vs</em> from raw logits" in text
    plain = book.results_page([card_file], {"02_x": ARTICLE}, figures_dir=tmp_path)
    assert "metric:" not in plain


def test_results_page_shows_a_seed_mean_with_its_spread(tmp_path):
    card = json.loads(json.dumps(CARD))
    card["metrics"].update({"auc_seed_mean": {"value": 0.95, "split": "test"},
                            "auc_seed_sd": {"value": 0.012, "split": "test"}})
    card_file = tmp_path / "02_x.json"
    card_file.write_text(json.dumps(card))
    text = book.results_page([card_file], {"02_x": dict(ARTICLE, rows=[{"metric": "auc_seed_mean"}])},
                             figures_dir=tmp_path)
    assert "0.950<br><span class=\"tl-ci\">(sd 0.012 over seeds)</span>" in text
    assert book.metric_label("roc_auc_seed_sd") == "ROC AUC, sd over seeds"


def test_prepare_page_gives_each_figure_its_own_number_and_caption():
    """A cell drawing two figures (chapter 4's U-Net and ResUNet curves) gave two "Figure 8"s."""
    nb = _notebook()
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}}
    nb["cells"].insert(5, {"cell_type": "code", "metadata": {}, "execution_count": 2, "outputs": [
        png, {"output_type": "stream", "name": "stdout", "text": "best epoch 3\n"}, dict(png)], "source":
        'display(tl.plotting.plot_training_curves({"pretrained U-Net": a}, metrics=("loss", "dice")))\n'
        'display(tl.plotting.plot_training_curves({"ResUNet": b}, metrics=("loss", "dice")))'})
    nb["cells"].insert(6, {"cell_type": "code", "metadata": {"caption": "What the chapter says it shows."},
                           "execution_count": 3, "outputs": [dict(png)], "source": "fig = draw()\nfig"})
    nb["cells"].insert(7, {"cell_type": "code", "metadata": {}, "execution_count": 4, "outputs": [dict(png)],
                           "source": "tl.plotting.plot_mask_overlay(images, masks)"})
    cells = book.prepare_page(nb, "04_x", CARD, {"chapter": 4})["cells"]
    captions = [c["metadata"]["mystnb"]["figure"]["caption"] for c in cells if "mystnb" in c["metadata"]]
    assert [c.split(".")[0] for c in captions] == [f"Figure {n}" for n in range(1, 6)]
    assert "training curves of pretrained U-Net (loss, dice)" in captions[0]
    assert "training curves of ResUNet (loss, dice)" in captions[1]
    assert captions[2] == "Figure 3. What the chapter says it shows."
    assert "no model has drawn anything yet" in captions[3] and "red the model's" not in captions[3]
    assert not any(PLACEHOLDER.search(c) for c in captions)
    continued = next(c for c in cells if c["metadata"].get("tl_continues"))
    assert "remove-input" in continued["metadata"]["tags"] and continued["source"] == ""
    assert [o.get("text") for o in continued["outputs"]] == [None]  # the second figure; the print stayed above


def test_chapter_sections_lose_their_numbers_and_the_run_card_folds():
    nb = _notebook()
    nb["cells"][4]["source"] = "## 3. Training the head\n\nText about 2. things."
    cells = book.prepare_page(nb, "02_x", CARD, ARTICLE)["cells"]
    assert cells[4]["source"] == "## Training the head\n\nText about 2. things."
    card_html = cells[-1]["outputs"][0]["data"]["text/html"]
    assert card_html.startswith('<details class="tl-runcard-details"><summary>Run card: how this run was made and its 2 numbers')
    assert "<td>ROC AUC</td>" in card_html and "<td>roc_auc</td>" not in card_html


def test_results_page_opens_with_an_overview_of_every_chapter(tmp_path):
    """Issue 24: one row per chapter first: headline, what it was scored on, article, field, difference."""
    card = json.loads(json.dumps(CARD))
    card["scored"] = {"test": {"count": 598}}
    card["notes"] = ["near-duplicate audit (pHash within 4 bits): 257 of 855 test images have one in an earlier split"]
    card_file = tmp_path / "02_x.json"
    card_file.write_text(json.dumps(card))
    article = dict(ARTICLE, overview={"metrics": ["not_on_the_card", "accuracy"], "theirs": ["accuracy"],
                                      "article_label": "accuracy", "difference": "another test set"})
    text = book.results_page([card_file], {"02_x": article}, figures_dir=tmp_path)
    assert text.index("## At a glance") < text.index("## Chapter 2")
    row = re.sub(r' data-label="[^"]*"', "", next(line for line in text.splitlines() if "02_x.html" in line))
    assert row == ('<tr><td><a href="02_x.html">2</a></td><td>accuracy <strong>0.960</strong> <span class="tl-ci">'
                   '(0.940-0.970)</span></td><td>598 of 855 test images (near-duplicates of earlier splits left out)'
                   '</td><td>accuracy 0.992</td><td>-</td><td>another test set</td></tr>')
    assert "What the numbers mean" in text and "**ECE**" in text
    without = book.results_page([card_file], {"02_x": ARTICLE}, figures_dir=tmp_path)
    assert "At a glance" not in without  # no overview spec: no row invented


def test_scored_text_reads_patients_for_a_per_patient_metric():
    card = {"data": {"lgg_mri_segmentation": {"splits": {"test": {"slices": 141, "patients": 4}}}}}
    assert book.scored_text(card, "dice_volumetric_per_patient_mean") == "4 test patients"
    assert book.scored_text(card, "stage1_roc_auc") == "141 test slices"
    card["scored"] = {"stage1": {"count": 141}}
    assert book.scored_text(card, "stage1_roc_auc") == "141 test slices"
    card["scored"]["cv"] = {"count": 20, "what": "patients, cross-validated"}  # named by the card
    assert book.scored_text(card, "cv_pipeline_dice_volumetric_per_patient_mean") == "20 patients, cross-validated"
    assert book.scored_text(card, "dice_volumetric_per_patient_mean") == "4 test patients"


def test_scored_text_counts_the_split_a_headline_was_scored_on():
    """Chapter 5's headline is on PCam's official validation split, not on its 1,800 test patches."""
    card = {"data": {"pcam": {"splits": {"official_valid": 3000, "test": 1800, "train": 8400}}},
            "scored": {"test": {"count": 1800}, "official_valid": {"count": 3000}}}
    assert book.scored_text(card, "official_valid_roc_auc") == "3,000 official valid patches"
    assert book.scored_text(card, "roc_auc") == "1,800 test patches"
    card = {"data": {"chest_xray": {"splits": {"test": 780}}}, "scored": {"domain_a": {"count": 744}},
            "notes": ["near-duplicate audit: 36 of 780 test films have one in an earlier group"]}
    assert book.scored_text(card, "domain_a_roc_auc") == (  # a prefix that names no split: the test split
        "744 of 780 test films (near-duplicates of earlier splits left out)")


def test_run_facts_name_the_backbone_from_the_parameters_when_the_model_does_not():
    """Chapter 4's card records BACKBONE among its parameters only; the results page said '?'."""
    card = {"parameters": {"BACKBONE": "efficientnet_lite0"}, "model": {"weights": "ImageNet"}}
    assert book.run_facts(card)["backbone"] == book.run_facts(
        {"model": {"backbone": "efficientnet_lite0"}})["backbone"] != "?"


def test_comparison_names_the_cases_a_cross_validated_number_rests_on():
    facts = {"synthetic": False, "test": "141 slices of 4 patients, carved by patient", "prevalence": "",
             "backbone": "EfficientNet-Lite0", "scored": {"cv": {"count": 20, "what": "patients, 5-fold cross-validated"}}}
    row = {"metric": "cv_pipeline_dice_volumetric_per_patient_mean", "article": None, "comparable": False,
           "field": {"value": 0.82, "source": "Buda et al. 2019", "note": "110 patients"}, "why": ""}
    text = book._comparison_text(row, facts, {})
    assert "test set: 20 patients, 5-fold cross-validated <em>vs</em> 110 patients" in text
    assert "141 slices" in book._comparison_text(dict(row, metric="dice_mean"), facts, {})


def test_a_plot_curves_caption_names_its_axes():
    from tl_helpers.workflow.captions import describe_call, plot_calls

    call = plot_calls('fig = tl.plotting.plot_curves(curves, "films shown", "validation ROC AUC")')[0]
    text = describe_call(call, "8. Domain B")
    assert text.startswith("8. Domain B: validation ROC AUC against films shown, one line per run")
    assert not PLACEHOLDER.search(text)
