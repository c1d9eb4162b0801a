"""The pack and the tiny model inside the test process (no server): for adapter unit tests and benchmarks."""
import importlib.util
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_comfy() -> None:
    """Make the test host's ComfyUI importable on CPU (import order as main.py needs it)."""
    from comfy_host import COMFY_TREE, STUBS
    for path in (STUBS, COMFY_TREE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True


def import_pack():
    """The repository as the package `seedfinder`, as ComfyUI loads it from custom_nodes/."""
    if "seedfinder" in sys.modules:
        return sys.modules["seedfinder"]
    import_comfy()
    spec = importlib.util.spec_from_file_location("seedfinder", os.path.join(REPO, "__init__.py"),
                                                  submodule_search_locations=[REPO])
    module = importlib.util.module_from_spec(spec)
    sys.modules["seedfinder"] = module
    spec.loader.exec_module(module)
    return module


def tiny_model(seed: int = 0):
    """The host tests' tiny SD15 UNet as a MODEL, built through ComfyUI's own state-dict loader."""
    import_comfy()
    import comfy.sd
    import tinymodels
    return comfy.sd.load_diffusion_model_state_dict(tinymodels.unet_state_dict(seed=seed))


def random_conditioning(seed: int, batch: int = 1) -> list:
    """A CONDITIONING with random CLIP-L-sized embeddings (77 tokens × 768)."""
    generator = torch.Generator().manual_seed(seed)
    return [[torch.randn(batch, 77, 768, generator=generator), {}]]
