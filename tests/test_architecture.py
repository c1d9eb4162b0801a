"""docs/architecture.md is the map of the code: every module under solvers/, nodes/, bench/ and scripts/ has its row
in the map's tables, every row names a file that exists, and the map's rules hold (no node outside the adapter
imports comfy or reads a model object; solvers/ never imports comfy)."""
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAPPED = ("solvers", "nodes", "bench", "scripts")
"""The folders whose every module the map's tables list (by repository path)."""


def modules() -> set:
    """Every source file under the mapped folders, as repository paths (bench/results/ and the ignored bench/out/ hold
    outputs, not code)."""
    found = set()
    for top in MAPPED:
        for folder, dirs, files in os.walk(os.path.join(REPO, top)):
            dirs[:] = [d for d in dirs if d not in ("__pycache__", "results", "out")]
            found |= {os.path.relpath(os.path.join(folder, name), REPO) for name in files
                      if not name.endswith(".pyc")}
    return found


def table_rows() -> set:
    """The repository paths in the first cell of the map's table rows."""
    with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as handle:
        cells = [line.split("|")[1] for line in handle if line.startswith("| `")]
    return {path for cell in cells for path in re.findall(r"`([^`]+)`", cell)}


def test_every_module_has_a_row_in_the_map():
    missing = sorted(modules() - table_rows())
    assert not missing, f"docs/architecture.md has no table row for {missing}"


def test_every_row_of_a_mapped_folder_names_a_file_that_exists():
    rows = {path for path in table_rows() if path.split("/")[0] in MAPPED and not path.endswith("/")}
    gone = sorted(path for path in rows if not os.path.exists(os.path.join(REPO, path)))
    assert not gone, f"docs/architecture.md lists {gone}, which do not exist"


def source(path: str) -> str:
    with open(os.path.join(REPO, path), encoding="utf-8") as handle:
        return handle.read()


def test_only_the_adapter_touches_comfy():
    """Nodes reach ComfyUI's models only through nodes/host (`comfy_api`, the V3 schema API, is theirs)."""
    comfy = re.compile(r"^\s*(import comfy\b|from comfy(\.|\s))|get_model_object", re.M)
    outside = sorted(path for path in modules() if path.endswith(".py") and path.startswith(("nodes/", "solvers/"))
                     and not path.startswith("nodes/host/") and comfy.search(source(path)))
    assert not outside, f"{outside} touch comfy or a model object outside nodes/host"


def test_no_module_replaces_a_model_forward():
    """Features that act inside the model go through ComfyUI's patch points (nodes/host/patches.py): no module assigns
    a `forward` method, by attribute or by setattr, the practice that broke other packs on core updates."""
    assigns = re.compile(r"\.forward\s*=[^=]|setattr\([^)]*['\"]forward['\"]")
    python = sorted(os.path.relpath(os.path.join(folder, name), REPO) for top in (*MAPPED, "tests", "demo_model")
                    for folder, _, files in os.walk(os.path.join(REPO, top)) for name in files if name.endswith(".py"))
    assert "nodes/host/patches.py" in python
    offenders = sorted(path for path in python if assigns.search(source(path)))
    assert not offenders, f"{offenders} assign a forward method"
