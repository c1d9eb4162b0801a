"""Shared pytest setup: the pack's root, tests/ and scripts/ on sys.path; the real ComfyUI server fixtures."""
import os
import shutil
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")
for path in (REPO, TESTS, os.path.join(REPO, "scripts")):
    if path not in sys.path:
        sys.path.insert(0, path)

import pytest  # noqa: E402  (after the sys.path setup above)
from support.tinymodels import DEMO_IMAGES as IMAGES  # noqa: E402, F401  (workflows and tests share the demo images)

BAD_LATENTS = {"nan": "seedfinder_nan.latent", "three_channels": "seedfinder_3ch.latent",
               "video": "seedfinder_video_5d.latent", "empty_batch": "seedfinder_empty_batch.latent",
               "huge": "seedfinder_huge.latent", "audio": "seedfinder_audio_3d.latent"}
SD3_LATENTS = ("seedfinder_sd3_16ch.latent", "seedfinder_sd3_16ch_b.latent")
SD3_LATENT = SD3_LATENTS[0]
VIDEO_LATENTS = ("seedfinder_video_16ch.latent", "seedfinder_video_16ch_b.latent")
"""5-D latents (1, 16, 2, 8, 8) for the HunyuanVideo-class model: 5 frames of 64×64 in its VAE's units."""


def write_latents(folder: str) -> None:
    """Latent files for LoadLatent: ones no inverter should accept (NaN values; 3 channels for a 4-channel model; a
    5-D video latent for an image model; a 3-D audio latent; a batch of 0; finite values ×1e30), two 16-channel
    latents for the SD3/Flux-class models (the test VAE encodes to 4) and two 5-D ones for the HunyuanVideo-class
    model."""
    import safetensors.torch
    import torch
    generator = torch.Generator().manual_seed(16)
    nan = torch.randn(1, 4, 8, 8, generator=generator)
    nan[0, 1, 2, 3] = float("nan")
    files = {BAD_LATENTS["nan"]: nan, BAD_LATENTS["three_channels"]: torch.randn(1, 3, 8, 8, generator=generator),
             BAD_LATENTS["video"]: torch.randn(1, 4, 3, 8, 8, generator=generator),
             BAD_LATENTS["empty_batch"]: torch.zeros(0, 4, 8, 8),
             BAD_LATENTS["huge"]: torch.randn(1, 4, 8, 8, generator=generator) * 1e30,
             **{name: torch.randn(1, 16, 8, 8, generator=generator) for name in SD3_LATENTS},
             BAD_LATENTS["audio"]: torch.randn(1, 4, 64, generator=generator),
             **{name: torch.randn(1, 16, 2, 8, 8, generator=generator) for name in VIDEO_LATENTS}}
    for name, tensor in files.items():
        safetensors.torch.save_file({"latent_tensor": tensor, "latent_format_version_0": torch.tensor([])},
                                    os.path.join(folder, name))


@pytest.fixture(scope="session")
def comfy_inprocess():
    """`comfy` importable in the test process (CPU), for the tiny-model factory; skipped without the test host."""
    from support.comfy_host import COMFY_TREE, STUBS
    if not os.path.exists(os.path.join(COMFY_TREE, "comfy")):
        pytest.skip(f"needs the test host's ComfyUI tree in {COMFY_TREE} (bash scripts/setup_host.sh)")
    for path in (STUBS, COMFY_TREE):
        if path not in sys.path:
            sys.path.insert(0, path)
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    from support import tinymodels
    return tinymodels


def seedfinder_host(work: str):
    """A ComfyUI server in `work` (not started) with the tiny smoke-test models and images, the tiny video models and
    clips, the trained demo model and its images, the scenes UNet, the DiT twin and the scenes pictures, and the test
    latents: the host tests' server, and bench.host's.
    Needs `comfy` importable (the comfy_inprocess fixture, or tests.support.inprocess.import_comfy)."""
    from support import tinymodels
    from support.comfy_host import ComfyHost
    server = ComfyHost(work)
    tinymodels.write_models(os.path.join(server.base, "models"))
    tinymodels.write_images(os.path.join(server.base, "input"))
    tinymodels.write_video_models(os.path.join(server.base, "models"))
    tinymodels.write_clips(os.path.join(server.base, "input"))
    from demo_model import install, twin  # the trained demo models the example workflows use, beside the smoke-test one
    models, pictures = os.path.join(server.base, "models"), os.path.join(server.base, "input")
    server.demo_files = (install.write_demo_models(models), install.write_demo_images(pictures))
    install.write_scene_model(models)  # the scenes UNet and the DiT twin: the attention edit examples
    twin.write_dit_models(models)
    install.write_scene_images(pictures)
    write_latents(os.path.join(server.base, "input"))
    return server


def installed_files(tmp_path_factory, write):
    """For a module fixture: yield `write(models_dir)` ({kind: path}) into a new folder, removed after the module's
    tests (a wide install is up to 0.8 GB, and a CI disk has run full)."""
    folder = tmp_path_factory.mktemp("models")
    yield write(str(folder))
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def host(tmp_path_factory, comfy_inprocess):
    """One real ComfyUI server for the session (seedfinder_host)."""
    server = seedfinder_host(str(tmp_path_factory.mktemp("comfy")))
    server.start()
    yield server
    server.stop()


def pytest_collection_modifyitems(config, items):
    """A test that uses the server carries the `host` marker, so that `scripts/test.sh --fast` never starts one."""
    unmarked = [item.nodeid for item in items if "host" in item.fixturenames and not item.get_closest_marker("host")]
    if unmarked:
        raise pytest.UsageError(f"tests using the host fixture without @pytest.mark.host: {unmarked}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "host" in item.fixturenames:
        server = item.funcargs.get("host")
        if server is not None:
            report.sections.append(("ComfyUI server log", server.log_tail(60)))
