"""The pack and the tiny model inside the test process (no server): for adapter unit tests and benchmarks."""
import importlib.util
import os
import sys

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def import_comfy(cpu: bool = True) -> None:
    """Make the test host's ComfyUI importable, on the CPU unless `cpu` is False (a GPU run of the benchmark)."""
    from .comfy_host import COMFY_TREE, STUBS
    for path in (STUBS, COMFY_TREE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import comfy.cli_args
    comfy.cli_args.args.cpu = cpu


def pack_package():
    """The repository registered as the package `seedfinder`, its __init__ not run yet: its comfy-free `solvers`
    importable as `seedfinder.solvers`, the one module the nodes use (the pack's packages are never imported
    top-level: ComfyUI has its own top-level `nodes`)."""
    if "seedfinder" not in sys.modules:
        spec = importlib.util.spec_from_file_location("seedfinder", os.path.join(REPO, "__init__.py"),
                                                      submodule_search_locations=[REPO])
        sys.modules["seedfinder"] = importlib.util.module_from_spec(spec)
    return sys.modules["seedfinder"]


def import_pack(cpu: bool = True):
    """The repository as the package `seedfinder`, as ComfyUI loads it from custom_nodes/."""
    module = pack_package()
    if not hasattr(module, "comfy_entrypoint"):  # its __init__ not run yet
        import_comfy(cpu)
        module.__spec__.loader.exec_module(module)
    return module


def tiny_model(seed: int = 0):
    """The host tests' tiny SD15 UNet as a MODEL, built through ComfyUI's own state-dict loader."""
    import_comfy()
    import comfy.sd

    from . import tinymodels
    return comfy.sd.load_diffusion_model_state_dict(tinymodels.unet_state_dict(seed=seed))


TRAINED_MODELS = ("demo", "second")  # the models this repository trains: shapes (demo_model/) and glyphs (second.py)


def trained_model(name: str = "demo", models_dir: str | None = None, wide: bool = False) -> tuple:
    """(MODEL, CLIP, VAE) of a trained ε model, "demo" (shapes) or "second" (glyphs), installed into `models_dir`
    (if None, a temporary folder removed once the files are loaded: each install holds a 246 MB CLIP-L, and a suite's
    worth of them filled a CI disk) by demo_model.install: CLIP and VAE through the functions behind CLIPLoader and
    VAELoader; the UNet as UNETLoader loads the installed file (`wide`), or by default at its trained width in
    ComfyUI's SD15 model class: the same function (tests/test_demo_model.py, test_second_model.py: to 1e-4), faster.
    The CLIP is checked against the fingerprint the UNet was trained with."""
    import tempfile
    if models_dir is None:
        with tempfile.TemporaryDirectory(prefix="seedfinder-models-") as folder:
            return trained_model(name, folder, wide)
    import json

    import comfy.sd
    import comfy.supported_models
    import comfy.utils

    from demo_model import install, second, text, train, widen
    if name not in TRAINED_MODELS:
        raise ValueError(f"name: expected one of {TRAINED_MODELS}, got {name!r}")
    weights, meta = train.load_weights("eps") if name == "demo" else second.load_weights("eps")
    if wide:
        write = install.write_demo_models if name == "demo" else install.write_second_model
        paths = write(models_dir)
        model = comfy.sd.load_diffusion_model(paths["eps" if name == "demo" else "second"])
        vae_path = paths["vae" if name == "demo" else "second_vae"]
    else:  # only the CLIP and VAE files: the wide UNet (the second's is 579 MB) would go unread
        config = widen.unet_config() if name == "demo" else second.unet_config()
        model = model_of_config(comfy.supported_models.SD15, config, torch.float32, weights)
        paths = {"clip": install.write_clip(models_dir)}
        vae_path = os.path.join(models_dir, "vae", install.VAE_FILE if name == "demo" else install.SECOND_VAE_FILE)
        install.write_vae(*(train if name == "demo" else second).load_weights("vae"), vae_path)
    clip = comfy.sd.load_clip([paths["clip"]], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    text.check_fingerprint(clip, json.loads(meta["clip_fingerprint"]))
    return model, clip, comfy.sd.VAE(sd=comfy.utils.load_torch_file(vae_path))


def trained_images(name: str, count: int, seed: int | None = None) -> list:
    """`count` (caption, uint8 image (64, 64, 3)) pairs of the world `name` ("demo" or "second") was trained on,
    labels drawn without repeats, images never drawn for training (by default evaluate.HELD_OUT_SEED's)."""
    import numpy as np

    from demo_model import data, evaluate, glyphs
    world = data if name == "demo" else glyphs
    labels = data.all_labels(held_out=None) if name == "demo" else glyphs.all_labels()
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED if seed is None else seed)
    chosen = [labels[i] for i in rng.choice(len(labels), count, replace=False)]
    return [(world.caption(label), world.render(label, rng)) for label in chosen]


def random_conditioning(seed: int, batch: int = 1, tokens: int = 768, pooled: int = 0, **extra) -> list:
    """A CONDITIONING with random prompt embeddings: 77 tokens of width `tokens` (768: CLIP-L), and a pooled
    vector of width `pooled` if the family needs one (SDXL 1280, SD3 2048), plus extra keys (SDXL's sizes)."""
    generator = torch.Generator().manual_seed(seed)
    options = dict(extra)
    if pooled:
        options["pooled_output"] = torch.randn(batch, pooled, generator=generator)
    return [[torch.randn(batch, 77, tokens, generator=generator), options]]


# Full-size architectures (ComfyUI's detected configs) for timing on a GPU; weights are random, which times the same.
SD15_FULL_UNET = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2], channel_mult=[1, 2, 4, 4],
    transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0], transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    transformer_depth_middle=1, use_linear_in_transformer=False, context_dim=768, use_temporal_resblock=False,
    use_temporal_attention=False, num_heads=8, num_head_channels=-1,
)
SDXL_FULL_UNET = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, num_classes="sequential",
    adm_in_channels=2816, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2],
    channel_mult=[1, 2, 4], transformer_depth=[0, 0, 2, 2, 10, 10],
    transformer_depth_output=[0, 0, 0, 2, 2, 2, 10, 10, 10], transformer_depth_middle=10,
    use_linear_in_transformer=True, context_dim=2048, use_temporal_resblock=False, use_temporal_attention=False,
    num_head_channels=64, num_heads=-1,
)


