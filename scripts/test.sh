#!/usr/bin/env bash
# The one command: set up the test host (idempotent, ~2 min on a fresh machine; Debian's chromium for the browser
# test if it is missing), lint (ruff, configured in pyproject.toml) and run every test.
# usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_host.sh"
# the browser test drives Debian's chromium (not Playwright's own download, which needs the internet)
if ! command -v chromium >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
cd "$repo"
.host/venv/bin/ruff check .
exec .host/venv/bin/python -m pytest -c tests/pytest.ini --rootdir tests tests "$@"
