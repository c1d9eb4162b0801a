"""Tiny models built with ComfyUI's own classes, every weight random at a sensible scale (no downloads).

ComfyUI zero-initialises output layers, and a model that outputs zeros makes every inversion trivially
exact, so every tensor is set here: matrices ~ N(0, scale²/fan_in), norm weights 1, biases 0. Requires
`comfy` importable (the test host's tree on sys.path, args.cpu = True).
"""
import math
import os

import torch

# The smallest UNet that ComfyUI's file detection still calls SD15: model_channels 320 and context_dim 768
# are required; one level, one res block, one transformer, no middle block (18.7 M parameters).
SD15_MIN_UNET = dict(
    use_checkpoint=False, image_size=32, use_spatial_transformer=True, legacy=False, adm_in_channels=None,
    in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1], channel_mult=[1],
    transformer_depth=[1], transformer_depth_output=[1, 1], transformer_depth_middle=-2,
    use_linear_in_transformer=False, context_dim=768, use_temporal_resblock=False, use_temporal_attention=False,
    num_heads=8, num_head_channels=-1,
)
# The same files are the demo model that scripts/serve.py installs: named so nobody mistakes them for a real model.
UNET_FILE = "SMOKE-TEST_seedfinder_sd15_unet_makes-noise-not-pictures.safetensors"
CLIP_FILE = "SMOKE-TEST_seedfinder_clip_l_makes-noise-not-pictures.safetensors"
VAE_FILE = "SMOKE-TEST_seedfinder_taesd_vae_makes-noise-not-pictures.safetensors"
DEMO_IMAGES = [f"seedfinder_demo_{i}.png" for i in range(4)]
# At this scale the random UNet neither outputs ~0 nor explodes, and fixed-point inversion converges
# (probes: 0.35 converged for every seed tried; 0.5-1 for some; >= 2 for none).
WEIGHT_SCALE = 0.35


def random_state_dict(shapes: dict, seed: int, scale: float = 1.0, dtype=torch.float32) -> dict:
    """Deterministic random weights: matrices N(0, scale²/fan_in), 1-D weights (norms) 1, biases 0."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(shapes):
        shape = tuple(shapes[key])
        if len(shape) <= 1:
            tensor = torch.ones(shape) if key.endswith("weight") else torch.zeros(shape)
        else:
            fan_in = math.prod(shape[1:])
            tensor = torch.randn(shape, generator=generator, dtype=torch.float32) * (scale / math.sqrt(fan_in))
        out[key] = tensor.to(dtype).contiguous()
    return out


def meta_shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def unet_state_dict(config=SD15_MIN_UNET, seed=0, scale=WEIGHT_SCALE) -> dict:
    import comfy.ops
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    unet = UNetModel(**config, device="meta", operations=comfy.ops.disable_weight_init)
    return random_state_dict(meta_shapes(unet), seed, scale)


def taesd_state_dicts(seed=0):
    from comfy.taesd.taesd import TAESD
    with torch.device("meta"):
        taesd = TAESD()
    return (random_state_dict(meta_shapes(taesd.taesd_encoder), seed),
            random_state_dict(meta_shapes(taesd.taesd_decoder), seed + 1))


def clip_l_state_dict(seed=0, dtype=torch.float16) -> dict:
    import comfy.sd1_clip
    clip = comfy.sd1_clip.SDClipModel(device="meta", dtype=torch.float32)
    return random_state_dict(meta_shapes(clip.transformer), seed, dtype=dtype)


# Video models (5-D latents: batch, 16 channels, frames, height, width), as files ComfyUI's UNETLoader and VAELoader
# detect like the real ones. Wan 2.1 t2v: detection reads dim (heads = dim / 128), ffn_dim and the block count from
# the weights and fixes text_dim at UMT5-XXL's 4096; one block at dim 128 (0.9 M parameters). Its VAE: detection
# reads dim from decoder.head.0.gamma; dim 8 (0.9 M). The Wan files carry the names a user's ComfyUI has, so the
# video example workflow runs on the test host unchanged (they are only ever written there).
WAN21_UNET = dict(model_type="t2v", dim=128, ffn_dim=256, num_heads=1, num_layers=1, text_dim=4096, in_dim=16,
                  out_dim=16, freq_dim=256)
WAN21_VAE = dict(dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True])
WAN21_UNET_FILE = "wan2.1_t2v_1.3B_fp16.safetensors"
WAN21_VAE_FILE = "wan_2.1_vae.safetensors"
# HunyuanVideo: detection reads hidden_size (heads = hidden / 128), the text width and the block counts; one double
# and one single block at hidden size 128 with HunyuanVideo's 4096-d text tokens and 768-d pooled vector (2.7 M).
HUNYUAN_VIDEO = dict(image_model="hunyuan_video", in_channels=16, out_channels=16, vec_in_dim=768,
                     context_in_dim=4096, hidden_size=128, mlp_ratio=4.0, num_heads=1, depth=1, depth_single_blocks=1,
                     axes_dim=[16, 56, 56], theta=256, patch_size=[1, 2, 2], qkv_bias=True, guidance_embed=True,
                     byt5=False, meanflow=False, use_cond_type_embedding=False, vision_in_dim=None)
HUNYUAN_VIDEO_FILE = "SMOKE-TEST_seedfinder_hunyuan_video_makes-noise-not-pictures.safetensors"
VIDEO_CLIPS = [f"seedfinder_clip_{i}.webp" for i in range(2)]
CLIP_FRAMES = 5
"""Wan's VAE encodes 1 + 4k frames: 5 frames are 2 latent frames."""


