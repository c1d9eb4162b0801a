#!/usr/bin/env bash
# One command to run Seedfinder in ComfyUI's browser UI on http://127.0.0.1:8188 (see scripts/serve.py --help).
#   bash scripts/serve.sh                        ComfyUI 0.3.75 + official frontend + Seedfinder (+ smoke-test model)
#   bash scripts/serve.sh --comfyui ~/ComfyUI    your ComfyUI, with Seedfinder linked into its custom_nodes/
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_host.sh"
exec "$repo/.host/venv/bin/python" "$repo/scripts/serve.py" "$@"
