"""Colour edits on the trained demo ε model in PIE-Bench's background metrics: the re-prompted FixedPoint seed against
the Attention Edit Guider (with the image's exact object mask and without).

Each procedural image (its object mask is exact: the drawing's coverage) is encoded, FixedPoint-inverted with its
caption, and edited to the caption with the object's colour swapped, every method from the same seed with
SamplerCustomAdvanced's pieces (euler over the inverted sigmas):
- re-prompted seed: CFGGuider with the target caption;
- attention edit: the guider with the defaults (τ_c, τ_s), the source branch exact from the seed's trajectory, and the
  same at Prompt-to-Prompt's own fractions;
- attention edit + mask: the same with the true object mask (dilated by `--dilate` pixels).
Metrics: background PSNR / SSIM / MSE on 1 − mask as PIE-Bench computes them (both images multiplied by 1 − mask),
against the source image and, as the bound, the VAE's own round trip on the same pixels; edit success by
demo_model.measure (the target colour on the source's background); shape kept (measure's shape of the edit is the
source's: a structure check that needs no downloaded network); model evaluations and wall time per edit (the
inversion, shared by all, separately).
usage: .host/venv/bin/python -m bench.edits [--steps 20] [--dilate 2] [--cross-fraction τ_c] [--self-fraction τ_s]
       [--cfg 1] [--out bench/results]
"""
import argparse
import os
import statistics
import tempfile
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from bench.editing import SWAP, invert, pictures
from bench.fidelity import conditioning, load_demo
from solvers import P2P_PAPER, AttentionEditOptions, FixedPointOptions, psnr, ssim, widgets
from tests.support.inprocess import import_pack

HERE = os.path.dirname(os.path.abspath(__file__))
EDIT = AttentionEditOptions()


def images_with_masks(dilate: int) -> list:
    """(label, uint8 image, object mask (64, 64) in {0, 1}) of the demo images and as many held-out ones again, the
    mask the drawing's coverage > 0 grown by `dilate` pixels (edges are anti-aliased)."""
    from demo_model import data, evaluate, install, masks
    drawn = [(label, *masks.draw(label, np.random.default_rng(install.DEMO_SEED + index)))
             for index, label in enumerate(install.DEMO_LABELS)]
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED + 2)
    labels = data.all_labels(held_out=False)
    drawn += [(label, *masks.draw(label, rng)) for label in (labels[i] for i in rng.choice(len(labels), 2, False))]
    grow = torch.nn.functional.max_pool2d
    return [(label, image, grow(torch.from_numpy((cover > 0).astype(np.float32))[None, None], 2 * dilate + 1, 1,
                                dilate)[0, 0].numpy()) for label, image, cover in drawn]


