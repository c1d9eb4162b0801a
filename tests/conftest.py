"""Shared pytest setup: the pack's root on sys.path for the host-free solver tests."""
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
for path in (REPO, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)

import numpy as np
import pytest

IMAGES = [f"seedfinder_test_{i}.png" for i in range(4)]


def smooth_image(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random RGB image (low-frequency bumps), like a photo more than like noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        image += rng.uniform(-1, 1, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / width ** 2)[..., None]
    image = (image - image.min()) / (image.max() - image.min() + 1e-9)
    return (image * 255).astype("uint8")


BAD_LATENTS = {"nan": "seedfinder_nan.latent", "three_channels": "seedfinder_3ch.latent",
               "video": "seedfinder_video_5d.latent"}
SD3_LATENTS = ("seedfinder_sd3_16ch.latent", "seedfinder_sd3_16ch_b.latent")
SD3_LATENT = SD3_LATENTS[0]


def write_latents(folder: str) -> None:
    """Latent files for LoadLatent: ones no inverter should accept (NaN values; 3 channels for a 4-channel model; a
    5-D video latent), and two 16-channel latents for the SD3/Flux-class models (the test VAE encodes to 4)."""
    import safetensors.torch
    import torch
    generator = torch.Generator().manual_seed(16)
    nan = torch.randn(1, 4, 8, 8, generator=generator)
    nan[0, 1, 2, 3] = float("nan")
    files = {BAD_LATENTS["nan"]: nan, BAD_LATENTS["three_channels"]: torch.randn(1, 3, 8, 8, generator=generator),
             BAD_LATENTS["video"]: torch.randn(1, 4, 3, 8, 8, generator=generator),
             **{name: torch.randn(1, 16, 8, 8, generator=generator) for name in SD3_LATENTS}}
    for name, tensor in files.items():
        safetensors.torch.save_file({"latent_tensor": tensor, "latent_format_version_0": torch.tensor([])},
                                    os.path.join(folder, name))


@pytest.fixture(scope="session")
def comfy_inprocess():
    """`comfy` importable in the test process (CPU), for the tiny-model factory."""
    from comfy_host import COMFY_TREE, STUBS
    for path in (STUBS, COMFY_TREE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    import tinymodels
    return tinymodels


@pytest.fixture(scope="session")
def host(tmp_path_factory, comfy_inprocess):
    """One real ComfyUI server for the session, with the tiny models and test images installed."""
    from PIL import Image
    from comfy_host import ComfyHost
    server = ComfyHost(str(tmp_path_factory.mktemp("comfy")))
    comfy_inprocess.write_models(os.path.join(server.base, "models"))
    for index, name in enumerate(IMAGES):
        Image.fromarray(smooth_image(index)).save(os.path.join(server.base, "input", name))
    write_latents(os.path.join(server.base, "input"))
    server.start()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "host" in item.fixturenames:
        server = item.funcargs.get("host")
        if server is not None:
            report.sections.append(("ComfyUI server log", server.log_tail(60)))
