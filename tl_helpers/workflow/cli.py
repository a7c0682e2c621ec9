"""`tl`: the book's one command, a front door to the existing command lines.

    tl run [NOTEBOOKS...] --profile cpu      run chapters (tl_helpers.workflow.runner)
    tl build --profile smoke                 build the book (tl_helpers.workflow.build)
    tl data list | download | install | verify   the datasets (tl_helpers.data)
    tl predict CARD PATHS... --out p.csv     an exported model on images (tl_helpers.serve.predict)
    tl evaluate CARD DATA_DIR                an exported model on a labelled folder (tl_helpers.serve.external)
    tl --version

`tl SUBCOMMAND --help` gives each one's options. `--quiet` (no progress bars) works with
every subcommand; the `python -m` forms keep working. Each subcommand hands its arguments,
unparsed, to the module's own `main(argv)`, so there is one parser per command.
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Sequence

from .. import __version__

# subcommand -> (module, what it does); each module has main(argv) -> int
SUBCOMMANDS = {
    "run": ("tl_helpers.workflow.runner", "run chapters under a profile (papermill) and write run cards"),
    "build": ("tl_helpers.workflow.build", "build the book's HTML from the runs"),
    "data": ("tl_helpers.data.__main__", "the five datasets: list, download, install, verify"),
    "predict": ("tl_helpers.serve.predict", "an exported model on image files or folders -> CSV"),
    "evaluate": ("tl_helpers.serve.external", "an exported model on a labelled folder -> metrics with intervals"),
}
# how each command line spells "no progress bars" (None: it shows none, so --quiet is simply dropped)
QUIET_SPELLING = {"run": "--no-progress", "build": None, "data": None, "predict": "--quiet", "evaluate": "--quiet"}


def usage() -> str:
    """The top-level help text. Used by tl.cli.main."""
    lines = [f"tl {__version__}: the command line of 'Transfer learning for medical imaging'", "",
             "usage: tl SUBCOMMAND [options]   (tl SUBCOMMAND --help for its options)", ""]
    lines += [f"  {name:<9} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += ["", "  --version  the package version", "  --quiet    with any subcommand: no progress bars"]
    return "\n".join(lines)


def translate_quiet(command: str, args: list[str]) -> list[str]:
    """`--quiet` (and the old `--no-progress`) in the spelling `command`'s own parser knows.

    Used by tl.cli.main.
    """
    quiet = any(arg in ("--quiet", "--no-progress") for arg in args)
    rest = [arg for arg in args if arg not in ("--quiet", "--no-progress")]
    spelling = QUIET_SPELLING[command]
    return rest + ([spelling] if quiet and spelling else [])


def main(argv: Sequence[str] | None = None) -> int:
    """`tl SUBCOMMAND ...`: dispatch to the subcommand's main(argv); its exit status.

    Used by the `tl` console script (pyproject.toml) and `python -m tl_helpers`.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"tl {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in SUBCOMMANDS:
        print(f"error: unknown subcommand {command!r}; one of: {', '.join(SUBCOMMANDS)} (tl --help)",
              file=sys.stderr)
        return 2
    module = import_module(SUBCOMMANDS[command][0])
    return int(module.main(translate_quiet(command, rest)) or 0)
