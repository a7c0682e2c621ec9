"""`python -m tl_helpers.serve MODEL_CARD DATA_DIR`: an exported model on a labelled folder (tl.external)."""
from .external import main

raise SystemExit(main())
