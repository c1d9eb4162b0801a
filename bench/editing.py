"""What a seed is good for on the trained demo model: editing (RNRI's λ sweep against FixedPoint and DDIM), seed
interpolation and seed centroids (the FPI paper's Table 3 in small), judged by demo_model.measure.

- Editing: a held-out procedural image inverted with its caption at strength 0.6, sampled with the caption's colour
  swapped: how often the result has the target colour (and the source's background), and the PSNR of the pixels
  that are background in the source (what an edit should leave alone).
- Interpolation: two images inverted with the empty prompt, 5 frames by lerp / slerp / NAO from DDIM or FixedPoint
  seeds: the share of the 3 middle frames that the measure calls a picture of one of the two (colour and
  background; the model's shapes are unreliable).
- Centroid: 3 images of one caption (different positions and sizes) inverted together, their NAO / normalized-mean /
  mean centroid regenerated: how often it has the caption's colour and background.
usage: .host/venv/bin/python -m bench.editing [--images 6] [--steps 20] [--out bench/results]
"""
import argparse
import os
import statistics
import tempfile

import numpy as np
import torch
from seedfinder.solvers import FixedPointOptions, widgets

from bench.fidelity import RNRI_DEFAULT, conditioning, load_demo, regenerate
from tests.support.inprocess import import_pack

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_POINT = widgets(FixedPointOptions())
INVERTERS = [("DDIM", "DDIMInvert", {}), ("FixedPoint default", "FixedPointInvert", FIXED_POINT)]
INVERTERS += [(f"RNRI newton λ={lam:g}", "RNRIInvert", {**RNRI_DEFAULT, "regularization": lam})
              for lam in (0.0, 1e-3, 1e-2, 1e-1)]
INVERTERS += [("RNRI paper λ=0.1", "RNRIInvert", {**RNRI_DEFAULT, "update": "paper"})]
SWAP = {"red": "yellow", "green": "white", "blue": "red", "yellow": "blue", "purple": "green", "white": "purple"}


