"""RNRI's two updates against DDIM and FixedPoint on the tiny SD1.5-architecture model, in process: round-trip error
(ComfyUI's sampler regenerating the seed) and model evaluations, at cfg 1 and cfg 3 with a negative prompt, and on
the 4-step LCM schedule; writes bench/results/rnri.md (and .json).

usage: .host/venv/bin/python -m bench.rnri [--latents 3] [--only TEXT] [--case NAME] [--out DIR]
"""
import argparse
import functools
import json
import logging
import os

import torch

from bench.compare import run_configuration
from solvers import FixedPointOptions, RNRIOptions, widgets
from tests.support.inprocess import import_pack, random_conditioning, tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))

FIXED_POINT_DEFAULT = widgets(FixedPointOptions())
PAPER_DEFAULT = widgets(RNRIOptions(update="paper", regularization=0.1))  # the authors' α


def newton(iterations=RNRIOptions.iterations, regularization=RNRIOptions.regularization, **solver):
    """RNRI node options for the newton update; `solver`: RNRIOptions fields the node does not expose."""
    return {**widgets(RNRIOptions(iterations=iterations, regularization=regularization)),
            **({"solver": solver} if solver else {})}


def configurations():
    """(label, node class name, options)."""
    rows = [("DDIM", "DDIMInvert", {}),
            ("FixedPoint default", "FixedPointInvert", FIXED_POINT_DEFAULT),
            ("RNRI newton default (2 it, λ 0)", "RNRIInvert", newton())]
    rows += [(f"RNRI newton {k} it, λ {lam:g}", "RNRIInvert", newton(k, lam)) for k, lam in ((1, 0.0), (4, 0.0),
                                                                                              (2, 0.1), (2, 1.0))]
    rows += [("RNRI newton 2 it, λ 0, trigger 10× tol", "RNRIInvert", newton(trigger=10.0))]
    rows += [("RNRI paper (2 it, λ 0.1: the authors')", "RNRIInvert", PAPER_DEFAULT),
             ("RNRI paper 20 it, λ 0.1", "RNRIInvert", {**PAPER_DEFAULT, "iterations": 20})]
    return rows


def with_solver_options(options: dict):
    """Bind the options the node does not expose (options["solver"]) into the RNRIOptions the node builds, for one
    run."""
    import seedfinder.nodes.invert as invert_nodes
    from seedfinder.solvers.rnri import RNRIOptions as NodeOptions
    solver = options.pop("solver", {})
    invert_nodes.RNRIOptions = functools.partial(NodeOptions, **solver) if solver else NodeOptions
    return options


CASES = {
    "cfg1": dict(model="tiny", steps=10, scheduler="ddim_uniform", sampler="euler", cfg=1.0, negative=False),
    "cfg3": dict(model="tiny", steps=10, scheduler="ddim_uniform", sampler="euler", cfg=3.0, negative=True),
    "lcm4": dict(model="tiny-lcm", steps=4, scheduler="sgm_uniform", sampler="lcm", cfg=1.0, negative=False),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latents", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the methods whose label contains this text")
    parser.add_argument("--case", action="append", choices=list(CASES), help="cases to run (default: all)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("seedfinder").setLevel(logging.ERROR)  # every RNRI row at 10 steps would warn of the fold
    import_pack(cpu=True)
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    latents = [{"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))}
               for seed in range(args.latents)]
    lines, rows = [], []
    for case in args.case or list(CASES):
        spec = CASES[case]
        with torch.inference_mode():
            model, positive = tiny_model(), random_conditioning(0)
            if spec["model"] == "tiny-lcm":
                from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
                (model,) = ModelSamplingDiscrete().patch(model, "lcm", False)
            negative = random_conditioning(1) if spec["negative"] else None
        title = (f"{spec['model']} model (CPU), 8×8 latents, {spec['steps']} {spec['scheduler']} steps, sampler "
                 f"{spec['sampler']}, cfg {spec['cfg']:g}{' with a negative prompt' if negative else ''}, mean over "
                 f"{args.latents} latents")
        block = ["", f"**{case}**: {title}", "", "| method | evaluations / step | max final residual "
                 "| round-trip error "
                 "| vs DDIM |", "|---|---|---|---|---|"]
        print("\n".join(block), flush=True)
        ddim = None
        with torch.inference_mode():
            for label, node_name, options in configurations():
                if args.only not in label and label != "DDIM":
                    continue
                options = with_solver_options(dict(options))
                result = run_configuration(nodes, model, positive, latents, spec["steps"], spec["scheduler"],
                                           spec["sampler"], node_name, options, False, False, cfg=spec["cfg"],
                                           negative=negative)
                ddim = result["error"] if label == "DDIM" else ddim
                rows.append({"case": case, "label": label, **result})
                line = (f"| {label} | {result['evaluations']:.1f} | {result['residual']:.2e} | "
                        f"{result['error']:.3g} | {ddim / result['error']:.1f}× |")
                block.append(line)
                print(line, flush=True)
        lines += block
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "rnri.md"), "w") as f:
        f.write("\n".join(lines).lstrip() + "\n")
    with open(os.path.join(args.out, "rnri.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
