"""The evaluation protocol every chapter follows, in one place.

1. **Choose on validation**: the decision threshold for a stated goal (e.g. sensitivity >=
   0.95) and the temperature that calibrates the probabilities. The test split plays no part.
2. **Score the test split once**, at the usual 0.5 and at the chosen threshold, every number
   with its 95% interval (resampling whole groups, e.g. patients, when `groups` are given).
   A second call is refused unless it says it is a second look.
3. **Calibration before and after** the temperature: ECE, Brier score, reliability diagram.
4. **Cases for Grad-CAM**: a few right and a few wrong answers, drawn reproducibly.
5. Exporting the model with its card and checking the reload is serving's job
   (`tl.model_cards.export_and_check`), fed by `BinaryProtocol.card_fields()`.

Chapter 1 teaches each step in the open; chapters 2 to 5 call them, a step a line or two.
Everything here works on predictions (arrays), so it needs no framework.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .calibration import apply_temperature, calibration_report, fit_temperature, plot_reliability_diagram
from .metrics import Estimate, OperatingPoint, binary_report, choose_threshold


class SecondLookError(RuntimeError):
    """The test split was scored already: settings must not be tuned on it.

    Used by tl.protocol.BinaryProtocol.score_test (every binary chapter).
    """


@dataclass
class TestScores:
    """The test split scored at 0.5 and at the threshold chosen on validation.

    `at_half` and `at_point` are reports of tl.metrics.binary_report (the threshold-free
    entries, ROC AUC and sensitivity at a fixed specificity, are the same in both).
    Used by chapters 1, 3, 4 and 5 (tl.protocol.BinaryProtocol.score_test).
    """

    at_half: dict[str, Estimate]
    at_point: dict[str, Estimate]
    point: OperatingPoint
    count: int

    def table(self):
        """Both reports side by side, every entry as `value (low-high)`: a DataFrame to display."""
        import pandas as pd

        chosen = f"threshold {self.point.threshold:.3f} (chosen on validation)"
        threshold_free = ("roc_auc",) + tuple(name for name in self.at_half if name.startswith("sensitivity_at_"))
        return pd.DataFrame({
            "threshold 0.5": {name: format(value) for name, value in self.at_half.items()},
            chosen: {name: "" if name in threshold_free else format(value) for name, value in self.at_point.items()},
        })

    def record(self, card, main: str = "half", prefix: str = "", other_prefix: str = "operating_point",
               other_names: Sequence[str] = ("accuracy", "sensitivity", "specificity"), split: str = "test"):
        """Write the scores on the run card: the `main` report ("half" or "point") whole under
        `prefix`, and `other_names` of the other report under `other_prefix`; the number of cases
        scored goes on the card too (RunCard.scored, under `prefix`, else `split`)."""
        first, second = (self.at_half, self.at_point) if main == "half" else (self.at_point, self.at_half)
        if hasattr(card, "scored"):  # how many cases these numbers rest on, for the results page
            card.scored(prefix or split, self.count)
        card.metrics(first, prefix=prefix, split=split)
        card.metrics(second, prefix=other_prefix, split=split, names=list(other_names))
        return self

    # chapter 3: the other report's entries named by a suffix (`domain_a_sensitivity_at_half`)
    def record_with_suffix(self, card, prefix: str, suffix: str = "_at_half", main: str = "point",
                           other_names: Sequence[str] = ("sensitivity", "specificity"),
                           split: str = "test"):
        """Like `record`, but the other report's `other_names` go on the card as
        `<prefix>_<name><suffix>`, beside the `main` report's `<prefix>_<name>`.

        Used by chapter 3 (its card names, e.g. `domain_b_frozen_specificity_at_half`).
        """
        self.record(card, main, prefix, other_names=(), split=split)
        other = self.at_half if main == "point" else self.at_point
        card.metrics({f"{name}{suffix}": other[name] for name in other_names}, prefix=prefix, split=split)
        return self


def scores_side_by_side(sets: Mapping[str, TestScores]):
    """Several held-out sets scored with the same choices, one column each (a DataFrame to
    display): ROC AUC and the threshold-free sensitivity, then accuracy, sensitivity and
    specificity at 0.5 and at the threshold chosen on validation, every entry `value (low-high)`.

    Used by chapter 5.
    """
    import pandas as pd

    columns = {}
    for name, scores in sets.items():
        chosen = f"at {scores.point.threshold:.3f} (chosen on validation)"
        rows = {"ROC AUC": scores.at_half["roc_auc"], "patches": scores.count}
        rows.update({key.replace("_", " "): value for key, value in scores.at_half.items()
                     if key.startswith("sensitivity_at_")})
        for measure in ("accuracy", "sensitivity", "specificity"):
            rows[f"{measure} at 0.5"] = scores.at_half[measure]
            rows[f"{measure} {chosen}"] = scores.at_point[measure]
        columns[name] = {row: format(value) for row, value in rows.items()}
    return pd.DataFrame(columns)


@dataclass
class BinaryProtocol:
    """The protocol for a yes/no model, one step per method.

    goal: what the threshold is chosen for on validation: ("sensitivity", 0.95),
        ("specificity", 0.9) or "youden" (tl.metrics.choose_threshold).
    at_specificity: also report the sensitivity where the test ROC curve reaches it.
    Taught in chapter 1; used by chapters 3, 4 and 5.
    """

    goal: tuple | str
    seed: int = 0
    at_specificity: float | None = None
    n_boot: int = 1000
    point: OperatingPoint | None = None
    temperature: float | None = None
    scores: TestScores | None = field(default=None, repr=False)

    # --- step 1: choices made on validation ------------------------------------------------
    def choose_on_validation(self, y_val, p_val) -> "BinaryProtocol":
        """Fix the threshold (for `goal`) and the temperature from validation predictions."""
        y_val = np.asarray(y_val).astype(int)
        self.point = choose_threshold(y_val, p_val, tuple(self.goal) if not isinstance(self.goal, str) else self.goal)
        self.temperature = fit_temperature(p_val, y_val)
        return self

    def describe_choice(self, positive: str = "positive") -> str:
        """Two lines: the threshold with what it gave on validation, and the temperature."""
        point = self._chosen()
        return (f"threshold for {point.goal}: P({positive}) >= {point.threshold:.3f} (on validation: sensitivity "
                f"{point.sensitivity:.3f}, specificity {point.specificity:.3f})\n"
                f"temperature fitted on validation: {self.temperature:.3f}")

    # --- step 2: the test split, once -------------------------------------------------------
    def score_test(self, y_test, p_test, groups=None, second_look: bool = False) -> TestScores:
        """Score the test split at 0.5 and at the chosen threshold, with 95% intervals.

        `groups` (patients, slides) make every interval resample whole groups. A second call
        raises SecondLookError unless `second_look=True` (then label what it gives as such).
        """
        point = self._chosen()
        if self.scores is not None and not second_look:
            raise SecondLookError("the test split was scored already; choose settings on validation, or pass "
                                  "second_look=True and report the result as a second look")
        self.scores = self._scored(y_test, p_test, point, groups)
        return self.scores

    def score_other_test_set(self, y, p, groups=None) -> TestScores:
        """Score a second held-out set (another source, other slides) as `score_test` does,
        with the same threshold, without counting as a look at the test split.

        Like the test split, it must choose nothing: score it once, after every choice is
        fixed on validation. Used by chapter 5 (PCam's official validation split).
        """
        return self._scored(y, p, self._chosen(), groups)

    def _scored(self, y, p, point: OperatingPoint, groups) -> TestScores:
        """A held-out set's reports at 0.5 and at `point` (score_test, score_other_test_set)."""
        options = dict(n_boot=self.n_boot, seed=self.seed, at_specificity=self.at_specificity, groups=groups)
        return TestScores(binary_report(y, p, threshold=0.5, **options),
                          binary_report(y, p, threshold=point, **options), point, len(np.asarray(y)))

    # --- step 3: calibration -----------------------------------------------------------------
    def calibrated(self, p) -> np.ndarray:
        """P(positive) after the temperature fitted on validation."""
        return apply_temperature(p, self._chosen_temperature())

    def _chosen(self) -> OperatingPoint:
        if self.point is None:
            raise RuntimeError("choose_on_validation comes first: the threshold is not chosen yet")
        return self.point

    def _chosen_temperature(self) -> float:
        self._chosen()
        return self.temperature

    # --- step 5: what the model card says about it ----------------------------------------
    def card_fields(self, report: Mapping | None = None) -> dict:
        """Threshold, its goal and the temperature, for tl.model_cards.export_model."""
        point = self._chosen()
        return {"threshold": point.threshold, "threshold_goal": point.goal, "temperature": self.temperature,
                **({"metrics": dict(report)} if report is not None else {})}


def compare_calibration(y_true, versions: Mapping[str, tuple[str, np.ndarray]], card=None, seed: int = 0,
                        n_boot: int = 1000, split: str = "test", plot: bool = True,
                        groups=None) -> dict[str, dict]:
    """ECE and Brier score of several versions of the same predictions, and their reliability diagram.

    versions: {label: (card prefix, probabilities)}, e.g. {"as trained": ("softmax", p),
        "temperature 1.30": ("temperature_scaled", calibrated)}; probabilities are 1-D P(positive)
        or (N, K). Prints one line per version, records each on `card` under its prefix.
    groups: a patient per case, so that intervals resample patients (chapter 4's slices).
    Taught in chapter 1; used by chapters 2, 3, 4 and 5.
    """
    reports = {}
    for label, (prefix, p) in versions.items():
        reports[label] = calibration_report(y_true, p, n_boot=n_boot, seed=seed, groups=groups)
        if card is not None:
            card.metrics(reports[label], prefix=prefix, split=split)
    width = max(len(label) for label in versions)
    for label, report in reports.items():
        print(f"{label:{width}s}  ECE {report['ece']}  Brier {report['brier']}")
    if plot:
        _show(plot_reliability_diagram({label: (y_true, p) for label, (_, p) in versions.items()}))
    return reports


def gradcam_cases(correct, count: int, rng: int | np.random.Generator = 0,
                  what: str = "cases") -> list[int]:
    """Up to `count` right answers drawn at random and the first `count` wrong ones (indices).

    rng: a seed, or a Generator the chapter goes on using. Prints how many of each were shown.
    Taught in chapter 1; used by chapters 2, 4 and 5.
    """
    correct = np.asarray(correct, dtype=bool)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    right, wrong = np.flatnonzero(correct), np.flatnonzero(~correct)
    shown = [*rng.choice(right, min(count, len(right)), replace=False), *wrong[:count]]
    print(f"shown: {min(count, len(right))} of {len(right)} correct {what}, {min(count, len(wrong))} of "
          f"{len(wrong)} mistakes")
    return [int(i) for i in shown]


# --- chapter 5 (issue 23): the reliability diagram of compare_calibration is shown ---------------

def _show(fig) -> None:
    """Display a figure in a running notebook; elsewhere (scripts, tests) do nothing.

    The book's figures are built without pyplot, so a figure a helper draws but does not
    return would vanish. Used by tl.protocol.compare_calibration.
    """
    import sys

    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None and getattr(shell, "kernel", None) is not None:
        from IPython.display import display

        display(fig)
