"""Measure the installed demo model as ComfyUI runs it (in-process, CPU): VAE PSNR and measure accuracy on held-out
procedural images, prompt following of KSampler samples, and a PNG grid of samples.

    python -m demo_model.evaluate [--objective eps|flow] [--samples 16] [--grid /tmp/demo_samples.png]
    python -m demo_model.evaluate --scenes [--samples 8] [--cfg 4]   # the scenes UNet (128×128)
"""
import argparse
import os
import tempfile

import numpy as np

from . import data, ensure_comfy, install, measure, train

HELD_OUT_SEED = 4242  # procedural images never drawn for training (which used seeds 0 and 1)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images, dB."""
    return float(10 * np.log10(255 ** 2 / np.square(a.astype(np.float64) - b.astype(np.float64)).mean()))


def load(models_dir: str, objective: str, weights: str) -> tuple:
    """(MODEL, CLIP, VAE) installed from `weights`, through the functions behind UNETLoader, CLIPLoader, VAELoader
    (and ModelSamplingSD3, shift 1, for the flow twin)."""
    import comfy.sd
    import comfy.utils
    paths = install.write_demo_models(models_dir, weights)
    model = comfy.sd.load_diffusion_model(paths[objective])
    if objective == "flow":
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3
        (model,) = ModelSamplingSD3().patch(model, shift=1.0)
    clip = comfy.sd.load_clip([paths["clip"]])
    return model, clip, comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"]))