def background_metrics(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> tuple:
    """(PSNR dB, SSIM, MSE) of the two uint8 images each multiplied by 1 − mask (PIE-Bench's unedited region)."""
    keep = torch.from_numpy(1 - mask)[None, ..., None].double()
    a = torch.from_numpy(source)[None].double().div(255) * keep
    b = torch.from_numpy(edited)[None].double().div(255) * keep
    return float(psnr(a, b)), float(ssim(a, b)), float((a - b).pow(2).mean())


def reprompted(model, source, target, negative, options, seed, noise, empty, sampler, sigmas, mask):
    """The seed sampled with the target prompt alone (plain re-prompting), at the edit's cfg."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": target, "negative": negative})
    guider.set_cfg(options.cfg)
    return guider.sample(noise, empty, sampler, sigmas, disable_pbar=True, seed=0)


def attention_edit(model, source, target, negative, options, seed, noise, empty, sampler, sigmas, mask):
    """The Attention Edit Guider from the seed, its source branch exact, with `mask` (or none). `options` (this bench's
    top-level `solvers` import) is rebuilt in the pack's own class, the one the host is typed for."""
    from seedfinder.nodes import host
    from seedfinder.solvers import AttentionEditOptions as PackOptions
    options = PackOptions(**asdict(options))
    guider = host.attention_edit_guider(model, host.Prompt(source, negative, options.cfg),
                                        host.Prompt(target, negative, options.cfg), options, seed,
                                        None if mask is None else torch.from_numpy(mask)[None])
    return guider.sample(noise, empty, sampler, sigmas, disable_pbar=True, seed=0)


def paper_attention_edit(model, source, target, negative, options, seed, noise, empty, sampler, sigmas, mask):
    """The attention edit at Prompt-to-Prompt's own fractions (P2P_PAPER), the cfg of the others."""
    return attention_edit(model, source, target, negative, replace(P2P_PAPER, cfg=options.cfg), seed, noise, empty,
                          sampler, sigmas, mask)


METHODS = (("re-prompted FixedPoint seed", reprompted, False, 1), ("attention edit", attention_edit, False, 2),
           ("attention edit, Prompt-to-Prompt's τ_c 0.8, τ_s 0.4", paper_attention_edit, False, 2),
           ("attention edit + true mask", attention_edit, True, 2))
"""(name, edit function, whether it gets the true mask, evaluations per step: a batch of two counts as two)."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dilate", type=int, default=2, help="pixels the object mask grows by")
    parser.add_argument("--cross-fraction", type=float, default=EDIT.cross_fraction)
    parser.add_argument("--self-fraction", type=float, default=EDIT.self_fraction)
    parser.add_argument("--cfg", type=float, default=EDIT.cfg, help="of every method (the inversion's is 1)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes

    from demo_model import data, measure
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    images = images_with_masks(args.dilate)
    options = AttentionEditOptions(args.cross_fraction, args.self_fraction, args.cfg)
    results = {name: [] for name in ("VAE round trip", *(method[0] for method in METHODS))}
    inversion_evaluations = []
    with torch.inference_mode():
        model, clip, vae = load_demo(tempfile.mkdtemp(prefix="seedfinder-edits-"), wide=False)
        empty_prompt = conditioning(clip, "")
        for label, image, mask in images:
            target_label = (SWAP[label[0]], label[1], label[2])
            source, target = conditioning(clip, data.caption(label)), conditioning(clip, data.caption(target_label))
            latent = {"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))}
            out, info = invert(nodes, "FixedPointInvert", widgets(FixedPointOptions()), model, source, empty_prompt,
                               latent, args.steps, 1.0)
            inversion_evaluations.append(info["evaluations"])
            _, seed, sigmas, sampler = out.args
            empty = torch.zeros_like(latent["samples"])
            noise = seed.generate_noise({"samples": empty})
            results["VAE round trip"].append((pictures(vae, latent["samples"])[0], None, 0.0, 0))
            for name, edit, masked, per_step in METHODS:
                start = time.perf_counter()
                edited = edit(model, source, target, empty_prompt, options, seed, noise, empty, sampler, sigmas,
                              mask if masked else None)
                seconds = time.perf_counter() - start
                results[name].append((pictures(vae, edited)[0], target_label, seconds, per_step * args.steps))
    lines = [f"Demo ε model, {len(images)} images ({', '.join(data.caption(label) for label, _, _ in images)}), "
             f"each FixedPoint-inverted with its caption ({args.steps} simple steps, euler, cfg 1, "
             f"{statistics.mean(inversion_evaluations):.0f} evaluations on average) and its object's colour swapped "
             f"({', '.join(f'{a}→{b}' for a, b in SWAP.items())}). Attention edit: τ_c {options.cross_fraction}, "
             f"τ_s {options.self_fraction}, exact source branch; cfg {options.cfg} for every method (negative: the "
             f"empty prompt); mask: the drawing's object mask grown "
             f"by {args.dilate} px. Background metrics on 1 − mask (PIE-Bench), MSE ×10⁴; evaluations per edit (a "
             f"batch of two counts as two); wall time on this machine's CPU, one thread. Edit success: the target "
             f"colour on the source's background by demo_model.measure; shape kept: measure's shape of the edit is "
             f"the source's.",
             "",
             "| method | background PSNR (dB) ↑ | background SSIM ×10² ↑ | background MSE ×10⁴ ↓ | edit success (%) | "
             "shape kept (%) | evaluations | wall time per edit (s) |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in results.items():
        scores = [background_metrics(image, edited, mask) for (_, image, mask), (edited, *_) in zip(images, rows)]
        looks = [(measure.classify(edited), measure.classify(image), target_label)
                 for (_, image, _), (edited, target_label, _, _) in zip(images, rows) if target_label]
        hits = [(got[0], got[2]) == (wanted[0], wanted[2]) for got, _, wanted in looks]
        success = f"{100 * statistics.mean(hits):.0f}" if hits else "—"
        shapes = f"{100 * statistics.mean(got[1] == source[1] for got, source, _ in looks):.0f}" if hits else "—"
        evaluations = f"{statistics.mean(row[3] for row in rows):.0f}" if hits else "—"
        seconds = f"{statistics.mean(row[2] for row in rows):.2f}" if hits else "—"
        psnr_db, ssim_score, mse = (statistics.mean(score[i] for score in scores) for i in range(3))
        lines.append(f"| {name} | {psnr_db:.2f} | {100 * ssim_score:.1f} | {1e4 * mse:.2f} | {success} | {shapes} | "
                     f"{evaluations} | {seconds} |")
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "edits.md"), "w") as f:
        f.write(f"# Colour edits in PIE-Bench's background metrics\n\n`python -m bench.edits --steps {args.steps} "
                f"--dilate {args.dilate} --cross-fraction {options.cross_fraction} --self-fraction "
                f"{options.self_fraction} --cfg {options.cfg}`\n\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
