"""The package's layout: every module has a short name, rooms import only upwards, no cycles.

Read from the source with `ast` (nothing is imported for the room and cycle rules), so a
stray import inside a function is caught as well as one at the top.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

import tl_helpers

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "tl_helpers"
FACADE_PARTS = {"data.registry", "data.tables", "data.integrity", "data.downloads"}  # reached as tl.data
# The PyTorch path (tl_helpers/__init__.py): none of these may import Keras or TensorFlow.
TORCH_PATH = ("loaders", "augment", "backbones", "torch_training", "metrics", "plotting")


def module_name(path: Path) -> str:
    """tl_helpers/data/images.py -> 'data.images'; tl_helpers/data/__init__.py -> 'data'; root -> ''."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULE_FILES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "__main__.py"}
MODULES = {name: path for name, path in MODULE_FILES.items() if name}  # without the root __init__


def is_package(name: str) -> bool:
    return MODULE_FILES[name].name == "__init__.py"


def room(name: str) -> str:
    return name.split(".")[0]


def resolve(importer: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The tl_helpers modules (names as in MODULE_FILES) that an import statement loads."""
    if isinstance(node, ast.Import):
        found = []
        for alias in node.names:
            if alias.name == "tl_helpers" or alias.name.startswith("tl_helpers."):
                found.append(alias.name.removeprefix("tl_helpers").lstrip("."))
        return found
    if node.level:  # relative: from the importer's package, `level` steps up
        package = importer.split(".") if is_package(importer) else importer.split(".")[:-1]
        if importer == "":
            package = []
        base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
        if node.level - 1 > len(package):
            raise AssertionError(f"{importer}: relative import beyond the package")
        prefix = ".".join(base + ([node.module] if node.module else []))
    elif node.module == "tl_helpers" or (node.module or "").startswith("tl_helpers."):
        prefix = node.module.removeprefix("tl_helpers").lstrip(".")
    else:
        return []
    found = []
    for alias in node.names:
        submodule = f"{prefix}.{alias.name}" if prefix else alias.name
        found.append(submodule if submodule in MODULE_FILES else prefix)  # a submodule, or a name in prefix
    return found


def imports(name: str, module_level_only: bool) -> set[str]:
    """The tl_helpers modules `name` imports: everywhere, or only where the import runs on import."""
    tree = ast.parse(MODULE_FILES[name].read_text(), filename=str(MODULE_FILES[name]))
    found: set[str] = set()

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if module_level_only and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue  # runs when called, not when the module is imported
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.update(resolve(name, child))
            visit(child)

    visit(tree)
    for target in found:
        assert target in MODULE_FILES, f"{name} imports tl_helpers.{target}, which does not exist"
    return found - {name}


def test_the_resolver_reads_relative_and_absolute_imports():
    parse = lambda text: ast.parse(text).body[0]  # noqa: E731
    assert resolve("train.features", parse("from .. import paths")) == ["paths"]
    assert resolve("train.features", parse("from .loaders import load_examples")) == ["train.loaders"]
    assert resolve("techniques.domains", parse("from ..data.images import read_image")) == ["data.images"]
    assert resolve("data.registry", parse("from . import synthetic as synth")) == ["data.synthetic"]
    assert resolve("data", parse("from .registry import dataset_root")) == ["data.registry"]
    assert resolve("data", parse("from . import load")) == ["data"]  # a name, not a module
    assert resolve("workflow.build", parse("from tl_helpers.evaluate import metrics")) == ["evaluate.metrics"]
    assert resolve("workflow.build", parse("import tl_helpers.train.loaders as loaders")) == ["train.loaders"]
    assert resolve("workflow.build", parse("import numpy, os")) == []


# --- (a) every module has a short name --------------------------------------------------------

def test_every_module_has_a_short_name_or_is_part_of_the_data_facade():
    rooms = {name for name in MODULES if "." not in name and is_package(name)}
    assert rooms == set(tl_helpers.ROOMS) - {"paths"}
    values = list(tl_helpers.MODULES.values())
    assert len(values) == len(set(values)), "two short names for one module"
    missing = sorted(name for name in MODULES
                     if name not in values and name not in FACADE_PARTS and not (is_package(name) and name != "data"))
    assert not missing, f"modules without a short name in tl_helpers.MODULES: {missing}"
    unknown = sorted(v for v in values if v not in MODULE_FILES)
    assert not unknown, f"tl_helpers.MODULES names modules that do not exist: {unknown}"
    for short, dotted in tl_helpers.MODULES.items():
        assert short == dotted.split(".")[-1], f"{short} -> {dotted}: the short name is the module's own"
        assert room(dotted) in tl_helpers.ROOMS


def test_short_names_import_their_modules_and_the_torch_path_stays_off_keras():
    """In a fresh interpreter: the PyTorch path and the data room first (no Keras), then everything."""
    data_room = [short for short, dotted in tl_helpers.MODULES.items() if room(dotted) in ("paths", "data")]
    script = f"""
import importlib, json, sys
import tl_helpers as tl
report = {{"keras_after_torch_path": None, "mismatches": []}}
for short in {[*TORCH_PATH, *data_room]!r}:
    getattr(tl, short)
report["keras_after_torch_path"] = sorted(m for m in ("keras", "tensorflow") if m in sys.modules)
for short, dotted in tl.MODULES.items():
    module = importlib.import_module("tl_helpers." + dotted)
    if getattr(tl, short) is not module or module.__name__ != "tl_helpers." + dotted:
        report["mismatches"].append(short)
print(json.dumps(report))
"""
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["keras_after_torch_path"] == [], "the PyTorch path imported Keras/TensorFlow"
    assert report["mismatches"] == []


def test_an_unknown_short_name_lists_the_known_ones():
    with pytest.raises(AttributeError, match="loaders"):
        tl_helpers.generators  # noqa: B018 (the old name: gone)


# --- (b) rooms import only from rooms above them -------------------------------------------

def test_no_module_imports_from_a_room_below_it():
    order = {name: index for index, name in enumerate(tl_helpers.ROOMS)}
    assert list(order) == ["paths", "data", "train", "evaluate", "techniques", "serve", "workflow"]
    wrong = []
    for name in MODULES:
        for target in imports(name, module_level_only=False):
            if target and order[room(target)] > order[room(name)]:
                wrong.append(f"{name} ({room(name)}) imports {target} ({room(target)})")
    assert not wrong, "imports from a lower room:\n  " + "\n  ".join(wrong)


def test_evaluation_needs_no_training_code():
    """Scoring predictions never loads a model: `evaluate` imports only `paths` and `data`
    (loading exported models is `serve`'s job)."""
    wrong = sorted(f"{name} imports {target}" for name in MODULES if room(name) == "evaluate"
                   for target in imports(name, module_level_only=False)
                   if target and room(target) not in ("paths", "data", "evaluate"))
    assert not wrong, wrong


def test_the_room_rule_sees_imports_inside_functions(tmp_path, monkeypatch):
    """The check itself can fail: an import of a lower room hidden in a function is found."""
    bad = tmp_path / "tl_helpers" / "data"
    bad.mkdir(parents=True)
    (bad / "__init__.py").write_text("")
    (bad / "sneaky.py").write_text("def f():\n    from ..techniques import cropping\n    return cropping\n")
    (tmp_path / "tl_helpers" / "techniques").mkdir()
    (tmp_path / "tl_helpers" / "techniques" / "__init__.py").write_text("")
    (tmp_path / "tl_helpers" / "techniques" / "cropping.py").write_text("")
    monkeypatch.setitem(MODULE_FILES, "data.sneaky", bad / "sneaky.py")
    monkeypatch.setitem(MODULE_FILES, "techniques.cropping", tmp_path / "tl_helpers" / "techniques" / "cropping.py")
    assert imports("data.sneaky", module_level_only=False) == {"techniques.cropping"}
    assert imports("data.sneaky", module_level_only=True) == set()


# --- (c) no import cycles -------------------------------------------------------------------

def test_no_import_cycles_between_modules():
    graph = {name: imports(name, module_level_only=True) - {""} for name in MODULES}
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"import cycle: {' -> '.join(error.args[1])}")
    assert order.index("paths") < order.index("data.registry")


# --- (d) one definition of each path ----------------------------------------------------------

def defined_functions(name: str) -> set[str]:
    tree = ast.parse(MODULE_FILES[name].read_text())
    return {node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_project_root_and_the_cache_folders_are_defined_only_in_paths():
    public = {n for n in defined_functions("paths") if not n.startswith("_")}
    assert {"project_root", "runs_dir", "cache_dir"} <= public
    duplicates = sorted(f"{name}.{function}" for name in MODULES if name != "paths"
                        for function in defined_functions(name) & public)
    assert not duplicates, f"defined again outside tl_helpers.paths: {duplicates}"
    assert "project_root" not in tl_helpers.data.__all__ and not hasattr(tl_helpers.data, "project_root")
