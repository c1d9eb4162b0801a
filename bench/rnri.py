"""RNRI's two updates against DDIM and FixedPoint, in process, through each node's execute(): the round trip the node
measures (ComfyUI's stock sampler regenerating the seed), per latent against FixedPoint's, the node's estimate of it,
and model evaluations; on the tiny random SD1.5-architecture model (smoke: cfg 1, cfg 3 with a negative prompt, the
4-step LCM schedule) and on the two trained models (held-out images with their captions, cfg 1 and 3 with the empty
negative prompt, 10 and 4 steps); writes bench/results/rnri.md (and .json).

usage: .host/venv/bin/python -m bench.rnri [--models smoke demo second] [--latents 3] [--only TEXT] [--out DIR]
"""
import argparse
import functools
import json
import logging
import os
import statistics

import torch
from seedfinder.solvers import FixedPointOptions, RNRIOptions, widgets

from bench.fidelity import conditioning
from tests.support.inprocess import import_pack, random_conditioning, tiny_model, trained_images, trained_model

HERE = os.path.dirname(os.path.abspath(__file__))

FIXED_POINT_DEFAULT = widgets(FixedPointOptions())
PAPER_DEFAULT = widgets(RNRIOptions(update="paper", regularization=0.1))  # the authors' α


def newton(iterations=RNRIOptions.iterations, regularization=RNRIOptions.regularization, **solver):
    """RNRI node options for the newton update; `solver`: RNRIOptions fields the node does not expose."""
    return {**widgets(RNRIOptions(iterations=iterations, regularization=regularization)),
            **({"solver": solver} if solver else {})}


