"""Overhead of Seedfinder's code around the model, measured inside one run on the CPU tiny model.

Every guided evaluation (the CFGGuider's predict_noise, CFG included) is timed through ComfyUI's own
PREDICT_NOISE wrapper, so overhead = node wall time / time inside the model evaluations − 1, both from the same
run: nothing is compared across runs of a noisy machine. Prints a markdown table.
usage: .host/venv/bin/python -m bench.overhead [--steps 10] [--size 8] [--repeats 3]
"""
import argparse
import time

import torch
from seedfinder.solvers import BDIAOptions, EDICTOptions, FixedPointOptions, RNRIOptions, widgets

from tests.support.inprocess import import_pack, random_conditioning, tiny_model


class EvaluationClock:
    """A PREDICT_NOISE wrapper that counts guided evaluations and sums the time spent in them."""

    def __init__(self):
        self.seconds, self.count = 0.0, 0

    def __call__(self, executor, *args, **kwargs):
        start = time.perf_counter()
        out = executor(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.count += 1
        return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--size", type=int, default=8, help="latent height and width")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import_pack()
    import comfy.patcher_extension
    from seedfinder.nodes.exact import BDIAInvert, EDICTInvert
    from seedfinder.nodes.invert import DDIMInvert, FixedPointInvert, RNRIInvert
    positive, negative = random_conditioning(0), random_conditioning(1)
    latent = {"samples": torch.randn(1, 4, args.size, args.size, generator=torch.Generator().manual_seed(0))}
    stochastic = {"sampler": "euler", "noise_seed": 0}
    nodes = [("DDIM Invert", DDIMInvert, stochastic),
             ("FixedPoint Invert (defaults)", FixedPointInvert,
              {**stochastic, **widgets(FixedPointOptions())}),
             ("RNRI Invert (defaults)", RNRIInvert,
              {**stochastic, **widgets(RNRIOptions())}),
             ("EDICT Invert (defaults)", EDICTInvert, widgets(EDICTOptions())),
             ("BDIA Invert (defaults)", BDIAInvert, widgets(BDIAOptions()))]
    print("| node | cfg | evaluations | node wall (s) | in the model (s) | overhead |")
    print("|---|---|---|---|---|---|")
    with torch.inference_mode():
        base = tiny_model()
        for cfg, neg in ((1.0, None), (2.0, negative)):
            for name, node, options in nodes:
                results = []
                for _ in range(args.repeats):
                    clock, model = EvaluationClock(), base.clone()
                    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.PREDICT_NOISE, "seedfinder_bench",
                                               clock)
                    start = time.perf_counter()
                    node.execute(model=model, positive=positive, negative=neg, latent=latent, steps=args.steps,
                                 scheduler="ddim_uniform", cfg=cfg, strength=1.0, **options)
                    results.append((time.perf_counter() - start, clock.seconds, clock.count))
                wall, inside, count = sorted(results, key=lambda r: r[0] / r[1])[len(results) // 2]  # median
                overhead = 100 * (wall / inside - 1)
                print(f"| {name} | {cfg:g} | {count} | {wall:.3f} | {inside:.3f} | {overhead:+.1f} % |")


if __name__ == "__main__":
    main()
