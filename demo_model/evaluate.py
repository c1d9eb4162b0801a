"""Measure the installed demo model as ComfyUI runs it (in-process, CPU): VAE PSNR and measure accuracy on held-out
procedural images, prompt following of KSampler samples, and a PNG grid of samples.

    python -m demo_model.evaluate [--objective eps|flow] [--samples 16] [--grid /tmp/demo_samples.png]
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


def save_grid(path: str, grids: list, labels: list) -> None:
    """A PNG of the first 8 samples per prompt, a row per label, each sample 128 px (nearest)."""
    from PIL import Image
    rows = [np.concatenate(list(images[:8]), axis=1) for images in grids]
    Image.fromarray(np.concatenate(rows, axis=0)).resize((8 * 128, len(rows) * 128), Image.NEAREST).save(path)
    print(f"grid: {path} (rows: {[data.caption(label) for label in labels]})")


def main(argv=None) -> int:
    """Command line: print the measurements, write the grid."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objective", choices=("eps", "flow"), default="eps")
    parser.add_argument("--samples", type=int, default=16, help="samples per prompt")
    parser.add_argument("--weights", default=train.WEIGHTS, help="folder of the narrow files")
    parser.add_argument("--grid", default=os.path.join(tempfile.gettempdir(), "demo_samples.png"))
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    ensure_comfy()
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
    save_grid(args.grid, grid_trained + grid_held, trained + held_out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
