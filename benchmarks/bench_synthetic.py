"""How long the smoke-size synthetic datasets take to draw (prints seconds per dataset).

    .venv/bin/python benchmarks/bench_synthetic.py
"""
import tempfile
import time
from pathlib import Path

from tl_helpers import data
from tl_helpers.data import synthetic

with tempfile.TemporaryDirectory() as tmp:
    total = 0.0
    for name in synthetic.SIZES["smoke"]:
        started = time.perf_counter()
        root = synthetic.synthesize(name, Path(tmp) / name, seed=0)
        seconds = time.perf_counter() - started
        total += seconds
        files = sum(1 for f in root.rglob("*") if f.is_file())
        print(f"{name:24s} {seconds:5.2f} s  {files:4d} files  {data.verify(name, root).counts}")
    print(f"all five smoke sets: {total:.1f} s")