def sample(model, clip, vae, prompt: str, count: int, seed: int, steps: int = 20, cfg: float = 4.0) -> np.ndarray:
    """uint8 (count, 64, 64, 3): KSampler's euler/normal from `count` noises of `seed`, decoded."""
    import comfy.sample
    import torch

    from . import text
    latent = torch.zeros(count, 4, 8, 8)
    positive = [[text.encode(clip, prompt), {}]]
    negative = [[text.encode(clip, ""), {}]]
    samples = comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), steps, cfg, "euler", "normal",
                                  positive, negative, latent, disable_pbar=True, seed=seed)
    return (vae.decode(samples).clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def following(model, clip, vae, labels, count: int) -> tuple:
    """(fraction of samples whose measured colour and shape are the prompt's, the samples per label)."""
    hits, grids = [], []
    for index, label in enumerate(labels):
        images = sample(model, clip, vae, data.caption(label), count, seed=index)
        hits += [measure.classify(image)[:2] == label[:2] for image in images]
        grids.append(images)
    return float(np.mean(hits)), grids


def save_grid(path: str, grids: list, captions: list) -> None:
    """A PNG of the first 8 samples per prompt, a row per caption, each sample 128 px (nearest)."""
    from PIL import Image
    rows = [np.concatenate(list(images[:8]), axis=1) for images in grids]
    Image.fromarray(np.concatenate(rows, axis=0)).resize((8 * 128, len(rows) * 128), Image.NEAREST).save(path)
    print(f"grid: {path} (rows: {captions})")


def load_scenes(models_dir: str, weights: str, wide: bool = False) -> tuple:
    """(MODEL, CLIP, VAE) of the scenes UNet: CLIP and VAE installed from `weights` and loaded through the functions
    behind CLIPLoader (stable_diffusion) and VAELoader, the CLIP checked against the UNet's training fingerprint; the
    UNet as UNETLoader loads the installed file (`wide`), or by default at its trained width in ComfyUI's SD15 class:
    the same function (tests/test_scene_model.py), 10× narrower."""
    import json

    import comfy.sd
    import comfy.supported_models
    import comfy.utils
    import torch

    from . import scene_unet, text
    paths = install.write_scene_model(models_dir, weights, unet=wide)
    narrow, meta = scene_unet.load_weights(weights)
    clip = comfy.sd.load_clip([paths["clip"]])
    text.check_fingerprint(clip, json.loads(meta["clip_fingerprint"]))
    if wide:
        model = comfy.sd.load_diffusion_model(paths["scenes"])
    else:
        model = install.model_of_config(comfy.supported_models.SD15, scene_unet.unet_config(), torch.float32, narrow)
    return model, clip, comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"]))


def scenes_main(args) -> int:
    """--scenes: VAE PSNR on held-out scenes, prompt following of the scenes UNet, the grid."""
    import torch
    with tempfile.TemporaryDirectory() as models_dir, torch.inference_mode():
        model, clip, vae = load_scenes(models_dir, args.weights)
        print(f"VAE PSNR on 32 held-out scenes: {scene_vae_psnr(vae):.2f} dB")
        _, grids, captions = scene_report(model, clip, vae, 4, args.samples, args.steps, args.cfg, "scenes UNet",
                                          args.sampler, args.scheduler)
    save_grid(args.grid.replace("demo_samples", "scene_samples"), grids, captions)
    return 0


def scene_vae_psnr(vae, count: int = 32) -> float:
    """Mean PSNR (dB) of held-out scenes through the VAE (encode, decode)."""
    import torch

    from . import scenes
    images = scenes.dataset(count, seed=HELD_OUT_SEED)[0]
    recon = vae.decode(vae.encode(torch.from_numpy(images).float() / 255)).clamp(0, 1).numpy() * 255
    return float(np.mean([psnr(a, b) for a, b in zip(images, recon.round())]))


# The scenes world (scenes.py, 128×128): prompt following of the scenes UNet and the DiT twin, as KSampler samples them
SCENE_PROMPTS = 12  # trained scenes per evaluation; the held-out and rare pairs get SCENE_PROMPTS // 3 each
SCENE_LATENT = 16  # 128×128 through either VAE (8× down)
SCENE_STEPS, SCENE_CFG = 20, 4.0  # the scenes UNet's evaluation sampler (euler/normal)


def prompt_scenes(kind: str, count: int, seed: int = HELD_OUT_SEED) -> list:
    """`count` evaluation scenes of `kind`: "trained" (trained pairs, one or two objects), "held_out" or "rare" (the
    first object is that pair, sometimes beside a trained one). Drawn with a generator no training run used."""
    from . import scenes
    rng = np.random.default_rng(seed + {"trained": 0, "held_out": 1, "rare": 2}[kind])
    if kind == "trained":
        return [scenes.random_scene(rng) for _ in range(count)]
    pair = scenes.HELD_OUT if kind == "held_out" else scenes.RARE
    out = []
    while len(out) < count:
        scene = scenes.random_scene(rng, [pair] + [p for p in scenes.pairs() if p[0] != pair[0] and p != scenes.RARE])
        if pair in [(t.colour, t.shape) for t in scene.things]:
            out.append(scene)
    return out


def sample_latents(model, positive, negative, count: int, seed: int, channels: int, steps: int, cfg: float,
                   sampler: str = "euler", scheduler: str = "normal"):
    """KSampler at 128×128 from `count` noises of `seed`: the latents."""
    import comfy.sample
    import torch
    latent = torch.zeros(count, channels, SCENE_LATENT, SCENE_LATENT)
    return comfy.sample.sample(model, comfy.sample.prepare_noise(latent, seed), steps, cfg, sampler, scheduler,
                               positive, negative, latent, disable_pbar=True, seed=seed)


def scene_following(model, clip, vae, prompts: list, count: int, steps: int, cfg: float, channels: int,
                    sampler: str = "euler", scheduler: str = "normal") -> tuple:
    """(following_rates of the samples, judged by measure.classify_scene; the samples per prompt)."""
    found, grids = [], []
    negative = clip.encode_from_tokens_scheduled(clip.tokenize(""))
    for index, scene in enumerate(prompts):
        positive = clip.encode_from_tokens_scheduled(clip.tokenize(scene.caption))
        latents = sample_latents(model, positive, negative, count, index, channels, steps, cfg, sampler, scheduler)
        images = (vae.decode(latents).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
        found.append([measure.classify_scene(image) for image in images])
        grids.append(images)
    return following_rates(found, prompts), grids


def following_rates(found: list, prompts: list) -> dict:
    """{"scene": fraction of samples whose (background, objects left to right) is the prompt's; "background": with
    the prompt's background; where samples go wrong: "count", with the prompt's number of objects; "colour", "shape":
    fraction of objects (in samples whose count is right, left to right) of the prompt's colour / shape}. `found`: per
    prompt, the classify_scene labels of its samples."""
    scenes_right, backgrounds, counts, colours, shapes = [], [], [], [], []
    for labels, scene in zip(found, prompts):
        for label in labels:
            background, things = label
            scenes_right.append(label == scene.label)
            backgrounds.append(background == scene.background)
            counts.append(len(things) == len(scene.things))
            if counts[-1]:
                colours += [pair[0] == thing.colour for pair, thing in zip(things, scene.things)]
                shapes += [pair[1] == thing.shape for pair, thing in zip(things, scene.things)]
    return {"scene": float(np.mean(scenes_right)), "background": float(np.mean(backgrounds)),
            "count": float(np.mean(counts)), "colour": float(np.mean(colours)) if colours else float("nan"),
            "shape": float(np.mean(shapes)) if shapes else float("nan")}


def scene_report(model, clip, vae, channels: int, count: int, steps: int, cfg: float, name: str,
                 sampler: str = "euler", scheduler: str = "normal") -> tuple:
    """Prompt following on trained, held-out and rare scenes, printed: ({kind: following_rates}, the sample grids (a
    row per prompt), their captions)."""
    report, grids, captions = {}, [], []
    for kind, prompts in (("trained", prompt_scenes("trained", SCENE_PROMPTS)),
                          ("held_out", prompt_scenes("held_out", SCENE_PROMPTS // 3)),
                          ("rare", prompt_scenes("rare", SCENE_PROMPTS // 3))):
        rates, kind_grids = scene_following(model, clip, vae, prompts, count, steps, cfg, channels, sampler, scheduler)
        report[kind] = rates
        grids += kind_grids
        captions += [scene.caption for scene in prompts]
        print(f"{name} prompt following, {kind} ({len(prompts)} prompts × {count} samples, {sampler}/{scheduler} "
              f"{steps} steps cfg {cfg}): scene {rates['scene']:.1%}, background {rates['background']:.1%}; object "
              f"count {rates['count']:.1%}, where it is right: colour {rates['colour']:.1%}, shape "
              f"{rates['shape']:.1%}", flush=True)
    return report, grids, captions


def main(argv=None) -> int:
    """Command line: print the measurements, write the grid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", choices=("eps", "flow"), default="eps")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt")
    parser.add_argument("--weights", default=train.WEIGHTS, help="folder of the narrow files")
    parser.add_argument("--grid", default=os.path.join(tempfile.gettempdir(), "demo_samples.png"))
    parser.add_argument("--scenes", action="store_true", help="the scenes UNet (128×128, scene_unet.py) instead")
    parser.add_argument("--steps", type=int, default=SCENE_STEPS, help="--scenes: sampler steps")
    parser.add_argument("--cfg", type=float, default=SCENE_CFG, help="--scenes: classifier-free guidance scale")
    parser.add_argument("--sampler", default="euler", help="--scenes: KSampler's sampler_name")
    parser.add_argument("--scheduler", default="normal", help="--scenes: KSampler's scheduler")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    ensure_comfy()
    if args.scenes:
        return scenes_main(args)
    with tempfile.TemporaryDirectory() as models_dir, torch.inference_mode():
        model, clip, vae = load(models_dir, args.objective, args.weights)
        images, labels = data.dataset(256, seed=HELD_OUT_SEED, held_out=None)
        print(f"measure accuracy on held-out procedural images: "
              f"{np.mean([measure.classify(image) == label for image, label in zip(images, labels)]):.1%}")
        recon = (vae.decode(vae.encode(torch.from_numpy(images[:64]).float() / 255)).clamp(0, 1).numpy() * 255)
        print(f"VAE PSNR on 64 held-out images: {np.mean([psnr(a, b) for a, b in zip(images, recon.round())]):.2f} dB")
        rng = np.random.default_rng(HELD_OUT_SEED)
        trained = [data.all_labels(False)[i] for i in rng.choice(len(data.all_labels(False)), 6, replace=False)]
        held_out = data.all_labels(True)
        rate_trained, grid_trained = following(model, clip, vae, trained, args.samples)
        rate_held, grid_held = following(model, clip, vae, held_out, args.samples)
        print(f"prompt following ({args.objective}, {args.samples} samples per prompt, euler 20 steps cfg 4): "
              f"trained pairs {rate_trained:.1%} over {len(trained)} prompts, held-out pair {rate_held:.1%} over "
              f"{len(held_out)} prompts")
    save_grid(args.grid, grid_trained + grid_held, [data.caption(label) for label in trained + held_out])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
