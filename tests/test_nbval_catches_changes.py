"""The notebook regression check can fail: change a stored count and nbval must say so."""
import json
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
                            env={**__import__("os").environ, "TL_PROJECT_ROOT": str(REPO)})
    assert result.returncode == 1, result.stdout[-3000:]
    assert '"yes": 37' in result.stdout and '"yes": 36' in result.stdout
