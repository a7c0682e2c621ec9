#!/usr/bin/env bash
# The browser test drives Debian's Chromium through Playwright (no browser download).
# Install it when missing and we may (root with apt); otherwise say what to do.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser test"
  apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
else
  echo "note: no chromium found; install it (e.g. 'sudo apt-get install chromium') or set TL_CHROMIUM to a Chromium binary, or the browser test is skipped"
fi
