"""Chapter 3's CNN on this machine: films per second in training, by input size.

Chapter 3's cpu profile feeds its CNN 48x48 films; issue 24 asked for at least 96x96 within
the chapter's 15 minutes. This times the chapter's own network (its `make_cnn` cell,
executed from the notebook, so the benchmark cannot drift from the chapter) on random
films held in memory, batch 32 as in the cpu profile, with the chapter's optimiser and
loss, at each size, and prints films per second and what one pass over the cpu profile's
domain-A training films costs. No data and no test split are read. Run it alone:

    flock /tmp/tl-cpu.lock .venv/bin/python benchmarks/bench_xray_cnn.py
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tl_helpers as tl  # noqa: E402,F401  (first: it orders the imports TensorFlow needs)
import keras  # noqa: E402
import numpy as np  # noqa: E402

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_xray_perturbation_retraining.ipynb"


def chapter_cnn():
    """The `make_cnn` function of chapter 3, from its notebook cell."""
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    source = next("".join(c["source"]) for c in cells
                  if c["cell_type"] == "code" and "def make_cnn" in "".join(c["source"]))
    source = source.split("\nmodel_a = ")[0]  # the definitions, not the chapter's own model
    namespace = {"keras": keras}
    exec(compile(source, f"{NOTEBOOK.name}: make_cnn", "exec"), namespace)
    return namespace["make_cnn"]


def films_per_second(make_cnn, size: int, batch_size: int, steps: int) -> float:
    model = make_cnn(size, seed=0)
    model.compile(keras.optimizers.Adam(1e-3), "binary_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch_size * steps, size, size, 3)).astype(np.float32)
    y = rng.integers(0, 2, batch_size * steps).astype(np.float32)
    model.fit(x[:batch_size * 2], y[:batch_size * 2], batch_size=batch_size, epochs=1, verbose=0)  # trace
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=1, verbose=0)
    return batch_size * steps / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 150])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--films", type=int, default=2880, help="training films a domain-A epoch (cpu profile)")
    args = parser.parse_args()
    make_cnn = chapter_cnn()
    print(f"chapter 3's CNN, training, batch {args.batch_size}, {os.cpu_count()} CPUs")
    base = None
    for size in args.sizes:
        rate = films_per_second(make_cnn, size, args.batch_size, args.steps)
        base = base or rate
        print(f"{size:4d} px: {rate:7.1f} films/s ({base / rate:4.1f}x the time of {args.sizes[0]} px); "
              f"a pass over {args.films} films {args.films / rate:6.1f} s")


if __name__ == "__main__":
    main()