def pictures(vae, latent) -> np.ndarray:
    """uint8 (batch, 64, 64, 3) of a model-output latent batch."""
    return (vae.decode(latent)[..., :3].float().cpu().clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def invert(nodes, node_name, options, model, positive, negative, latent, steps, strength, cfg=1.0):
    """The node's NodeOutput (latent, noise, sigmas, sampler) and its report."""
    inputs = dict(model=model, positive=positive, negative=negative, latent=latent, steps=steps, scheduler="simple",
                  cfg=cfg, strength=strength, sampler="euler", noise_seed=0)
    out = getattr(nodes, node_name).execute(**inputs, **options)
    return out, out.ui["seedfinder"][0]


def background_psnr(source: np.ndarray, edited: np.ndarray, label) -> float:
    """PSNR over the pixels that are background in the source (nearer its background colour than its shape's)."""
    from demo_model import data
    pixels = source.astype(np.float64)
    fg, bg = np.array(data.PALETTE[label[0]]), np.array(data.PALETTE[label[2]])
    background = np.square(pixels - bg).sum(-1) < np.square(pixels - fg).sum(-1)
    mse = np.square(pixels[background] - edited.astype(np.float64)[background]).mean() / 255 ** 2
    return float(10 * np.log10(1 / max(mse, 1e-10)))


def editing_rows(nodes, model, clip, vae, images, steps) -> list:
    from demo_model import data, measure
    empty = conditioning(clip, "")
    rows = []
    for label_text, node_name, options in INVERTERS:
        hits, kept, residuals = [], [], []
        for label, image in images:
            target = (SWAP[label[0]], label[1], label[2])
            pixels = torch.from_numpy(image.copy()).float().div(255).unsqueeze(0)
            latent = {"samples": vae.encode(pixels)}
            out, info = invert(nodes, node_name, options, model, conditioning(clip, data.caption(label)), empty,
                               latent, steps, 0.6)
            edited = pictures(vae, regenerate(model, conditioning(clip, data.caption(target)), empty, 1.0,
                                              out.args[0], out.args[2], out.args[3]))[0]
            colour, _, background = measure.classify(edited)
            hits.append(colour == target[0] and background == target[2])
            kept.append(background_psnr(image, edited, label))
            residuals.append(max(info["final_residual"]))
        rows.append((label_text, 100 * statistics.mean(hits), statistics.mean(kept), statistics.mean(residuals)))
    return rows


def interpolation_rows(nodes, model, clip, vae, pairs, steps) -> list:
    from demo_model import measure
    empty = conditioning(clip, "")
    rows = []
    for label_text, node_name, options in INVERTERS[:2]:
        for path in ("lerp", "slerp", "nao"):
            valid = []
            for (label_a, image_a), (label_b, image_b) in pairs:
                seeds = []
                for image in (image_a, image_b):
                    latent = {"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))}
                    seeds.append(invert(nodes, node_name, options, model, empty, empty, latent, steps, 1.0)[0])
                frames = nodes.SeedInterpolate.execute(seed_a=seeds[0].args[1], seed_b=seeds[1].args[1], frames=5,
                                                       method=path)
                batch = pictures(vae, regenerate(model, empty, empty, 1.0, frames.args[0], frames.args[2],
                                                 frames.args[3]))
                ends = {(label_a[0], label_a[2]), (label_b[0], label_b[2])}
                for frame in batch[1:-1]:
                    colour, _, background = measure.classify(frame)
                    valid.append((colour, background) in ends)
            rows.append((f"{label_text} seeds, {path}", 100 * statistics.mean(valid)))
    return rows


def centroid_rows(nodes, model, clip, vae, groups, steps) -> list:
    from demo_model import data, measure
    empty = conditioning(clip, "")
    rows = []
    for method in ("nao", "normalized_mean", "mean"):
        hits = []
        for label, images in groups:
            positive = conditioning(clip, data.caption(label))
            batch = torch.from_numpy(np.stack(images).copy()).float().div(255)
            out, _ = invert(nodes, "FixedPointInvert", FIXED_POINT, model, positive, empty,
                            {"samples": vae.encode(batch)}, steps, 1.0)
            center = nodes.SeedCentroid.execute(seeds=out.args[1], method=method)
            picture = pictures(vae, regenerate(model, positive, empty, 1.0, center.args[0], center.args[2],
                                               center.args[3]))[0]
            colour, _, background = measure.classify(picture)
            hits.append(colour == label[0] and background == label[2])
        rows.append((f"FixedPoint seeds, {method} centroid", 100 * statistics.mean(hits)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="held-out images for editing (pairs: half of them)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes

    from demo_model import data, evaluate
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED + 1)
    labels = data.all_labels(held_out=False)
    chosen = [labels[i] for i in rng.choice(len(labels), args.images, replace=False)]
    images = [(label, data.render(label, rng)) for label in chosen]
    pairs = list(zip(images[0::2], images[1::2]))
    groups = [(label, [data.render(label, rng) for _ in range(3)]) for label in chosen[:3]]
    with torch.inference_mode():
        model, clip, vae = load_demo(tempfile.mkdtemp(prefix="seedfinder-editing-"), wide=False)
        edits = editing_rows(nodes, model, clip, vae, images, args.steps)
        paths = interpolation_rows(nodes, model, clip, vae, pairs, args.steps)
        centers = centroid_rows(nodes, model, clip, vae, groups, args.steps)
    lines = [f"Demo model, {args.steps} simple steps, euler, cfg 1; {args.images} held-out procedural images", "",
             "| edit (strength 0.6, colour swapped) | target colour and background (%) | background PSNR vs source "
             "(dB) | max final residual |", "|---|---|---|---|"]
    lines += [f"| {label} | {hit:.0f} | {kept:.2f} | {residual:.2e} |" for label, hit, kept, residual in edits]
    lines += ["", f"| interpolation ({len(pairs)} pairs, 3 middle frames each) | middle frames valid (%) |",
              "|---|---|"]
    lines += [f"| {label} | {valid:.0f} |" for label, valid in paths]
    lines += ["", f"| centroid ({len(groups)} captions, 3 images each) | regenerates the caption (%) |", "|---|---|"]
    lines += [f"| {label} | {hit:.0f} |" for label, hit in centers]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "editing.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
