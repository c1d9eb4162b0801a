"""The demo model (demo_model/): exact widening, shipped files' provenance, CLIP fingerprint, and what it does
through ComfyUI's core nodes on the real server: denoising, prompt following, VAE reconstruction."""
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO
from support.tinymodels import UNET_FILE

pytestmark = pytest.mark.host

PROMPT_STEPS, PROMPT_CFG = 10, 4.0  # 20 steps: the same rates (held-out shape 50 %), twice the time
HELD_OUT_PROMPTS = ("a green triangle on a black background",)
TRAINED_PROMPTS = ("a red disc on a blue background", "a yellow square on a gray background",
                   "a white triangle on a red background", "a purple disc on a white background")
PSNR_FLOOR_DB = 23.0
TRAINED_SHAPE_FLOOR = 0.4


@pytest.fixture(scope="module")
def demo(host):
    """The demo model the host fixture installed into the server's models/ and input/: (paths, image names)."""
    return host.demo_files


def narrow_unet(objective: str):
    """The shipped narrow UNet (float32) and its metadata."""
    from demo_model import train, widen
    weights, meta = train.load_weights(objective)
    net = widen.unet()
    net.load_state_dict(weights)
    return net.eval(), meta


def test_widened_unet_is_sd15_and_computes_the_narrow_function(demo):
    import comfy.sd
    import torch
    paths, _ = demo
    generator = torch.Generator().manual_seed(3)
    for objective in ("eps", "flow"):
        if objective not in paths:
            continue
        narrow, _ = narrow_unet(objective)
        patcher = comfy.sd.load_diffusion_model(paths[objective])
        assert type(patcher.model.model_config).__name__ == "SD15"
        wide = patcher.model.diffusion_model
        assert wide.dtype == torch.float32 and wide.model_channels == 320
        x = torch.randn(3, 4, 8, 8, generator=generator)
        context = torch.randn(3, 77, 768, generator=generator)
        sigmas = torch.tensor([0.05, 1.0, 14.0])
        timesteps = patcher.model.model_sampling.timestep(sigmas).float()
        with torch.no_grad():
            error = (wide(x, timesteps, context=context) - narrow(x, timesteps, context=context)).abs().max().item()
        assert error < 1e-4


def test_widened_taesd_encodes_and_decodes_as_the_narrow_one(demo):
    import comfy.sd
    import comfy.utils
    import torch

    from demo_model import install, train, widen
    encoder, decoder = widen.taesd_encoder(), widen.taesd_decoder()
    for net, state in zip((encoder, decoder), train.split_vae(train.load_weights("vae")[0])):
        net.load_state_dict(state)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(demo[0]["vae"]))
    image = torch.from_numpy(install.demo_image(0)).float()[None] / 255
    with torch.no_grad():
        latent = encoder(image.movedim(-1, 1))
        encoded = vae.encode(image) * install.SD15_SCALE  # SD15's process_in: what the UNet sees
        decoded = vae.decode(latent / install.SD15_SCALE)
        narrow_decoded = decoder(latent).clamp(0, 1).movedim(1, -1)
    assert (encoded - latent).abs().max() < 1e-4
    assert (decoded - narrow_decoded).abs().max() < 1e-4


def run_check(folder: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "demo_model.train", "--check", "--out", folder]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_accepts_the_shipped_files_and_refuses_stale_ones(tmp_path):
    import safetensors.torch

    from demo_model import train
    shipped = run_check(train.WEIGHTS)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    tensors, meta = train.load_weights("vae")
    safetensors.torch.save_file(tensors, str(tmp_path / train.FILES["vae"]), metadata={**meta, "source_sha256": "0"})
    assert run_check(str(tmp_path)).returncode == 1  # stale VAE, missing UNet


def test_loaded_clip_matches_the_training_fingerprint_and_another_does_not(demo):
    import json

    import comfy.sd
    import torch

    from demo_model import text
    expected = json.loads(narrow_unet("eps")[1]["clip_fingerprint"])
    clip = comfy.sd.load_clip([demo[0]["clip"]])
    text.check_fingerprint(clip, expected)
    final_norm = clip.cond_stage_model.clip_l.transformer.text_model.final_layer_norm
    with torch.no_grad():
        final_norm.weight.mul_(1.05)  # another CLIP, barely: 5 % larger embeddings
    with pytest.raises(ValueError, match="not the demo model's text encoder"):
        text.check_fingerprint(clip, expected)


def vae_loader() -> dict:
    from demo_model import install
    return {"class_type": "VAELoader", "inputs": {"vae_name": install.VAE_FILE}}


def loaders(unet: str) -> dict:
    """UNETLoader, CLIPLoader, VAELoader of the installed demo files, and the empty prompt's conditioning."""
    from demo_model import install
    return {"unet": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
            "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": install.CLIP_FILE,
                                                            "type": "stable_diffusion"}},
            "vae": vae_loader(),
            "empty_prompt": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["clip", 0]}}}


