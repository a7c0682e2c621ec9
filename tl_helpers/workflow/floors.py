"""Smoke floors: what each chapter's smoke run must reach on its synthetic data
(`tests/smoke_floors.yml`, where each floor's reason is written).

The test suite holds the nbval runs to them (tests/test_smoke_floors.py, and the torch-backend
runs), and CI's Colab-stack check holds its runner runs to them:

    python -m tl_helpers.workflow.floors RUNS_DIR STEM [STEM ...]

prints each floor with the card's value and exits 1 when a card misses one.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from ..paths import project_root


def smoke_floors(path: str | Path | None = None) -> dict[str, dict[str, float]]:
    """{notebook stem: {metric: floor}} from `path` (default the project's tests/smoke_floors.yml).

    Used by the book machinery (tests, scripts/colab_stack_check.sh)."""
    path = Path(path) if path else project_root() / "tests" / "smoke_floors.yml"
    return yaml.safe_load(path.read_text())


def below_floor(card: dict, floors: dict | None = None) -> list[str]:
    """The floors a run card misses, in words (empty when it clears them all); a missing or
    NaN value misses. Used by the book machinery (tests, scripts/colab_stack_check.sh)."""
    floors = smoke_floors() if floors is None else floors
    missed = []
    for metric, floor in floors[card["notebook"]].items():
        value = card["metrics"].get(metric, {}).get("value")
        if value is None or not value >= floor:  # NaN misses too
            missed.append(f"{card['notebook']}: {metric} = {value} is below its smoke floor {floor}")
    return missed


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module doc). Used by scripts/colab_stack_check.sh."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        print("usage: python -m tl_helpers.workflow.floors RUNS_DIR STEM [STEM ...]", file=sys.stderr)
        return 2
    floors, missed = smoke_floors(), []
    for stem in argv[1:]:
        card_path = Path(argv[0]) / f"{stem}.json"
        if not card_path.is_file():
            missed.append(f"{stem}: no run card at {card_path}")
            continue
        card = json.loads(card_path.read_text())
        for metric, floor in floors[stem].items():
            print(f"  {stem}: {metric} {card['metrics'].get(metric, {}).get('value')} (floor {floor})")
        missed += below_floor(card, floors)
    for line in missed:
        print(f"  BELOW: {line}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
