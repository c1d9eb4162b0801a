"""The second model (demo_model/second.py, glyph world): installed by demo_model.install beside the demo model, loaded
by the functions behind core's UNETLoader, VAELoader and CLIPLoader (detected as SD15), the same function as the
shipped narrow files, provenance checked, training resumable bit for bit, and a trained denoiser."""
import subprocess
import sys

import pytest
from conftest import REPO, installed_files

pytestmark = pytest.mark.models

SIGMAS = (0.5, 2.0)
IMAGES = 8
PSNR_IMAGES = 32
PSNR_FLOOR_DB = 21.0  # mean over PSNR_IMAGES held-out glyph images
TRAINED_FRACTION = 0.2  # the trained model's one-step x0 error, at most this fraction of an untrained one's


@pytest.fixture(scope="module")
def installed(tmp_path_factory, comfy_inprocess):
    """{kind: path} of the files demo_model.install writes (install.write_second_model)."""
    from demo_model import install
    yield from installed_files(tmp_path_factory, install.write_second_model)


def test_installed_second_unet_is_sd15_and_computes_the_narrow_function(installed):
    import comfy.sd
    import torch

    from demo_model import second
    narrow = second.unet()
    narrow.load_state_dict(second.load_weights("eps")[0])
    patcher = comfy.sd.load_diffusion_model(installed["second"])
    detected = patcher.model.model_config
    print(f"\nsecond model detected as {type(detected).__name__}: {detected.unet_config}")
    assert type(detected).__name__ == "SD15"
    assert detected.unet_config["channel_mult"] == [1, 2] and detected.unet_config["transformer_depth"] == [0, 0, 1, 1]
    wide = patcher.model.diffusion_model
    assert wide.dtype == torch.float32 and wide.model_channels == 320
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(3, 4, 8, 8, generator=generator)
    context = torch.randn(3, 77, 768, generator=generator)
    timesteps = patcher.model.model_sampling.timestep(torch.tensor([0.05, 1.0, 14.0])).float()
    with torch.no_grad():
        error = (wide(x, timesteps, context=context) - narrow.eval()(x, timesteps, context=context)).abs().max().item()
    print(f"widened second UNet max abs error {error:.2e}")
    assert error < 1e-4


def test_installed_second_taesd_is_the_narrow_one_and_reconstructs_held_out_glyphs(installed):
    import comfy.sd
    import comfy.utils
    import numpy as np
    import torch
    from support.inprocess import trained_images

    from demo_model import evaluate, install, second, train, widen
    encoder, decoder = widen.taesd_encoder(), widen.taesd_decoder()
    for net, state in zip((encoder, decoder), train.split_vae(second.load_weights("vae")[0])):
        net.load_state_dict(state)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(installed["second_vae"]))
    images = np.stack([image for _, image in trained_images("second", PSNR_IMAGES)])
    pixels = torch.from_numpy(images).float() / 255
    with torch.no_grad():
        latent = encoder(pixels.movedim(-1, 1))
        encoded = vae.encode(pixels) * install.SD15_SCALE
        decoded = vae.decode(latent / install.SD15_SCALE)
        narrow_decoded = decoder(latent).clamp(0, 1).movedim(1, -1)
    print(f"\nsecond TAESD widening: encode {(encoded - latent).abs().max():.2e}, decode "
          f"{(decoded - narrow_decoded).abs().max():.2e}")
    assert (encoded - latent).abs().max() < 1e-4
    assert (decoded - narrow_decoded).abs().max() < 1e-4
    psnrs = [evaluate.psnr(a, b) for a, b in zip(images, (decoded.numpy() * 255).round())]
    print(f"second TAESD PSNR on {len(psnrs)} held-out glyph images: mean {np.mean(psnrs):.2f} dB, "
          f"{min(psnrs):.1f}-{max(psnrs):.1f}")
    assert np.mean(psnrs) >= PSNR_FLOOR_DB