def model_of_config(config_class, unet: dict, dtype: torch.dtype, state_dict=None):
    """demo_model.install.model_of_config with random weights (tinymodels' scale) when `state_dict` is None."""
    from demo_model import install

    from . import tinymodels
    if state_dict is None:
        shapes = tinymodels.meta_shapes(install.model_of_config(config_class, unet, dtype).model.diffusion_model)
        state_dict = tinymodels.random_state_dict(shapes, 0, tinymodels.WEIGHT_SCALE, dtype)
    return install.model_of_config(config_class, unet, dtype, state_dict)


def full_size_model(name: str, dtype: torch.dtype):
    """(MODEL, CONDITIONING): SD1.5 or SDXL at full size with random weights, or SD1.5 as an LCM ('sd15-lcm'),
    built with ComfyUI's model classes and run in `dtype` as ComfyUI would."""
    import comfy.supported_models
    config_class, unet = {"sd15": (comfy.supported_models.SD15, SD15_FULL_UNET),
                          "sd15-lcm": (comfy.supported_models.SD15, SD15_FULL_UNET),
                          "sdxl": (comfy.supported_models.SDXL, SDXL_FULL_UNET)}[name]
    patcher = model_of_config(config_class, unet, dtype)
    if name == "sd15-lcm":
        from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
        (patcher,) = ModelSamplingDiscrete().patch(patcher, "lcm", False)
    if name == "sdxl":
        return patcher, random_conditioning(0, tokens=2048, pooled=1280, width=1024, height=1024,
                                            target_width=1024, target_height=1024)
    return patcher, random_conditioning(0)
