"""Loaded by any pytest run in this checkout, `pytest --nbval notebooks/03_x.ipynb` alone included.

No progress bars in this process or the kernels it starts (nbval's too): they inherit it, so
the executed notebooks compare with their stored outputs, which the runner made without bars
(issue 27: run on a notebook alone, tests/conftest.py is not loaded and every bar failed a cell).
"""
import os

os.environ["TL_PROGRESS"] = "0"
