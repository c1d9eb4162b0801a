"""The scenes UNet (demo_model/scene_unet.py, the 128×128 scenes world): installed by demo_model.install widened to
320 channels, detected by core's loaders as SD15 and the same function as the shipped narrow file; its CLIP is the
word-separating one it was trained with; provenance checked; its samples follow the prompt in part; and on the real
server UNETLoader, CLIPLoader (stable_diffusion), VAELoader and KSampler draw the background the prompt says."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, installed_files

pytestmark = pytest.mark.models

SIGMAS = (0.1, 2.0, 14.0)
# The demo pictures' captions (install.SCENE_DEMOS: one or two objects of trained pairs), FOLLOWING_BATCH samples each,
# euler 20 steps cfg 4 (evaluate's sampler), in process at the trained width. Measured (printed by the test, pytest -s):
# whole scene right 66 % (21 of 32), background right 97 % (31 of 32).
FOLLOWING_BATCH = 8
SCENE_FLOOR, BACKGROUND_FLOOR = 0.5, 0.85
# On the server (the wide file, cheap: HOST_BATCH samples, HOST_STEPS steps): the one-object demo captions. Measured in
# process with the same seeds and sampler (evaluate.load_scenes, evaluate.scene_following): background right in 4 of
# 4, the whole scene in 2 of 4. Asserted: the background.
HOST_DEMOS = (1, 3)
HOST_BATCH, HOST_STEPS = 2, 10
HOST_BACKGROUND_FLOOR = 0.75


@pytest.fixture(scope="module")
def installed(tmp_path_factory, comfy_inprocess):
    """{kind: path} of the files demo_model.install writes for the scenes UNet (install.write_scene_model)."""
    from demo_model import install
    yield from installed_files(tmp_path_factory, install.write_scene_model)


def test_installed_scenes_unet_is_sd15_and_computes_the_narrow_function(installed):
    import comfy.sd
    import comfy.supported_models
    import torch

    from demo_model import install, scene_unet
    wide = comfy.sd.load_diffusion_model(installed["scenes"])
    assert type(wide.model.model_config).__name__ == "SD15"
    assert wide.model.diffusion_model.model_channels == scene_unet.UNET_WIDTH * scene_unet.UNET_K
    narrow = install.model_of_config(comfy.supported_models.SD15, scene_unet.unet_config(), torch.float32,
                                     scene_unet.load_weights()[0])
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(len(SIGMAS), 4, scene_unet.LATENT, scene_unet.LATENT, generator=generator)  # 128×128
    context = torch.randn(len(SIGMAS), 77, 768, generator=generator)
    timesteps = wide.model.model_sampling.timestep(torch.tensor(SIGMAS)).float()
    with torch.no_grad():
        outputs = [patcher.model.diffusion_model(x, timesteps, context=context) for patcher in (wide, narrow)]
    error = (outputs[0] - outputs[1]).abs().max().item()
    print(f"\nwidened scenes UNet: max abs error {error:.2e} (ε, σ {SIGMAS})")
    assert error < 1e-4


def test_installed_clip_is_the_one_the_unet_was_trained_with(installed):
    import json

    import comfy.sd
    from safetensors import safe_open

    from demo_model import text
    with safe_open(installed["scenes"], framework="pt") as f:
        trained_with = json.loads(f.metadata()["clip_fingerprint"])
    words_clip = comfy.sd.load_clip([installed["clip"]], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    text.check_fingerprint(words_clip, trained_with)
    with pytest.raises(ValueError, match="not the demo model's text encoder"):
        text.check_fingerprint(text.load_clip(text.clip_state_dict()), trained_with)  # the shapes UNet's seeded CLIP


def run_check(folder: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "demo_model.scene_unet", "--check", "--out", folder]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_accepts_the_shipped_file_and_refuses_stale_or_missing_ones(tmp_path, comfy_inprocess):
    import safetensors.torch

    from demo_model import scene_unet, train
    shipped = run_check(train.WEIGHTS)
    assert shipped.returncode == 0 and shipped.stdout.startswith("ok "), shipped.stdout + shipped.stderr
    missing = run_check(str(tmp_path))
    assert missing.returncode == 1 and "MISSING" in missing.stdout
    tensors, meta = scene_unet.load_weights()
    safetensors.torch.save_file(tensors, str(tmp_path / scene_unet.FILE), metadata={**meta, "source_sha256": "0"})
    stale = run_check(str(tmp_path))
    assert stale.returncode == 1 and "STALE" in stale.stdout


def test_the_cooldown_starts_from_the_base_stage_and_is_deterministic(tmp_path, comfy_inprocess):
    """Two stages on a toy set (random latents and contexts, batch 4): the base stage's fp16 EMA file is written once
    and read back for the same config; the cool-down from it gives the same weights in two folders, resumes a finished
    run without a step, and decays its learning rate to zero."""
    import torch

    from demo_model import scene_unet, train
    generator = torch.Generator().manual_seed(0)
    data = (torch.randn(16, 4, 16, 16, generator=generator), torch.arange(16) % 3,
            torch.randn(3, 77, 768, generator=generator), torch.randn(77, 768, generator=generator))
    config = {**scene_unet.CONFIG, **scene_unet.QUICK, "batch": 4, "warmup": 2}
    stage = dict(scene_unet.COOLDOWN, steps=6, warmup=2, name="cooldown", schedule="cosine")
    base, metadata = scene_unet.base_weights(config, data, str(tmp_path / "a"), 3)
    again, _ = scene_unet.base_weights(config, data, str(tmp_path / "a"), 3)
    assert all(base[key].equal(again[key]) for key in base) and metadata["source_sha256"] == scene_unet.source_hash()
    runs = [scene_unet.train_unet(config, stage, data, str(tmp_path / folder), 3, init=base) for folder in "abb"]
    for net, *_ in runs[1:]:
        assert all(value.equal(net.state_dict()[key]) for key, value in runs[0][0].state_dict().items())
    assert runs[2][1] == runs[1][1] and runs[2][2]["wall"] - runs[1][2]["wall"] < 1  # read back, no step taken
    assert train.learning_rate(stage["steps"], stage["steps"], stage["lr"], stage["warmup"]) == 0


def test_samples_follow_the_prompt_in_part(installed):
    import torch

    from demo_model import evaluate, install, scene_unet, train
    models_dir = installed["clip"].rsplit("/text_encoders/", 1)[0]
    prompts = [install.scene_of(spec) for spec in install.SCENE_DEMOS]
    with torch.inference_mode():
        model, clip, vae = evaluate.load_scenes(models_dir, train.WEIGHTS)
        rates, _ = evaluate.scene_following(model, clip, vae, prompts, FOLLOWING_BATCH, evaluate.SCENE_STEPS,
                                            evaluate.SCENE_CFG, scene_unet.unet_config()["in_channels"])
    scene, background = rates["scene"], rates["background"]
    print(f"\nscenes UNet on the demo captions, {len(prompts) * FOLLOWING_BATCH} samples: scene {scene:.1%}, "
          f"background {background:.1%}")
    assert scene >= SCENE_FLOOR and background >= BACKGROUND_FLOOR


@pytest.mark.host
def test_core_nodes_draw_the_background_the_prompt_says(host):
    from support.graphs import prompt_samples_graph, saved_images

    from demo_model import evaluate, install, measure, scenes, twin
    prompts = [install.scene_of(install.SCENE_DEMOS[index]) for index in HOST_DEMOS]
    latent = {"class_type": "EmptyLatentImage", "inputs": {"width": scenes.SIZE, "height": scenes.SIZE,
                                                           "batch_size": HOST_BATCH}}
    files = {"unet": install.SCENE_UNET_FILE, "clip": twin.CLIP_FILE, "vae": install.VAE_FILE}
    history = host.run(prompt_samples_graph(files, "stable_diffusion", latent, [scene.caption for scene in prompts],
                                            HOST_STEPS, evaluate.SCENE_CFG))
    found = [(scene.background, measure.classify_scene(image))
             for i, scene in enumerate(prompts) for image in saved_images(host, history, f"save{i}")]
    backgrounds = [label[0] == background for background, label in found]
    print(f"\nscenes UNet on the server: background right in {np.mean(backgrounds):.0%} of {len(found)}: {found}")
    assert np.mean(backgrounds) >= HOST_BACKGROUND_FLOOR
