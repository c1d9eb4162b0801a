"""Overhead of Seedfinder's code around the model, measured in one run on the CPU tiny model.

overhead = node wall time / (model evaluations × time of one guided evaluation) − 1, where the guided
evaluation is timed through the same CFGGuider path the node uses. Prints a markdown table.
usage: .host/venv/bin/python bench/overhead.py [--steps 10] [--size 8] [--repeats 3]
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from inprocess import import_pack, random_conditioning, tiny_model  # noqa: E402


def guided_evaluation_seconds(host, solvers, model, positive, negative, cfg, latent, sigma, count):
    """Median wall time of one guided denoiser evaluation, through the adapter's own guider path."""
    times = []

    def probe(denoiser, x0, sigmas, input_scale=None, callback=None):
        for _ in range(count):
            start = time.perf_counter()
            denoiser(x0, sigma)
            times.append(time.perf_counter() - start)
        return solvers.InversionResult(latent=x0, evaluations=count)

    host.run_inversion(probe, model, positive, negative, cfg, latent, torch.tensor([sigma, 0.0]))
    return statistics.median(times[1:])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=8, help="latent height and width")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    pack = import_pack()
    from seedfinder.nodes import host
    from seedfinder.nodes.invert import DDIMInvert, FixedPointInvert, RNRIInvert
    from seedfinder import solvers
    model = tiny_model()
    positive, negative = random_conditioning(0), random_conditioning(1)
    latent = {"samples": torch.randn(1, 4, args.size, args.size, generator=torch.Generator().manual_seed(0))}
    nodes = [("DDIM Invert", DDIMInvert, {}),
             ("FixedPoint Invert (defaults)", FixedPointInvert,
              {"max_iterations": 20, "tolerance": 1e-4, "acceleration": "anderson", "warm_start": True}),
             ("RNRI Invert (defaults)", RNRIInvert,
              {"iterations": 2, "regularization": 0.1, "gradient": "jacobian-free"})]
    print(f"| node | cfg | evaluations | node wall (s) | evals × one evaluation (s) | overhead |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        for cfg, neg in ((1.0, None), (2.0, negative)):
            one = guided_evaluation_seconds(host, solvers, model, positive, neg, cfg, latent, 1.0, 30)
            for name, node, options in nodes:
                walls, evaluations = [], 0
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    out = node.execute(model=model, positive=positive, negative=neg, latent=latent,
                                       steps=args.steps, scheduler="ddim_uniform", cfg=cfg, strength=1.0, sampler="euler",
                                       noise_seed=0, **options)
                    walls.append(time.perf_counter() - start)
                    evaluations = out.ui["seedfinder"][0]["evaluations"]
                wall = min(walls)
                ideal = evaluations * one
                print(f"| {name} | {cfg:g} | {evaluations} | {wall:.3f} | {ideal:.3f} | {100 * (wall / ideal - 1):+.1f} % |")


if __name__ == "__main__":
    main()
