"""`python -m tl_helpers.evaluate MODEL_CARD DATA_DIR`, kept for readers of earlier versions:
the command lives in tl_helpers.serve.external (`tl evaluate`)."""
from ..serve.external import main

raise SystemExit(main())
