"""The notebook regression check can fail: change a stored count and nbval must say so."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_nbval_fails_when_a_stored_count_changes(tmp_path):
    notebook = json.loads((REPO / "notebooks" / "00_datasets.ipynb").read_text())
    changed = False
    for cell in notebook["cells"]:
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", []))
            if '"yes": 36' in text:  # the smoke yes/no count printed by verify
                output["text"] = text.replace('"yes": 36', '"yes": 37')
                changed = True
    assert changed, "the tour no longer prints the smoke yes/no count; update this test"
    copy = tmp_path / "notebooks" / "00_datasets.ipynb"
    copy.parent.mkdir()
    copy.write_text(json.dumps(notebook))
    shutil.copy(REPO / "tests" / "nbval_sanitize.cfg", tmp_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--nbval-sanitize-with", "nbval_sanitize.cfg",
                             "-p", "no:cacheprovider", "-q", str(copy)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "TL_PROJECT_ROOT": str(REPO)})
    assert result.returncode == 1, result.stdout[-3000:]
    assert sanitized('"yes": 37') in result.stdout and sanitized('"yes": 36') in result.stdout  # as nbval shows them


def test_pytest_on_one_notebook_alone_turns_progress_bars_off(tmp_path):
    """`pytest --nbval notebooks/NN.ipynb` does not load tests/conftest.py: the checkout's root
    conftest.py must still set TL_PROGRESS=0, or every progress bar fails its cell (issue 27)."""
    (tmp_path / "report_progress.py").write_text(
        "import os\n"
        "def pytest_collection_finish(session):\n"
        "    print('TL_PROGRESS is', repr(os.environ.get('TL_PROGRESS')))\n")
    env = {k: v for k, v in os.environ.items() if k != "TL_PROGRESS"}
    env["PYTHONPATH"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "pytest", "--nbval", "--collect-only", "-q",
                             "-p", "report_progress", "notebooks/00_datasets.ipynb"],
                            cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "TL_PROGRESS is '0'" in result.stdout, result.stdout[-3000:]


def sanitized(text: str) -> str:
    """`text` as nbval compares it, after tests/nbval_sanitize.cfg's patterns, in order."""
    from nbval.plugin import get_sanitize_patterns
    for regex, replace in get_sanitize_patterns((REPO / "tests" / "nbval_sanitize.cfg").read_text()):
        text = re.sub(regex, replace, text)
    return text


def test_sanitizer_masks_a_number_but_not_a_count():
    """Arithmetic that differs between CPUs must compare equal; a changed count must not."""
    same = [("+0.003, -0.012", "-0.001, +0.020"),  # a near-zero paired difference flips sign
            ("0.945 (0.924-0.960)", "0.951 (0.919-0.973)"),  # both bounds of an interval
            ("+0.010 (-0.020 to 0.040)", "+0.030 (0.010-0.050)"),  # a bound that crossed zero
            ("1.0e+00", "2.5e-03"), ("ROC AUC   0.5", "ROC AUC 0.25"),  # exponents; padding
            ("   seed 2\n(c) 0.1 (-0.2 to 0.3)", "  seed 2\n(c) 0.1 (0.2-0.3)")]  # a table's header shifts
    for stored, measured in same:
        assert sanitized(stored) == sanitized(measured), (stored, measured)
    for stored, measured in [("36 films", "37 films"), ("0.5 at epoch 3", "0.5 at epoch 4"), ("seed 2", "seed2")]:
        assert sanitized(stored) != sanitized(measured), (stored, measured)