def denoise_graph(unet: str, sigma: float) -> dict:
    """Each demo image encoded, noised to `sigma` (seeded) and denoised in one Euler step to σ = 0, conditioned on
    its caption."""
    from demo_model import data, install
    graph = {**loaders(unet),
             "schedule": {"class_type": "BasicScheduler", "inputs": {"model": ["unet", 0], "scheduler": "normal",
                                                                     "steps": 1, "denoise": 1.0}},
             "sigmas": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["schedule", 0], "sigma": sigma}},
             "euler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}}
    for i, label in enumerate(install.DEMO_LABELS):
        graph.update({
            f"image{i}": {"class_type": "LoadImage", "inputs": {"image": install.image_name(label)}},
            f"encode{i}": {"class_type": "VAEEncode", "inputs": {"pixels": [f"image{i}", 0], "vae": ["vae", 0]}},
            f"prompt{i}": {"class_type": "CLIPTextEncode",
                           "inputs": {"text": data.caption(label), "clip": ["clip", 0]}},
            f"denoise{i}": {"class_type": "SamplerCustom", "inputs": {
                "model": ["unet", 0], "add_noise": True, "noise_seed": 100 + i, "cfg": 1.0,
                "positive": [f"prompt{i}", 0], "negative": ["empty_prompt", 0], "sampler": ["euler", 0],
                "sigmas": ["sigmas", 0], "latent_image": [f"encode{i}", 0]}},
            f"save_clean{i}": {"class_type": "SaveLatent", "inputs": {"samples": [f"encode{i}", 0],
                                                                      "filename_prefix": f"demo/clean{i}"}},
            f"save_denoised{i}": {"class_type": "SaveLatent", "inputs": {"samples": [f"denoise{i}", 0],
                                                                         "filename_prefix": f"demo/denoised{i}"}},
        })
    return graph


def denoising_mse(host, unet: str, sigma: float) -> float:
    """Mean squared error (model space) of the one-step denoised demo latents against the clean ones."""
    from support.graphs import saved_latent

    from demo_model import install
    history = host.run(denoise_graph(unet, sigma))
    errors = [(saved_latent(host, history, f"save_denoised{i}") - saved_latent(host, history, f"save_clean{i}"))
              .square().mean().item() for i in range(len(install.DEMO_LABELS))]
    return float(np.mean(errors)) * install.SD15_SCALE ** 2


def test_denoising_loss_is_far_below_the_untrained_networks(host, demo):
    from demo_model import install
    for sigma in (0.5, 2.0):
        trained = denoising_mse(host, install.UNET_FILES["eps"], sigma)
        untrained = denoising_mse(host, UNET_FILE, sigma)
        assert trained < 0.2 * untrained


def sample_graph(unet: str, prompt: str, batch: int, seed: int) -> dict:
    """KSampler (euler) from `batch` noises of one seed at 64×64, decoded and saved."""
    return {**loaders(unet),
            "prompt": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["clip", 0]}},
            "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": batch}},
            "sample": {"class_type": "KSampler", "inputs": {
                "model": ["unet", 0], "seed": seed, "steps": PROMPT_STEPS, "cfg": PROMPT_CFG,
                "sampler_name": "euler", "scheduler": "normal", "positive": ["prompt", 0],
                "negative": ["empty_prompt", 0], "latent_image": ["empty", 0], "denoise": 1.0}},
            "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["vae", 0]}},
            "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": "demo/sample"}}}


def saved_images(host, history: dict, node: str) -> list:
    from PIL import Image
    return [np.asarray(Image.open(host.output_file(record)).convert("RGB"))
            for record in history["outputs"][node]["images"]]


def following_rates(host, prompts, batch: int) -> tuple:
    """Fractions of samples whose measured colour, and colour and shape, are the prompt's."""
    from demo_model import install, measure
    colours, hits = [], []
    for index, prompt in enumerate(prompts):
        colour, shape = prompt.split()[1:3]
        history = host.run(sample_graph(install.UNET_FILES["eps"], prompt, batch, seed=index))
        found = [measure.classify(image)[:2] for image in saved_images(host, history, "save")]
        colours += [result[0] == colour for result in found]
        hits += [result == (colour, shape) for result in found]
    return float(np.mean(colours)), float(np.mean(hits))


def test_samples_follow_the_prompt_for_trained_and_held_out_pairs(host, demo):
    held_out = following_rates(host, HELD_OUT_PROMPTS, batch=16)
    trained = following_rates(host, TRAINED_PROMPTS, batch=4)
    # the colour is followed, also for the held-out pair; the shape of a trained pair, by this briefly trained UNet,
    # about half the time (chance: a third), and the held-out pair's shape no better than chance: not asserted
    assert trained[0] >= 0.9 and held_out[0] >= 0.9
    assert trained[1] >= TRAINED_SHAPE_FLOOR


def vae_psnrs(host, images: list) -> list:
    """PSNR (dB) of each installed demo image through the demo VAE (encode, decode) on the server."""
    from demo_model import install
    graph = {"vae": vae_loader()}
    for i, name in enumerate(images):
        graph.update({f"image{i}": {"class_type": "LoadImage", "inputs": {"image": name}},
                      f"encode{i}": {"class_type": "VAEEncode", "inputs": {"pixels": [f"image{i}", 0],
                                                                           "vae": ["vae", 0]}},
                      f"decode{i}": {"class_type": "VAEDecode", "inputs": {"samples": [f"encode{i}", 0],
                                                                           "vae": ["vae", 0]}},
                      f"save{i}": {"class_type": "SaveImage", "inputs": {"images": [f"decode{i}", 0],
                                                                         "filename_prefix": f"demo/recon{i}"}}})
    history = host.run(graph)
    psnrs = []
    for i in range(len(images)):
        original = install.demo_image(i).astype(np.float64)
        reconstructed = saved_images(host, history, f"save{i}")[0].astype(np.float64)
        psnrs.append(10 * np.log10(255 ** 2 / np.square(original - reconstructed).mean()))
    return psnrs


def test_vae_reconstructs_held_out_images(host, demo):
    from demo_model import install
    demo_images = demo[1][:len(install.DEMO_LABELS)]  # the held-out pair's extra references come after them
    psnrs = vae_psnrs(host, demo_images)
    assert min(psnrs) >= PSNR_FLOOR_DB
