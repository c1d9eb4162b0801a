"""Every sampler the invert nodes offer, inverted with DDIM, FixedPoint and RNRI at their node defaults and regenerated
by ComfyUI's STOCK sampler of that name (comfy.samplers.sampler_object through a CFGGuider, over the node's sigmas
output, which is what KSamplerAdvanced walks with the same widgets): the latent round trip ‖x_rec − x‖/‖x‖, its ratio
to DDIM's, the model evaluations per step, and the node's estimate of that round trip beside it, on the trained
models and on the random smoke-test model.

Everything runs in this process through ComfyUI's own classes and each node's execute() (as bench/fidelity.py).
usage: .host/venv/bin/python -m bench.samplers [--models demo second smoke] [--steps 8] [--scheduler karras]
       [--samplers …] [--out bench/results]   (writes samplers_<models>.md and .json)
"""
import argparse
import json
import os
import tempfile
import time

import torch
from seedfinder.solvers import FixedPointOptions, RNRIOptions, widgets

from bench.fidelity import conditioning, load_demo, regenerate
from tests.support.inprocess import import_pack, random_conditioning, tiny_model, trained_images, trained_model

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLERS = ("euler", "heun", "dpm_2", "dpmpp_2m", "res_multistep", "uni_pc", "uni_pc_bh2")
METHODS = [  # (label, node, options): every one at its node defaults
    ("DDIM", "DDIMInvert", {}),
    ("FixedPoint", "FixedPointInvert", widgets(FixedPointOptions())),
    ("RNRI", "RNRIInvert", widgets(RNRIOptions())),
]


def demo_case(work: str) -> dict:
    """The demo model at its trained width, its first demo image (VAE-encoded) and that image's caption."""
    from demo_model import data, install
    model, clip, vae = load_demo(os.path.join(work, "models"), wide=False)
    label = install.DEMO_LABELS[0]
    pixels = torch.from_numpy(install.demo_image(0).copy()).float().div(255).unsqueeze(0)
    return {"name": "demo model", "model": model, "latent": {"samples": vae.encode(pixels)},
            "positive": conditioning(clip, data.caption(label)), "negative": conditioning(clip, "")}


def second_case() -> dict:
    """The second model (glyph world, trained apart from the demo's) at its trained width, its first held-out image
    (VAE-encoded) and that image's caption: where a default chosen on the demo model is checked."""
    caption, image = trained_images("second", 1)[0]
    model, clip, vae = trained_model("second")
    pixels = torch.from_numpy(image.copy()).float().div(255).unsqueeze(0)
    return {"name": "second model", "model": model, "latent": {"samples": vae.encode(pixels)},
            "positive": conditioning(clip, caption), "negative": conditioning(clip, "")}


def smoke_case() -> dict:
    """The host tests' tiny random SD1.5-architecture UNet and a smooth random latent of an 8×8 (64 px) image."""
    generator = torch.Generator().manual_seed(0)
    latent = torch.nn.functional.interpolate(torch.randn(1, 4, 3, 3, generator=generator), size=(8, 8),
                                             mode="bicubic", align_corners=False)
    return {"name": "smoke model", "model": tiny_model(), "latent": {"samples": latent},
            "positive": random_conditioning(0), "negative": random_conditioning(1)}


def run(nodes, case: dict, sampler: str, node_name: str, options: dict, steps: int, scheduler: str) -> dict:
    """Invert with one node, regenerate with the stock sampler: relative latent error, evaluations per step, wall."""
    import comfy.samplers
    start = time.perf_counter()
    out = getattr(nodes, node_name).execute(model=case["model"], positive=case["positive"],
                                            negative=case["negative"], latent=case["latent"], steps=steps,
                                            scheduler=scheduler, cfg=1.0, strength=1.0, sampler=sampler,
                                            noise_seed=0, **options)
    wall = time.perf_counter() - start
    info = out.ui["seedfinder"][0]
    back = regenerate(case["model"], case["positive"], case["negative"], 1.0, out.args[0], out.args[2],
                      comfy.samplers.sampler_object(sampler))
    target = case["latent"]["samples"]
    return {"error": float((back.cpu() - target).norm() / target.norm()),
            "evaluations": info["evaluations"] / info["steps"], "wall": wall,
            "estimate": info["round_trip_estimate"], "measured": info["round_trip_measured"],
            "warned": "round trip" in info.get("warning", "")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--scheduler", default="karras")
    parser.add_argument("--models", nargs="+", default=["demo", "smoke"])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    lines = [f"{args.steps} {args.scheduler} steps, cfg 1, one 64×64 image; round trip ‖x_rec − x‖/‖x‖ through the "
             f"stock sampler (what the node's `round_trip: measure` reports, and its warning judges); × = DDIM's round "
             f"trip / this one; estimate: the node's first-order `round_trip_estimate`", "",
             "| model | sampler | " + " | ".join(f"{label} round trip | {label} × | {label} evaluations / step | "
                                               f"{label} estimate" for label, _, _ in METHODS) + " |",
             "|---|---|" + "---|---|---|---|" * len(METHODS)]
    print("\n".join(lines), flush=True)
    rows = []
    with torch.inference_mode():
        cases = {"demo": lambda: demo_case(tempfile.mkdtemp(prefix="seedfinder-samplers-")), "second": second_case,
                 "smoke": smoke_case}
        for model_key in args.models:
            case = cases[model_key]()
            for sampler in args.samplers:
                results = {label: run(nodes, case, sampler, node, options, args.steps, args.scheduler)
                           for label, node, options in METHODS}
                ddim = results["DDIM"]["error"]
                rows.append({"model": case["name"], "sampler": sampler, **results})
                line = f"| {case['name']} | {sampler} | " + " | ".join(
                    f"{r['error']:.3g} | {ddim / max(r['error'], 1e-30):.0f} | {r['evaluations']:.1f} | "
                    f"{r['estimate']:.3g}"
                    for r in results.values()) + " |"
                lines.append(line)
                print(line, flush=True)
                write(args.out, f"samplers_{'_'.join(args.models)}", lines, rows)


def write(folder: str, name: str, lines: list, rows: list) -> None:
    """The table so far (markdown) and its numbers (JSON)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
