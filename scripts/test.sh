#!/usr/bin/env bash
# The one command: set up the test host (idempotent, ~2 min on a fresh machine; Debian's chromium for the browser
# test if it is missing), lint (ruff, configured in pyproject.toml) and run every test.
# With --fast: lint and the tests that need neither a ComfyUI server nor a browser (solvers, the method contract, the
# golden pins, in-process adapter tests; markers in tests/pytest.ini). docs/testing.md describes both tiers.
# usage: bash scripts/test.sh [--fast] [pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fast=""
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi
bash "$repo/scripts/setup_host.sh"
# the browser test drives Debian's chromium (not Playwright's own download, which needs the internet)
if [ -z "$fast" ] && ! command -v chromium >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
cd "$repo"
.host/venv/bin/ruff check .
# One torch thread per process (unless set): the tests run a ComfyUI server and the test process side by side, and
# with torch's default thread count each they oversubscribe the cores. Measured on 2 cores at load ~3: the trained-model
# in-process tests took 418 s with the default, 35 s with one thread; the fast tier's tiny tensors gain nothing either.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
# Two workers (pytest-xdist), each taking whole files, so a module's fixtures (a server, a model install) are made once;
# each worker starts its own ComfyUI server. A later `-n 0` in the arguments runs everything in one process.
workers=(-n 2 --dist loadfile)
if [ -n "$fast" ]; then
  exec .host/venv/bin/python -m pytest -c tests/pytest.ini --rootdir tests tests "${workers[@]}" \
    -m "not host and not browser and not models" "$@"
fi
exec .host/venv/bin/python -m pytest -c tests/pytest.ini --rootdir tests tests "${workers[@]}" "$@"
