"""The DiT twin (demo_model/dit.py, the 128×128 scenes world): installed by demo_model.twin, detected by core's loaders
as SD3 and the same function as the shipped narrow files; its CLIP-L separates the caption words; provenance checked;
a longer run continues a shorter one's checkpoint; and on the real server UNETLoader, CLIPLoader (sd3), VAELoader and
KSampler draw the background and the number of objects the prompt says."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, installed_files

pytestmark = pytest.mark.models

PSNR_IMAGES = 32
PSNR_FLOOR_DB = 26.5  # mean over PSNR_IMAGES held-out scenes: 27.45 measured (python -m demo_model.twin)
SEPARATED = 0.5  # cosine at the word's position between captions that differ in that word: at most this
FOLLOWING_BATCH = 4
# The twin draws whole scenes poorly (README: ≈ 19 % of trained scenes), the background always. On the demo pictures'
# captions (install.SCENE_DEMOS) at FOLLOWING_BATCH, printed by the host test (pytest -s): background right 100 %,
# background and object count right 62.5 % (10 of 16); colours right (left to right) 38 %, shapes 12 %: not asserted.
BACKGROUND_FLOOR = 0.9
BACKGROUND_COUNT_FLOOR = 0.4


@pytest.fixture(scope="module")
def installed(tmp_path_factory, comfy_inprocess):
    """{kind: path} of the files demo_model.twin writes."""
    from demo_model import twin
    yield from installed_files(tmp_path_factory, twin.write_dit_models)


def test_installed_mmdit_is_sd3_and_computes_the_narrow_function(installed):
    import comfy.sd
    import torch

    from demo_model import dit
    narrow = dit.mmdit()
    narrow.load_state_dict(dit.load_weights("dit")[0])
    patcher = comfy.sd.load_diffusion_model(installed["dit"])
    detected = patcher.model.model_config
    assert type(detected).__name__ == "SD3"
    assert detected.unet_config["depth"] == dit.DEPTH and detected.unet_config["in_channels"] == 16
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 16, 16, 16, generator=generator)  # 128×128
    context = torch.randn(3, 77, 4096, generator=generator)  # CLIP-G's and T5's columns too: they must weigh nothing
    pooled = torch.randn(3, 2048, generator=generator)
    timesteps = patcher.model.model_sampling.timestep(torch.tensor([0.05, 0.5, 0.99])).float()
    with torch.no_grad():
        wide = patcher.model.diffusion_model(x, timesteps, y=pooled, context=context)
        error = (wide - narrow.eval()(x, timesteps, y=pooled[:, :768], context=context[..., :768])).abs().max()
    assert error.item() < 1e-4


def test_installed_taesd16_is_the_narrow_one_and_reconstructs_held_out_images(installed):
    import comfy.sd
    import comfy.utils
    import torch

    from demo_model import dit, evaluate, scenes, train, twin
    encoder, decoder = dit.taesd16()
    for net, state in zip((encoder, decoder), train.split_vae(dit.load_weights("vae")[0])):
        net.load_state_dict(state)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(installed["vae"]))
    assert vae.latent_channels == 16
    images = scenes.dataset(PSNR_IMAGES, seed=evaluate.HELD_OUT_SEED)[0]
    pixels = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        latent = encoder(pixels.movedim(-1, 1))
        stored = latent / twin.SD3_SCALE + twin.SD3_SHIFT  # the SD3 latent format maps it back to `latent`
        encoded, decoded = vae.encode(pixels), vae.decode(stored)
        narrow_decoded = decoder(latent).clamp(0, 1).movedim(1, -1)
    assert (encoded - stored).abs().max() < 1e-4
    assert (decoded - narrow_decoded).abs().max() < 1e-4
    psnrs = [evaluate.psnr(a, b) for a, b in zip(images, (decoded.numpy() * 255).round())]
    assert np.mean(psnrs) >= PSNR_FLOOR_DB


def test_words_clip_is_the_trained_one_and_separates_the_caption_words(installed):
    import json

    import comfy.sd
    from safetensors import safe_open

    from demo_model import text, words
    with safe_open(installed["dit"], framework="pt") as f:
        trained_with = json.loads(f.metadata()["clip_fingerprint"])
    clip, seeded = comfy.sd.load_clip([installed["clip"]], clip_type=comfy.sd.CLIPType.SD3), words.load_clip(
        text.clip_state_dict())
    words.check_fingerprint(clip, trained_with)
    with pytest.raises(ValueError, match="not the DiT twin's text encoder"):
        words.check_fingerprint(seeded, trained_with)
    separated, unchanged = words.separation(clip), words.separation(seeded)
    assert all(at_word <= SEPARATED for _, at_word in separated.values()), separated
    assert all(at_word > 0.85 for _, at_word in unchanged.values()), unchanged  # the random CLIP-L it starts from


def run_check(folder: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "demo_model.dit", "--check", "--out", folder]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_accepts_the_shipped_twin_files_and_refuses_stale_ones(tmp_path, comfy_inprocess):
    import safetensors.torch

    from demo_model import dit, train
    shipped = run_check(train.WEIGHTS)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    tensors, meta = dit.load_weights("vae")
    safetensors.torch.save_file(tensors, str(tmp_path / dit.FILES["vae"]), metadata={**meta, "source_sha256": "0"})
    refused = run_check(str(tmp_path))  # stale VAE, missing MMDiT
    assert refused.returncode == 1 and "STALE" in refused.stdout and "MISSING" in refused.stdout


def test_a_longer_run_continues_a_shorter_ones_checkpoint(tmp_path, comfy_inprocess):
    from demo_model import dit
    config = {**dit.VAE_CONFIG, **dit.QUICK}
    every = dit.QUICK["steps"] // 2
    whole = dit.train_vae(config, str(tmp_path / "whole"), every)
    dit.train_vae({**config, "steps": every}, str(tmp_path / "cut"), every)  # shipped at `every` steps
    extended = dit.train_vae(config, str(tmp_path / "cut"), every)
    for a, b in zip(whole[:2], extended[:2]):
        for key, value in a.state_dict().items():
            assert value.equal(b.state_dict()[key]), key
    assert whole[2] == extended[2]


@pytest.mark.host
def test_core_nodes_draw_what_the_prompt_says(host):
    from support.graphs import prompt_samples_graph, saved_images

    from demo_model import install, measure, scenes, twin
    prompts = [install.scene_of(spec) for spec in install.SCENE_DEMOS]
    latent = {"class_type": "EmptySD3LatentImage", "inputs": {"width": scenes.SIZE, "height": scenes.SIZE,
                                                              "batch_size": FOLLOWING_BATCH}}
    files = {"unet": twin.DIT_FILE, "clip": twin.CLIP_FILE, "vae": twin.VAE_FILE}
    history = host.run(prompt_samples_graph(files, "sd3", latent, [scene.caption for scene in prompts],
                                            twin.SAMPLE_STEPS, twin.SAMPLE_CFG))
    found = [(scene.label, measure.classify_scene(image))
             for i, scene in enumerate(prompts) for image in saved_images(host, history, f"save{i}")]
    rates = {"background": np.mean([label[0] == want[0] for want, label in found]),
             "background and count": np.mean([label[0] == want[0] and len(label[1]) == len(want[1])
                                              for want, label in found]),
             "colours": np.mean([[c for c, _ in label[1]] == [c for c, _ in want[1]] for want, label in found]),
             "shapes": np.mean([[s for _, s in label[1]] == [s for _, s in want[1]] for want, label in found])}
    print(f"\nDiT twin on the server, {len(found)} samples, right: "
          + ", ".join(f"{name} {rate:.1%}" for name, rate in rates.items()))
    assert rates["background"] >= BACKGROUND_FLOOR and rates["background and count"] >= BACKGROUND_COUNT_FLOOR, found