def run_check(folder: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "demo_model.second", "--check", "--out", folder]
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)


def test_check_accepts_the_shipped_second_files_and_refuses_stale_ones(tmp_path, comfy_inprocess):
    import safetensors.torch

    from demo_model import second, train
    shipped = run_check(train.WEIGHTS)
    assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    tensors, meta = second.load_weights("vae")
    safetensors.torch.save_file(tensors, str(tmp_path / second.FILES["vae"]), metadata={**meta, "source_sha256": "0"})
    refused = run_check(str(tmp_path))  # stale VAE, missing UNet
    assert refused.returncode == 1 and "STALE" in refused.stdout and "MISSING" in refused.stdout


def test_a_cut_off_training_resumes_to_the_same_weights(tmp_path, monkeypatch, comfy_inprocess):
    from demo_model import second, train
    config = {**second.VAE_CONFIG, **second.QUICK}
    every = second.QUICK["steps"] // 2
    whole = second.train_vae(config, str(tmp_path / "whole"), every)
    original = train.learning_rate

    def cut_off(step, *args, **kwargs):
        if step == every + 1:
            raise KeyboardInterrupt  # as a run cut off after its first checkpoint
        return original(step, *args, **kwargs)

    monkeypatch.setattr(train, "learning_rate", cut_off)
    with pytest.raises(KeyboardInterrupt):
        second.train_vae(config, str(tmp_path / "cut"), every)
    monkeypatch.setattr(train, "learning_rate", original)
    resumed = second.train_vae(config, str(tmp_path / "cut"), every)
    for a, b in zip(whole[:2], resumed[:2]):
        for key, value in a.state_dict().items():
            assert value.equal(b.state_dict()[key]), key
    assert whole[2] == resumed[2]


def one_step_x0_error(model, clip, vae, sigma: float) -> float:
    """Mean squared error (model space) of held-out glyph latents noised to `sigma` (seeded) and denoised in one
    Euler step to σ = 0 (SamplerCustom's path), conditioned on their captions, cfg 1."""
    import comfy.sample
    import comfy.samplers
    import torch
    from support.inprocess import trained_images

    from demo_model import install, text
    errors = []
    for index, (caption, image) in enumerate(trained_images("second", IMAGES)):
        latent = vae.encode(torch.from_numpy(image).float()[None] / 255)
        positive, negative = [[text.encode(clip, caption), {}]], [[text.encode(clip, ""), {}]]
        denoised = comfy.sample.sample_custom(model, comfy.sample.prepare_noise(latent, 100 + index), 1.0,
                                              comfy.samplers.sampler_object("euler"), torch.tensor([sigma, 0.0]),
                                              positive, negative, latent, disable_pbar=True, seed=100 + index)
        errors.append((denoised - latent).square().mean().item())
    return sum(errors) / len(errors) * install.SD15_SCALE ** 2


def test_second_model_denoises_far_better_than_an_untrained_one_of_its_layout(installed):
    import comfy.supported_models
    import torch
    from support.inprocess import model_of_config, trained_model

    from demo_model import second, train
    models_dir = installed["clip"].rsplit("/text_encoders/", 1)[0]
    model, clip, vae = trained_model("second", models_dir, wide=True)
    untrained = second.unet()
    train.init_unet_(untrained, torch.Generator().manual_seed(second.UNET_CONFIG["seed"]))
    untrained = model_of_config(comfy.supported_models.SD15, second.unet_config(), torch.float32,
                                untrained.state_dict())
    with torch.inference_mode():
        for sigma in SIGMAS:
            trained_error = one_step_x0_error(model, clip, vae, sigma)
            untrained_error = one_step_x0_error(untrained, clip, vae, sigma)
            print(f"\nσ {sigma}: one-step x0 MSE trained {trained_error:.4f}, untrained {untrained_error:.4f}")
            assert trained_error < TRAINED_FRACTION * untrained_error
