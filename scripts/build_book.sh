#!/usr/bin/env bash
# Run every notebook for a profile (default: smoke, offline, synthetic data) and build the
# book into _build/html/. Extra arguments go to `python -m tl_helpers.workflow.build`
# (e.g. --profile cpu --data-dir ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m tl_helpers.workflow.build "$@"
