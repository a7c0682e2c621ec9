#!/usr/bin/env bash
# The whole test suite: unit tests, the browser test of the built book, and
# `pytest --nbval` over notebooks/ (smoke profile, offline). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
bash scripts/setup_browser.sh
unset TL_PROFILE  # the notebooks' stored outputs are the smoke profile's
# --durations: the slowest tests, printed at the end: where the suite's time goes (issue 27)
exec .venv/bin/python -m pytest --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg --durations=25 "$@"
