"""Seedfinder's demo model: a tiny text-to-image SD1.5-class model trained on procedural shapes, and the second model,
trained on procedural glyphs to check the defaults chosen on the first (neither loaded by the node pack). Training:
`python -m demo_model.train`, `python -m demo_model.second`; installing into ComfyUI's folders: `demo_model.install`."""
import os
import sys


def ensure_comfy(host: str | None = None) -> None:
    """Make `comfy` importable (CPU) from the test host's tree unless it already is (inside ComfyUI)."""
    try:
        import comfy.cli_args  # noqa: F401
    except ImportError:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        host = host or os.environ.get("SEEDFINDER_HOST", os.path.join(root, ".host"))
        for path in (os.path.join(host, "stubs"), os.path.join(host, "comfyui")):
            if path not in sys.path:
                sys.path.insert(0, path)
        import comfy.cli_args
        comfy.cli_args.args.cpu = True
