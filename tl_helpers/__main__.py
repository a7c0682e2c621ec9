"""`python -m tl_helpers ...`: the `tl` command (tl_helpers.workflow.cli)."""
from .workflow.cli import main

raise SystemExit(main())