def wan21_state_dicts(seed=0) -> tuple:
    """(diffusion model, VAE) state dicts of the tiny Wan 2.1 t2v."""
    import comfy.ops
    from comfy.ldm.wan.model import WanModel
    from comfy.ldm.wan.vae import WanVAE
    unet = WanModel(**WAN21_UNET, device="meta", operations=comfy.ops.disable_weight_init)
    with torch.device("meta"):
        vae = WanVAE(**WAN21_VAE)
    return (random_state_dict(meta_shapes(unet), seed, WEIGHT_SCALE, torch.float16),
            random_state_dict(meta_shapes(vae), seed + 1))


def hunyuan_video_state_dict(seed=0) -> dict:
    import comfy.ops
    from comfy.ldm.hunyuan_video.model import HunyuanVideo
    model = HunyuanVideo(**HUNYUAN_VIDEO, device="meta", operations=comfy.ops.disable_weight_init)
    return random_state_dict(meta_shapes(model), seed, WEIGHT_SCALE)


def save(state_dict: dict, path: str) -> None:
    import safetensors.torch
    os.makedirs(os.path.dirname(path), exist_ok=True)
    safetensors.torch.save_file(state_dict, path)


def write_models(models_dir: str, seed: int = 0) -> None:
    """UNETLoader's tiny SD15 UNet, VAELoader's TAESD-architecture VAE (one file, SD1.5 scale) and CLIPLoader's
    CLIP-L, all random."""
    save(unet_state_dict(seed=seed), os.path.join(models_dir, "diffusion_models", UNET_FILE))
    encoder, decoder = taesd_state_dicts(seed + 10)
    vae = {**{f"taesd_encoder.{k}": v for k, v in encoder.items()},
           **{f"taesd_decoder.{k}": v for k, v in decoder.items()},
           "vae_scale": torch.tensor(0.18215), "vae_shift": torch.tensor(0.0)}
    save(vae, os.path.join(models_dir, "vae", VAE_FILE))
    save(clip_l_state_dict(seed + 20), os.path.join(models_dir, "text_encoders", CLIP_FILE))


def write_video_models(models_dir: str, seed: int = 0) -> None:
    """UNETLoader's tiny Wan 2.1 t2v and HunyuanVideo, VAELoader's tiny Wan 2.1 VAE, all random."""
    unet, vae = wan21_state_dicts(seed)
    save(unet, os.path.join(models_dir, "diffusion_models", WAN21_UNET_FILE))
    save(vae, os.path.join(models_dir, "vae", WAN21_VAE_FILE))
    save(hunyuan_video_state_dict(seed + 30), os.path.join(models_dir, "diffusion_models", HUNYUAN_VIDEO_FILE))


def smooth_image(seed: int, size: int = 64):
    """A smooth random RGB image (low-frequency bumps), like a photo more than like noise."""
    import numpy as np
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, width = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4)
        image += rng.uniform(-1, 1, 3) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / width ** 2)[..., None]
    image = (image - image.min()) / (image.max() - image.min() + 1e-9)
    return (image * 255).astype("uint8")


def write_images(input_dir: str, names=DEMO_IMAGES) -> None:
    """The smooth test images as PNGs for LoadImage."""
    from PIL import Image
    os.makedirs(input_dir, exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(smooth_image(index)).save(os.path.join(input_dir, name))


def write_clips(input_dir: str, names=VIDEO_CLIPS, frames: int = CLIP_FRAMES, size: int = 64) -> None:
    """Short clips as lossless animated WEBPs for LoadImage (which returns every frame): a window panning over a
    smooth random image, 4 pixels a frame."""
    from PIL import Image
    os.makedirs(input_dir, exist_ok=True)
    for index, name in enumerate(names):
        scene = smooth_image(100 + index, size + 4 * frames)
        clip = [Image.fromarray(scene[4 * t:4 * t + size, 4 * t:4 * t + size]) for t in range(frames)]
        clip[0].save(os.path.join(input_dir, name), save_all=True, append_images=clip[1:], lossless=True,
                     duration=62, loop=0)
