"""Wall time and headline metrics of the committed cpu runs, now and at an earlier commit.

    python benchmarks/cpu_runs_table.py [OLD_COMMIT]   (default: the first commit of today's work)

Reads results/cpu/<notebook>.json from the working tree and from git at OLD_COMMIT, so that
a note can quote "before / after" without typing a number. Headline metrics: those listed for
the chapter in book/article_results.yml (the results page's rows), test split only.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def card_at(commit: str | None, stem: str) -> dict | None:
    """The cpu run card of one chapter, from the working tree (commit None) or from git."""
    path = f"results/cpu/{stem}.json"
    if commit is None:
        file = ROOT / path
        return json.loads(file.read_text()) if file.is_file() else None
    shown = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def headline(card: dict | None, names: list[str]) -> str:
    if not card:
        return "-"
    metrics = card.get("metrics") or {}
    parts = []
    for name in names:
        entry = metrics.get(name)
        if entry and entry.get("split", "test") == "test":
            ci = entry.get("ci95")
            parts.append(f"{name} {entry['value']:.3f}" + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else ""))
    return "; ".join(parts) or "-"


def main(old: str) -> None:
    rows = yaml.safe_load((ROOT / "book" / "article_results.yml").read_text())
    total = {"before": 0.0, "after": 0.0}
    print(f"| chapter | wall before ({old[:7]}) | wall now | headline before | headline now |")
    print("|---|---|---|---|---|")
    for stem, spec in rows.items():
        if stem.startswith("00"):
            continue
        names = [r["metric"] for r in (spec or {}).get("rows", [])]
        before, after = card_at(old, stem), card_at(None, stem)
        walls = [c.get("wall_time_s") if c else None for c in (before, after)]
        for key, wall in zip(total, walls):
            total[key] += wall or 0
        shown = [f"{w / 60:.1f} min" if w else "-" for w in walls]
        fresh = "" if after and after.get("dirty") is False else " (tree dirty or unknown)"
        print(f"| {stem[:2]} | {shown[0]} | {shown[1]}{fresh} | {headline(before, names)} | {headline(after, names)} |")
    print(f"| all | {total['before'] / 60:.1f} min | {total['after'] / 60:.1f} min | | |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "f3c669f")
