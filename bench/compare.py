"""Inverters side by side on the CPU tiny model, in one run: evaluations, wall time, residual, round-trip error.

Each configuration runs its node's execute() (the full node path) on the same latents; the seed is then
regenerated with ComfyUI's euler sampler through a CFGGuider (the KSamplerAdvanced/LATENT route) and
compared with the input latent. Prints a markdown table. Ratios only: a random model does not denoise.
usage: .host/venv/bin/python bench/compare.py [--steps 10] [--scheduler ddim_uniform] [--latents 3]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from inprocess import import_pack, random_conditioning, tiny_model  # noqa: E402


def configurations():
    """(label, node class name, node options) for every method and setting compared."""
    rows = [("DDIM", "DDIMInvert", {})]
    for acceleration in ("none", "anderson"):
        rows += [(f"FixedPoint {k} it {acceleration}", "FixedPointInvert",
                  {"max_iterations": k, "tolerance": 0.0, "acceleration": acceleration, "warm_start": False})
                 for k in (1, 2, 5, 20)]
        rows += [(f"FixedPoint tol 1e-4 {acceleration}", "FixedPointInvert",
                  {"max_iterations": 20, "tolerance": 1e-4, "acceleration": acceleration, "warm_start": False})]
    rows += [("FixedPoint tol 1e-4 anderson + warm start (default)", "FixedPointInvert",
              {"max_iterations": 20, "tolerance": 1e-4, "acceleration": "anderson", "warm_start": True})]
    for gradient in ("jacobian-free", "autograd"):
        for k in (1, 2, 5, 20):
            rows.append((f"RNRI {k} it {gradient}", "RNRIInvert",
                         {"iterations": k, "regularization": 0.0, "gradient": gradient}))
        rows.append((f"RNRI 2 it {gradient} λ=0.1", "RNRIInvert",
                     {"iterations": 2, "regularization": 0.1, "gradient": gradient}))
    return rows


def regenerate(model, positive, cfg, latent, sigmas):
    """ComfyUI's euler sampler from the inverted latent with zero noise (what KSamplerAdvanced add_noise=disable does)."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive})
    guider.set_cfg(cfg)
    samples = latent["samples"]
    return guider.sample(torch.zeros_like(samples), samples, comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--scheduler", default="ddim_uniform")
    parser.add_argument("--latents", type=int, default=3, help="how many random latents to average over")
    parser.add_argument("--size", type=int, default=8)
    args = parser.parse_args()
    import_pack()
    from seedfinder.nodes import invert
    model = tiny_model()
    positive = random_conditioning(0)
    latents = [{"samples": torch.randn(1, 4, args.size, args.size, generator=torch.Generator().manual_seed(seed))}
               for seed in range(args.latents)]
    print(f"tiny SD15-architecture model, {args.size}×{args.size} latents, {args.steps} {args.scheduler} steps, cfg 1, "
          f"mean over {args.latents} latents\n")
    print("| method | evaluations / step | wall (s) | max final residual | round-trip error |")
    print("|---|---|---|---|---|")
    with torch.inference_mode():
        for label, node_name, options in configurations():
            node = getattr(invert, node_name)
            evaluations, walls, residuals, errors = [], [], [], []
            for latent in latents:
                start = time.perf_counter()
                out = node.execute(model=model, positive=positive, latent=latent, steps=args.steps,
                                   scheduler=args.scheduler, cfg=1.0, strength=1.0, sampler="euler", noise_seed=0,
                                   **options)
                walls.append(time.perf_counter() - start)
                info = out.ui["seedfinder"][0]
                evaluations.append(info["evaluations"] / info["steps"])
                residuals.append(max(info["final_residual"]))
                back = regenerate(model, positive, 1.0, out.args[0], out.args[2])
                errors.append(float((back - latent["samples"]).norm() / latent["samples"].norm()))
            print(f"| {label} | {statistics.mean(evaluations):.1f} | {statistics.mean(walls):.3f} | "
                  f"{statistics.mean(residuals):.2e} | {statistics.mean(errors):.3g} |", flush=True)


if __name__ == "__main__":
    main()
