"""The setup cell in a simulated Colab: a fake `google.colab` module, the repository URL
redirected to this checkout (git's `url.<base>.insteadOf`), pip recorded instead of run.

What runs for real: the generated cell itself, `git clone`, importing tl_helpers from the
clone, `tl.notebook.setup()`. Run twice, as a reader re-running the cell would.
"""
import json
import os
import subprocess
import sys

import tl_helpers as tl

HARNESS = r"""
import json, os, subprocess, sys, types
sys.modules["google"] = types.ModuleType("google")
sys.modules["google.colab"] = types.ModuleType("google.colab")
calls, real_run = [], subprocess.run
def recording_run(command, *args, **kwargs):
    calls.append(list(map(str, command)))
    if "pip" in command:  # Colab's pip would fetch from PyPI: recorded, not run
        return subprocess.CompletedProcess(command, 0)
    return real_run(command, *args, **kwargs)
subprocess.run = recording_run
exec(compile(CELL.replace("tl.notebook.setup()", "tl.notebook.setup(BOOK_DIR)"), "<setup cell>", "exec"))
print(json.dumps({"calls": calls, "cwd": os.getcwd(), "tl_helpers": tl.__file__}))
"""


def run_cell(book_dir, env):
    """Run the generated setup cell in a fresh Python, its clone going to `book_dir` instead of /content/book."""
    cell = tl.notebook.setup_cell_source().replace(tl.notebook.COLAB_BOOK_DIR, str(book_dir))
    code = f"CELL = {cell!r}\nBOOK_DIR = {str(book_dir)!r}\n{HARNESS}"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                            cwd=str(book_dir.parent))
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_setup_cell_in_simulated_colab(tmp_path):
    root = tl.paths.project_root()
    book_dir = tmp_path / "content" / "book"
    book_dir.parent.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TL_PROJECT_ROOT", "PYTHONPATH")}
    env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.file://{root}.insteadOf",
                "GIT_CONFIG_VALUE_0": tl.notebook.repository_url()})

    first = run_cell(book_dir, env)
    commands = [" ".join(c) for c in first["calls"]]
    assert any(c.startswith("git clone") and tl.notebook.repository_url() in c for c in commands)
    assert (book_dir / "_toc.yml").is_file() and (book_dir / "tl_helpers" / "__init__.py").is_file()
    assert first["tl_helpers"] == str(book_dir / "tl_helpers" / "__init__.py"), "tl_helpers must come from the clone"
    pip = [c for c in first["calls"] if "pip" in c]
    assert len(pip) == 1 and str(book_dir / "requirements-colab.txt") in pip[0] and str(book_dir) in pip[0]
    assert first["cwd"] == str(book_dir / "notebooks")

    again = run_cell(book_dir, env)  # a re-run of the cell: the clone is there, the install done
    assert again["calls"] == [], again["calls"]
    assert again["cwd"] == str(book_dir / "notebooks")
