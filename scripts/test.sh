#!/usr/bin/env bash
# The one command: set up the test host (idempotent, ~2 min on a fresh machine) and run every test.
# usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_host.sh"
cd "$repo"
exec .host/venv/bin/python -m pytest -c tests/pytest.ini --rootdir tests tests "$@"
