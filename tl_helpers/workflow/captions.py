"""Figure captions of the book's pages, written from what each figure cell draws.

A chapter may give a figure its own caption: `caption` in the cell's metadata (or under
`tl`), or `caption` in the figure output's metadata. Otherwise the caption is read from the
cell's code with `ast`: which plotting helper it calls (tl.plotting, tl.calibration,
tl.uncertainty) and with what (the grid's title, the training phases and metrics, whether
masks are predicted yet), under the section the cell belongs to. Never a placeholder.
"""
from __future__ import annotations

import ast
import re

PLACEHOLDER = re.compile(r"A figure (of the section|drawn by this chapter)")  # what captions used to say


def _literal(node) -> str | None:
    """A string (or f-string, its fields as "..."), or tuple/list of strings, as text; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "..." for v in node.values)
    if isinstance(node, (ast.Tuple, ast.List)):
        parts = [_literal(e) for e in node.elts]
        return ", ".join(dict.fromkeys(parts)) if parts and all(parts) else None
    return None


def plot_calls(source: str) -> list[ast.Call]:
    """The calls of a `plot_*` function in a cell's code, in the order they run (reading order).

    Used by the book machinery (build.prepare_page).
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: no calls to read
        return []
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "attr", getattr(n.func, "id", "")).startswith("plot_")]
    return sorted(calls, key=lambda n: (n.lineno, n.col_offset))


def _name(call: ast.Call) -> str:
    return getattr(call.func, "attr", getattr(call.func, "id", ""))


def _keywords(call: ast.Call) -> dict:
    return {k.arg: k.value for k in call.keywords if k.arg}


def _dict_keys(node) -> str | None:
    """The literal keys of a dict display ({"before": ..., "after": ...}) joined; else None."""
    if isinstance(node, ast.Dict) and node.keys and all(_literal(k) for k in node.keys):
        names = [_literal(k) for k in node.keys]
        return " and ".join(names) if len(names) < 3 else ", ".join(names[:-1]) + " and " + names[-1]
    return None


def describe_call(call: ast.Call, section: str) -> str:
    """One or two sentences on what the figure drawn by `call` shows, under `section`.

    Used by the book machinery (build.prepare_page).
    """
    name, kw = _name(call), _keywords(call)
    first = call.args[0] if call.args else None
    where = f"{section}: " if section else ""
    if name == "plot_image_grid":
        title = _literal(kw.get("suptitle")) or section or "Samples"
        if "predictions" in kw:
            return f"{title}: test images titled true / predicted class, green when the model is right, red when wrong."
        return f"{title}: sample images, each titled with its label."
    if name == "plot_mask_overlay":
        titles = _literal(kw.get("titles"))
        what = f" ({titles} slices)" if titles and "..." not in titles else ""
        if len(call.args) >= 3 or "pred_masks" in kw:
            return (f"{where}tumour masks{what}: green is the expert's outline, red the model's; the Dice score "
                    "above a prediction says how much the two overlap (1 is perfect).")
        return f"{where}MRI slices{what} with the expert's tumour mask in green; no model has drawn anything yet."
    if name == "plot_training_curves":
        phases = _dict_keys(first)
        metrics = _literal(kw.get("metrics")) or "loss, accuracy"
        of = f" of {phases}" if phases else ""
        several = phases is None or "," in phases or " and " in phases
        return (f"{where}training curves{of} ({metrics}): train solid, validation dashed, epoch by epoch"
                + ("; a dotted line marks where a new phase starts" if several else "")
                + ". A widening gap between the two lines means overfitting.")
    if name == "plot_curves":
        x, y = (_literal(call.args[k]) if len(call.args) > k else None for k in (1, 2))
        return f"{where}{y or 'a score'} against {x or 'the x axis'}, one line per run; a ring marks each best point."
    if name == "plot_confusion_matrix":
        normal = " (each row sums to 1)" if "normalize" in kw else ""
        return (f"{where}confusion matrix on the test split{normal}: rows are the true class, columns the "
                "prediction; correct answers lie on the diagonal.")
    if name == "plot_roc":
        return (f"{where}ROC curve on the test split: each point trades false alarms (right) for found cases "
                "(up); the dotted diagonal is guessing.")
    if name == "plot_reliability_diagram":
        curves = _dict_keys(first)
        of = f" of {curves}" if curves else ", before and after temperature scaling"
        return (f"{where}reliability diagram{of}: accuracy against mean confidence in each bin of test cases; "
                "the dotted diagonal is a perfectly calibrated model, and the legend gives each line's ECE.")
    if name == "plot_mc_predictions":
        positive = _literal(kw.get("positive_name")) or "positive"
        return (f"{where}each test case's mean P({positive}) over the MC-dropout passes against its spread: "
                "green circles right, red crosses wrong. Mistakes near 0.5 or with a wide spread are the ones "
                "a referral would catch.")
    if name == "plot_accuracy_coverage":
        return (f"{where}accuracy on the cases the model keeps as the least certain are referred to a reader "
                "(left: none referred), one line per way of ranking uncertainty.")
    if name == "plot_heatmap_overlay":
        regions = ("; the white outline is the region checked (the true tumour, or the centre the label is about)"
                   if "regions" in kw else "")
        return (f"{where}Grad-CAM heat maps over test images (red: where the evidence for the predicted class "
                f"lies), each titled right or wrong with its probability{regions}.")
    words = name.removeprefix("plot_").replace("_", " ")
    title = _literal(kw.get("title")) or _literal(kw.get("suptitle"))
    return f"{where}{words}" + (f", \"{title}\"" if title else "") + "."


def given_caption(cell: dict, output: dict | None = None) -> str | None:
    """The caption a chapter gave a figure (output metadata, then cell metadata), or None.

    Used by the book machinery (build.prepare_page).
    """
    metadata = cell.get("metadata", {})
    for place in ((output or {}).get("metadata", {}), metadata, metadata.get("tl", {})):
        if isinstance(place, dict) and isinstance(place.get("caption"), str) and place["caption"].strip():
            return place["caption"].strip()
    return None


def figure_caption(source: str, section: str, index: int = 0, cell: dict | None = None,
                   output: dict | None = None) -> str:
    """The caption (without its number) of the `index`-th figure a cell draws.

    A caption the chapter gave wins; else the `index`-th plot call of the cell (the last one
    when a loop draws more figures than calls); else the title set in the code, under the
    section. Used by the book machinery (build.prepare_page).
    """
    given = given_caption(cell or {}, output)
    if given:
        text = given
    else:
        calls = plot_calls(source)
        if calls:
            text = describe_call(calls[min(index, len(calls) - 1)], section)
        else:
            title = re.search(r"""(?:set_title|suptitle|title=)\(?\s*f?["']([^"'{}]+)["']""", source)
            text = (f"{section}: " if section else "") + (title.group(1) if title else "the figure this cell's code draws")
    text = text.strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
