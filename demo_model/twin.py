"""Install and measure the DiT twin (dit.py) as ComfyUI runs it: the narrow files written at the widths core's loaders
expect (the same functions), loaded by the functions behind UNETLoader (detected as SD3), CLIPLoader (type sd3) and
VAELoader; VAE PSNR and prompt following (background and objects by measure.classify_scene) of KSampler samples at
128×128.

    python -m demo_model.twin [--samples 8] [--cfg 4] [--grid /tmp/dit_samples.png]
"""
import argparse
import os
import tempfile

import torch

from . import dit, ensure_comfy, evaluate, train, widen, words

DIT_FILE = "seedfinder_demo_shapes_sd3_mmdit.safetensors"  # models/diffusion_models/: UNETLoader, detected as SD3
VAE_FILE = "seedfinder_demo_shapes_taesd16.safetensors"  # models/vae/: VAELoader (TAESD, 16 latent channels)
CLIP_FILE = "seedfinder_demo_clip_l_words.safetensors"  # models/text_encoders/: CLIPLoader, type sd3
SD3_CONTEXT, SD3_POOLED = 4096, 2048  # the widths of SD3's text conditioning (CLIP-L's part first)
# The SD3 latent format's process_in, (z − shift)·scale, undone by the VAE file: the MMDiT sees the encoder's output
SD3_SCALE, SD3_SHIFT = 1.5305, 0.0609
# Prompt following (evaluate.scene_report): euler at SD3's default shift 3
SAMPLE_STEPS, SAMPLE_CFG = 20, 4.0


def widen_text_inputs(state_dict: dict) -> dict:
    """The narrow MMDiT with SD3's text widths: zero columns after CLIP-L's 768 in the context and pooled embedders
    (CLIP-G's and T5's parts, absent for this CLIP-L alone, weigh nothing): the same function, float32."""
    out = {key: value.float() for key, value in state_dict.items()}
    for key, width in (("context_embedder.weight", SD3_CONTEXT), ("y_embedder.mlp.0.weight", SD3_POOLED)):
        out[key] = torch.nn.functional.pad(out[key], (0, width - out[key].shape[1])).contiguous()
    return out


def widen_taesd16(encoder: dict, decoder: dict, k: int = widen.TAESD_K) -> tuple:
    """The narrow 16-channel TAESD at k× width (ComfyUI's TAESD with 16 latent channels), same function."""
    wide = dit.taesd16(widen.TAESD_WIDTH * k)
    return tuple({key: widen.replicate(value.float(), widen.shapes(net)[key], k).contiguous()
                  for key, value in sd.items()} for sd, net in zip((encoder, decoder), wide))


def write_dit_models(models_dir: str, weights: str = train.WEIGHTS) -> dict:
    """Write the DiT twin's MMDiT (diffusion_models/), TAESD (vae/) and CLIP-L (text_encoders/) from the narrow files
    in `weights`; {kind: path}, kinds "dit", "vae", "clip"."""
    from .install import save_file
    ensure_comfy()
    paths = {"dit": os.path.join(models_dir, "diffusion_models", DIT_FILE),
             "vae": os.path.join(models_dir, "vae", VAE_FILE),
             "clip": os.path.join(models_dir, "text_encoders", CLIP_FILE)}
    narrow, meta = dit.load_weights("dit", weights)
    save_file(widen_text_inputs(narrow), paths["dit"],
              {key: meta[key] for key in ("source_sha256", "objective", "clip_fingerprint")})
    narrow, meta = dit.load_weights("vae", weights)
    encoder, decoder = widen_taesd16(*train.split_vae(narrow))
    save_file({**{f"taesd_encoder.{k}": v for k, v in encoder.items()},
               **{f"taesd_decoder.{k}": v for k, v in decoder.items()},
               "vae_scale": torch.tensor(SD3_SCALE), "vae_shift": torch.tensor(SD3_SHIFT)},
              paths["vae"], {"source_sha256": meta["source_sha256"]})
    save_file(words.clip_state_dict(), paths["clip"])
    return paths


def load(paths: dict) -> tuple:
    """(MODEL, CLIP, VAE) from installed files as UNETLoader, CLIPLoader (sd3) and VAELoader load them; the CLIP
    checked against the fingerprint the MMDiT was trained with."""
    import json

    import comfy.sd
    import comfy.utils
    from safetensors import safe_open
    model = comfy.sd.load_diffusion_model(paths["dit"])
    clip = comfy.sd.load_clip([paths["clip"]], clip_type=comfy.sd.CLIPType.SD3)
    with safe_open(paths["dit"], framework="pt") as f:
        words.check_fingerprint(clip, json.loads(f.metadata()["clip_fingerprint"]))
    return model, clip, comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"]))


def main(argv=None) -> int:
    """Command line: print the measurements, write the grid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8, help="samples per prompt")
    parser.add_argument("--weights", default=train.WEIGHTS, help="folder of the narrow files")
    parser.add_argument("--grid", default=os.path.join(tempfile.gettempdir(), "dit_samples.png"))
    parser.add_argument("--steps", type=int, default=SAMPLE_STEPS, help="sampler steps")
    parser.add_argument("--cfg", type=float, default=SAMPLE_CFG, help="classifier-free guidance scale")
    parser.add_argument("--sampler", default="euler", help="KSampler's sampler_name")
    parser.add_argument("--scheduler", default="normal", help="KSampler's scheduler")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ensure_comfy()
    with tempfile.TemporaryDirectory() as models_dir, torch.inference_mode():
        model, clip, vae = load(write_dit_models(models_dir, args.weights))
        print(f"detected as {type(model.model.model_config).__name__}, depth {model.model.diffusion_model.depth}")
        print(f"text: cosine (whole output, at the word) {words.separation(clip)}")
        print(f"VAE PSNR on 32 held-out scenes: {evaluate.scene_vae_psnr(vae):.2f} dB")
        _, grids, captions = evaluate.scene_report(model, clip, vae, dit.LATENT_CHANNELS, args.samples, args.steps,
                                                   args.cfg, "DiT twin", args.sampler, args.scheduler)
    evaluate.save_grid(args.grid, grids, captions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
