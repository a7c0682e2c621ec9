#!/usr/bin/env bash
# Build the book into _build/html/: each chapter from its committed run in results/, and a
# chapter without one run first for a profile (default: smoke, offline, synthetic data).
# Extra arguments go to `python -m tl_helpers.workflow.build` (e.g. --fresh runs every
# chapter and shows those runs; --fresh --profile cpu --data-dir ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m tl_helpers.workflow.build "$@"
