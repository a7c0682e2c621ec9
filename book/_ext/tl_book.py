"""Sphinx extension of the book (`sphinx.local_extensions` in _config.yml): header buttons.

A chapter page is built from a staged copy in book/generated/, so the theme's Colab button
would point there; it is pointed at the chapter's notebook in notebooks/ instead. The
download menu gains the source notebook without outputs (written to `_notebooks/` of the
HTML), beside the theme's `.ipynb` of the run the page shows. Figures are numbered per chapter in
their captions (tl_helpers.workflow.build), so Sphinx's book-wide "Fig. N" numbers (which
sphinx-jupyterbook-latex switches on) are switched off. Math is drawn at build time as SVG
(matplotlib's mathtext), so pages need no MathJax from a CDN and read offline. Used by the
book machinery.
"""
from __future__ import annotations

import json
from pathlib import Path

GENERATED = "book/generated/"
OUT_FOLDER = "_notebooks"


def _walk(buttons):
    for button in buttons or []:
        yield button
        yield from _walk(button.get("buttons"))


def source_without_outputs(notebook: Path) -> str:
    """The notebook's JSON with every output and execution count removed."""
    nb = json.loads(notebook.read_text())
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def header_buttons(app, pagename, templatename, context, doctree):
    if not pagename.startswith(GENERATED):
        return
    stem = pagename[len(GENERATED):]
    source = Path(app.srcdir) / "notebooks" / f"{stem}.ipynb"
    if not source.is_file():
        return
    buttons = context.get("header_buttons") or []
    for button in _walk(buttons):
        if "colab.research.google.com" in str(button.get("url", "")):
            button["url"] = button["url"].replace(f"/{GENERATED}", "/notebooks/")
            button["tooltip"] = "Open the chapter's notebook in Google Colab"
    target = Path(app.outdir) / OUT_FOLDER / f"{stem}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(source_without_outputs(source))
    for menu in buttons:
        if menu.get("label") == "download-buttons":
            for button in menu.get("buttons", []):
                if button.get("label") == "download-notebook-button":
                    button["text"] = ".ipynb (this run)"
                    button["tooltip"] = "The notebook with the outputs shown on this page"
            menu["buttons"].insert(0, {
                "type": "link", "url": f"{context['pathto'](OUT_FOLDER, 1)}/{stem}.ipynb",
                "text": ".ipynb (source)", "tooltip": "The chapter's notebook without outputs, to run yourself",
                "icon": "fas fa-code", "label": "download-source-notebook-button"})


def math_as_svg(latex: str, display: bool) -> str:
    """An <img> of `latex` drawn by matplotlib's mathtext (SVG, inline as a data URI)."""
    import base64
    import html
    import io

    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buffer = io.BytesIO()
    mathtext.math_to_image(f"${latex.strip()}$", buffer, format="svg", dpi=96,
                           prop=FontProperties(size=14 if display else 12))
    data = base64.b64encode(buffer.getvalue()).decode()
    kind = "tl-math-block" if display else "tl-math"
    return f'<img class="{kind}" src="data:image/svg+xml;base64,{data}" alt="the formula {html.escape(latex.strip())}">'


def math_offline(app, doctree, docname):
    """Replace the page's math nodes by SVG images; a formula mathtext cannot draw stays as text."""
    import html

    from docutils import nodes

    for node in list(doctree.findall(lambda n: n.tagname in ("math", "math_block"))):
        display = node.tagname == "math_block"
        try:
            image = math_as_svg(node.astext(), display)
        except ValueError:  # not in mathtext's subset of TeX: show the TeX source
            image = f"<code>{html.escape(node.astext())}</code>"
        drawn = nodes.raw("", f'<div class="tl-math-block">{image}</div>' if display else image, format="html")
        node.replace_self(drawn)


def no_mathjax(app, pagename, templatename, context, doctree):
    """Leave out the MathJax script (a CDN): `math_offline` has drawn every formula already."""
    for asset in list(context.get("script_files", [])):
        if "mathjax" in str(getattr(asset, "filename", asset)).lower():
            context["script_files"].remove(asset)


def no_book_wide_figure_numbers(app, config):
    config.numfig = False


def setup(app):
    app.connect("config-inited", no_book_wide_figure_numbers, priority=900)  # after sphinx-jupyterbook-latex
    # after sphinx-book-theme, which builds the header buttons at priority 501
    app.connect("html-page-context", header_buttons, priority=502)
    app.connect("doctree-resolved", math_offline)
    app.connect("html-page-context", no_mathjax, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