def configurations(trained: bool):
    """(label, node class name, options); on the trained models the rows that differ there."""
    rows = [("DDIM", "DDIMInvert", {}),
            ("FixedPoint default", "FixedPointInvert", FIXED_POINT_DEFAULT),
            ("RNRI newton default (2 it, λ 0)", "RNRIInvert", newton()),
            ("RNRI newton without FixedPoint's walk beside", "RNRIInvert", newton(beside_fixed_point=False))]
    if not trained:
        rows += [(f"RNRI newton {k} it, λ {lam:g}", "RNRIInvert", newton(k, lam)) for k, lam in ((1, 0.0), (4, 0.0),
                                                                                                  (2, 1.0))]
        rows += [("RNRI newton 2 it, λ 0, trigger 10× tol", "RNRIInvert", newton(trigger=10.0))]
    rows += [("RNRI newton 2 it, λ 0.1", "RNRIInvert", newton(2, 0.1)),
             ("RNRI paper (2 it, λ 0.1: the authors')", "RNRIInvert", PAPER_DEFAULT),
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


SMOKE = {
    "cfg1": dict(steps=10, scheduler="ddim_uniform", sampler="euler", cfg=1.0),
    "cfg3": dict(steps=10, scheduler="ddim_uniform", sampler="euler", cfg=3.0),
    "lcm4": dict(steps=4, scheduler="sgm_uniform", sampler="lcm", cfg=1.0),
}
TRAINED = {
    "cfg1": dict(steps=10, scheduler="ddim_uniform", sampler="euler", cfg=1.0),
    "cfg3": dict(steps=10, scheduler="ddim_uniform", sampler="euler", cfg=3.0),
    "4 steps, cfg3": dict(steps=4, scheduler="ddim_uniform", sampler="euler", cfg=3.0),
}


def smoke_model(case: str, count: int) -> tuple:
    """(model, [(latent, positive)], negative, title) of the tiny random model: random 8×8 latents, random prompts."""
    model, positive = tiny_model(), random_conditioning(0)
    if case == "lcm4":
        from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
        (model,) = ModelSamplingDiscrete().patch(model, "lcm", False)
    latents = [{"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed))}
               for seed in range(count)]
    return model, [(latent, positive) for latent in latents], random_conditioning(1), "tiny random model, 8×8 latents"


def trained_case(name: str, count: int) -> tuple:
    """(model, [(latent, positive)], negative, title) of a trained model: held-out images with their captions."""
    model, clip, vae = trained_model(name)
    items = [({"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))},
              conditioning(clip, caption)) for caption, image in trained_images(name, count)]
    return model, items, conditioning(clip, ""), f"{name} model, held-out 64×64 images with their captions"


def run(nodes, model, items, negative, spec, node_name, options) -> dict:
    """Each latent inverted by the node and measured by it: per-latent round trips, estimates, evaluations."""
    common = dict(model=model, steps=spec["steps"], scheduler=spec["scheduler"], cfg=spec["cfg"], strength=1.0,
                  negative=negative if spec["cfg"] != 1.0 else None)
    if node_name in ("DDIMInvert", "FixedPointInvert", "RNRIInvert"):
        common.update(sampler=spec["sampler"], noise_seed=0, round_trip="measure")
    node = getattr(nodes, node_name)
    infos = [node.execute(latent=latent, positive=positive, **common, **options).ui["seedfinder"][0]
             for latent, positive in items]
    return {"round_trips": [info["round_trip_measured"] for info in infos],
            "estimates": [info["round_trip_estimate"] for info in infos],
            "evaluations": statistics.mean(info["evaluations"] / info["steps"] for info in infos),
            "residual": max(max(info["final_residual"]) for info in infos)}


def max_ratio(values: list, baseline: list) -> float:
    """The largest per-latent ratio value / baseline."""
    return max(v / b for v, b in zip(values, baseline))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smoke", "demo", "second"], choices=["smoke", "demo", "second"])
    parser.add_argument("--latents", type=int, default=3)
    parser.add_argument("--only", default="", help="run only the methods whose label contains this text")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.getLogger("seedfinder").setLevel(logging.ERROR)  # every RNRI row at 10 steps would warn of the fold
    import_pack(cpu=True)
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    lines, rows = [], []
    for name in args.models:
        if name != "smoke":
            with torch.inference_mode():
                loaded = trained_case(name, args.latents)
        for case, spec in (SMOKE if name == "smoke" else TRAINED).items():
            with torch.inference_mode():
                model, items, negative, title = smoke_model(case, args.latents) if name == "smoke" else loaded
            block = ["", f"**{name}, {case}**: {title}, {spec['steps']} {spec['scheduler']} steps, sampler "
                     f"{spec['sampler']}, cfg {spec['cfg']:g}{' with a negative prompt' if spec['cfg'] != 1 else ''}, "
                     f"{len(items)} latents", "",
                     "| method | evaluations / step | max final residual | round trip, mean | vs DDIM | "
                     "worst latent / FixedPoint's | estimate, mean |", "|---|---|---|---|---|---|---|"]
            print("\n".join(block), flush=True)
            ddim = fixed = None
            with torch.inference_mode():
                for label, node_name, options in configurations(trained=name != "smoke"):
                    if args.only not in label and node_name == "RNRIInvert":
                        continue
                    result = run(nodes, model, items, negative, spec, node_name, with_solver_options(dict(options)))
                    ddim = ddim or result
                    fixed = result if node_name == "FixedPointInvert" else fixed
                    mean = statistics.mean(result["round_trips"])
                    worst = "—" if fixed is None else f"{max_ratio(result['round_trips'], fixed['round_trips']):.2f}"
                    rows.append({"model": name, "case": case, "label": label, **result})
                    line = (f"| {label} | {result['evaluations']:.1f} | {result['residual']:.2e} | {mean:.3g} | "
                            f"{statistics.mean(ddim['round_trips']) / mean:.1f}× | {worst} | "
                            f"{statistics.mean(result['estimates']):.3g} |")
                    block.append(line)
                    print(line, flush=True)
            lines += block
            write(args.out, lines, rows)


def write(folder: str, lines: list, rows: list) -> None:
    """The tables so far (rnri.md) and their numbers (rnri.json)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "rnri.md"), "w") as f:
        f.write("\n".join(lines).lstrip() + "\n")
    with open(os.path.join(folder, "rnri.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
