"""`python -m tl_helpers.data list | download NAME | install NAME ZIP | verify NAME [--data-dir D]`.

Errors print one line (no traceback) and exit with status 1. Taught in book/data.md.
"""
from __future__ import annotations

import argparse
import sys

from . import DATASETS, DataError, download, install_from_zip, locate, resolve_data_dir, verify_with_manifest


def _list(args) -> int:
    base = resolve_data_dir(args.data_dir)
    print(f"data directory: {base}")
    for name, s in DATASETS.items():
        version = "competition" if s.kaggle_kind == "competition" else (
            f"version {s.kaggle_version}" if s.kaggle_version is not None else "latest version")
        here = "installed" if (base / name).is_dir() else "absent"
        print(f"{name:24} {here:9} chapter {s.chapter.split(':')[0]}  {s.kaggle_url} ({version})")
    return 0


def _download(args) -> int:
    download(args.name, args.data_dir, timeout=args.timeout, overwrite=args.overwrite)
    print(f"next: python -m tl_helpers.data verify {args.name}"
          + (f" --data-dir {args.data_dir}" if args.data_dir else "") + "  (decodes every image)")
    return 0


def _install(args) -> int:
    install_from_zip(args.name, args.zip, args.data_dir, overwrite=args.overwrite)
    return 0


def _verify(args) -> int:
    report = verify_with_manifest(args.name, locate(args.name, args.data_dir), deep=not args.quick, progress=True)
    print(report)
    if not report.ok:
        print(f"error: {args.name} at {report.root} has {len(report.problems)} problem(s), listed above",
              file=sys.stderr)
        return 1
    print(f"ok: {args.name} at {report.root}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one command; a DataError becomes one line and status 1.

    Taught in book/data.md (getting the datasets), not in a chapter.
    """
    parser = argparse.ArgumentParser(prog="python -m tl_helpers.data",
                                     description="The book's five datasets: list, download, install, verify.")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, run, help_text):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--data-dir", default=None,
                         help="the data directory (default: $TL_DATA_DIR, else the project's data/)")
        sub.set_defaults(run=run)
        return sub

    command("list", _list, "the five datasets, their Kaggle sources, and which are installed")
    sub = command("download", _download, "download NAME from Kaggle (needs a Kaggle API token), install and check it")
    sub.add_argument("name", choices=list(DATASETS))
    sub.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for kaggle.com (default 10)")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing <data dir>/NAME/")
    sub = command("install", _install, "install NAME from a Kaggle zip downloaded by hand")
    sub.add_argument("name", choices=list(DATASETS))
    sub.add_argument("zip", help="the zip downloaded from the dataset's Kaggle page")
    sub.add_argument("--overwrite", action="store_true", help="replace an existing <data dir>/NAME/")
    sub = command("verify", _verify, "check NAME: layout, counts, every image decoded, the manifest")
    sub.add_argument("name", choices=list(DATASETS))
    sub.add_argument("--quick", action="store_true", help="layout, counts and manifest only; no decoding")
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (DataError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
