"""The flow models' methods on the trained flow demo model (the ε model's rectified-flow twin, ModelSamplingSD3 shift
1), in one run:

- Reconstruction: held-out procedural images inverted with their caption and regenerated through the NOISE route
  with each method's own sampler: PSNR against the source and the VAE bound, latent round trip, evaluations per
  step. Euler (DDIM) inversion, FixedPoint, RNRI, FireFlow, RF-Solver, RF-Inversion (γ sweep, sampled with its
  η pull at the node's defaults), EDICT, BDIA.
- Editing: the same images with the caption's colour swapped (never to the background's) and, separately, its
  shape swapped: how often the
  result shows the target attribute by demo_model.measure (colour: target colour and the source's background;
  shape: target shape and the source's colour), and the PSNR of the source's background pixels. RF-Inversion (η
  sweep), FireFlow (invert, sample with the target prompt), FlowEdit (node defaults) and plain Euler inversion then
  re-prompting.
- The shift trap: RF-Inversion's edit with its default η window at shift 1 and 3 (the window's σ span, whether
  the node warns).
- Settings around the defaults: FlowEdit's n_max and cfgs, RF-Inversion's γ and η window (colour edits).
- A picture: source | RF-Inversion | FireFlow | FlowEdit | re-prompt, per image (colour swap).
usage: .host/venv/bin/python -m bench.flow [--images 6] [--steps 10 20] [--edit-steps 20] [--out bench/results]
"""
import argparse
import json
import os
import statistics
import tempfile

import numpy as np
import torch
from seedfinder.solvers import (
    BDIAOptions,
    EDICTOptions,
    FixedPointOptions,
    FlowEditOptions,
    FlowSolverOptions,
    RFInversionOptions,
    widgets,
)

from bench.editing import SWAP, background_psnr, pictures
from bench.fidelity import RNRI_DEFAULT, conditioning, load_demo, psnr
from tests.support.inprocess import import_pack

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_POINT = widgets(FixedPointOptions())
RF_DEFAULT = {**widgets(RFInversionOptions()), "noise_seed": 0}
RECONSTRUCTION = [  # (label, node, options)
    ("Euler (DDIM) inversion", "DDIMInvert", {"sampler": "euler", "noise_seed": 0}),
    ("FixedPoint default", "FixedPointInvert", {"sampler": "euler", "noise_seed": 0, **FIXED_POINT}),
    ("RNRI default", "RNRIInvert", {"sampler": "euler", "noise_seed": 0, **RNRI_DEFAULT}),
    ("FireFlow", "FireFlowInvert", widgets(FlowSolverOptions())),
    ("RF-Solver", "FireFlowInvert", widgets(FlowSolverOptions("rf_solver"))),
    *[(f"RF-Inversion γ={gamma:g} (η 0.9, steps 0-5)", "RFInversionInvert", {**RF_DEFAULT, "gamma": gamma})
      for gamma in (0.0, 0.25, 0.5, 0.75, 1.0)],
    ("RF-Inversion γ=0.5, η=0 (plain euler)", "RFInversionInvert", {**RF_DEFAULT, "eta": 0.0}),
    ("EDICT", "EDICTInvert", widgets(EDICTOptions())),
    ("BDIA", "BDIAInvert", widgets(BDIAOptions())),
]
FLOWEDIT_DEFAULT = {**widgets(FlowEditOptions()), "seed": 0}
SHAPE_SWAP = {"disc": "square", "square": "triangle", "triangle": "disc"}
FLOWEDIT_SWEEP = [(12, 1.0, 3.0), (16, 1.0, 3.0), (20, 1.0, 3.0), (12, 2.0, 5.0), (16, 2.0, 5.0), (16, 1.0, 5.0),
                  (16, 2.0, 8.0), (16, 3.5, 13.5)]
RF_SWEEP = [(0.3, 6), (0.5, 3), (0.5, 6), (0.5, 10), (0.7, 6), (0.9, 6)]  # (γ, stop_step), η 0.9


def colour_swap(label) -> tuple:
    """The label with its colour swapped as bench.editing swaps it, never to the background's colour (the model
    never saw a shape on its own colour)."""
    from demo_model import data
    colours = list(data.PALETTE)
    colour = SWAP[label[0]]
    while colour in (label[0], label[2]):
        colour = colours[(colours.index(colour) + 1) % len(colours)]
    return colour, label[1], label[2]


def encoded(vae, image: np.ndarray) -> dict:
    """The LATENT of one uint8 (64, 64, 3) image, as VAE Encode gives it."""
    return {"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))}


def colour_edit_score(vae, image, label, target, edited_latent) -> tuple:
    """(target colour and the source's background shown, background PSNR) of one colour edit."""
    from demo_model import measure
    picture = pictures(vae, edited_latent)[0]
    colour, _, background = measure.classify(picture)
    return (colour, background) == (target[0], target[2]), background_psnr(image, picture, label)


def sweep_rows(nodes, model, clip, vae, images, steps) -> list:
    """Colour edits at the settings around each method's defaults: FlowEdit's n_max and cfgs, RF-Inversion's γ and
    η window."""
    from demo_model import data
    empty = conditioning(clip, "")
    settings = [("FlowEdit", f"n_max {n}, cfg {a:g} → {b:g}", {**FLOWEDIT_DEFAULT, "n_max": n, "source_cfg": a,
                                                               "target_cfg": b}) for n, a, b in FLOWEDIT_SWEEP]
    settings += [("RF-Inversion", f"γ {g:g}, η 0.9, steps 0-{stop - 1}", {**RF_DEFAULT, "gamma": g,
                                                                          "stop_step": stop}) for g, stop in RF_SWEEP]
    rows = []
    for method, text, options in settings:
        scores = []
        for label, image in images:
            target = colour_swap(label)
            source, wanted = conditioning(clip, data.caption(label)), conditioning(clip, data.caption(target))
            latent = encoded(vae, image)
            if method == "FlowEdit":
                edited = nodes.FlowEdit.execute(model=model, source_positive=source, source_negative=empty,
                                                target_positive=wanted, target_negative=empty, latent=latent,
                                                steps=steps, scheduler="simple", **options).args[0]["samples"]
            else:
                out = invert(nodes, "RFInversionInvert", options, model, source, empty, latent, steps)
                edited = sample_noise(model, wanted, empty, 1.0, out.args[1], out.args[2], out.args[3])
            scores.append(colour_edit_score(vae, image, label, target, edited))
        rows.append({"method": method, "setting": text, "shown": 100 * statistics.mean(s for s, _ in scores),
                     "background_psnr": statistics.mean(p for _, p in scores)})
    return rows


def sample_noise(model, positive, negative, cfg, seed, sigmas, sampler) -> torch.Tensor:
    """SamplerCustomAdvanced from the seed's NOISE with an empty latent (the route every flow model takes)."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    empty = torch.zeros(seed.noise.shape)
    return guider.sample(seed.generate_noise({"samples": empty}), empty, sampler, sigmas, disable_pbar=True, seed=0)


def invert(nodes, node_name, options, model, positive, negative, latent, steps):
    """The node's NodeOutput (latent, noise, sigmas, sampler) at cfg 1 over the simple schedule."""
    return getattr(nodes, node_name).execute(model=model, positive=positive, negative=negative, latent=latent,
                                             steps=steps, scheduler="simple", cfg=1.0, strength=1.0, **options)


def reconstruction_rows(nodes, model, vae, cases, steps) -> list:
    rows = []
    for label, node_name, options in RECONSTRUCTION:
        results = []
        for case in cases:
            out = invert(nodes, node_name, options, model, case["positive"], case["negative"], case["latent"], steps)
            back = sample_noise(model, case["positive"], case["negative"], 1.0, out.args[1], out.args[2],
                                out.args[3])
            decoded = vae.decode(back)[..., :3].float().cpu().clamp(0, 1)
            target = case["latent"]["samples"]
            results.append({"psnr": psnr(case["pixels"], decoded), "bound": case["bound"],
                            "latent": float((back.cpu() - target).norm() / target.norm()),
                            "evaluations": out.ui["seedfinder"][0]["evaluations"] / steps})
        rows.append({"steps": steps, "method": label,
                     **{key: statistics.mean(r[key] for r in results) for key in results[0]}})
    return rows


def edit_methods(nodes, model, source, target, negative, latent, steps) -> dict:
    """{method: edited latent} for one image and one prompt swap."""
    edits = {}
    for eta in (0.5, 0.7, 0.9, 1.0):
        out = invert(nodes, "RFInversionInvert", {**RF_DEFAULT, "eta": eta}, model, source, negative, latent, steps)
        edits[f"RF-Inversion γ 0.5, η {eta:g} (steps 0-5)"] = sample_noise(model, target, negative, 1.0,
                                                                           out.args[1], out.args[2], out.args[3])
    out = invert(nodes, "FireFlowInvert", widgets(FlowSolverOptions()), model, source, negative, latent, steps)
    edits["FireFlow invert, sample with the target"] = sample_noise(model, target, negative, 1.0, out.args[1],
                                                                    out.args[2], out.args[3])
    edited = nodes.FlowEdit.execute(model=model, source_positive=source, source_negative=negative,
                                    target_positive=target, target_negative=negative, latent=latent, steps=steps,
                                    scheduler="simple", **FLOWEDIT_DEFAULT)
    edits[f"FlowEdit (n_max {min(FLOWEDIT_DEFAULT['n_max'], steps)} of {steps}, cfg 1 → 3)"] = edited.args[0]["samples"]
    out = invert(nodes, "DDIMInvert", {"sampler": "euler", "noise_seed": 0}, model, source, negative, latent, steps)
    edits["Euler inversion, re-prompted"] = sample_noise(model, target, negative, 1.0, out.args[1], out.args[2],
                                                         out.args[3])
    return edits


def editing_rows(nodes, model, clip, vae, images, steps) -> tuple:
    """Rows per (swap, method): target attribute shown (%), background PSNR (dB); and the colour-swap pictures."""
    from demo_model import data, measure
    empty = conditioning(clip, "")
    scores, strips = {}, []
    for swap in ("colour", "shape"):
        for label, image in images:
            target = colour_swap(label) if swap == "colour" else (label[0], SHAPE_SWAP[label[1]], label[2])
            latent = encoded(vae, image)
            edits = edit_methods(nodes, model, conditioning(clip, data.caption(label)),
                                 conditioning(clip, data.caption(target)), empty, latent, steps)
            row = [image]
            for method, edited_latent in edits.items():
                picture = pictures(vae, edited_latent)[0]
                colour, shape, background = measure.classify(picture)
                shown = ((colour, background) == (target[0], target[2]) if swap == "colour"
                         else (shape, colour) == (target[1], target[0]))
                scores.setdefault((swap, method), []).append((shown, background_psnr(image, picture, label)))
                row.append(picture)
            if swap == "colour":
                strips.append(np.concatenate(row, axis=1))
    rows = [{"swap": swap, "method": method, "shown": 100 * statistics.mean(s for s, _ in values),
             "background_psnr": statistics.mean(p for _, p in values)} for (swap, method), values in scores.items()]
    return rows, strips, list(edits)


def shift_rows(nodes, model, clip, vae, images, steps) -> list:
    """The shift trap: RF-Inversion's colour edit with the η window of its defaults (steps 0-5) at shift 1 and 3, and
    at shift 3 with a window reaching as far down in σ as shift 1's; how much σ the window spans, the edit's hits
    and the background kept."""
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    from demo_model import data
    empty = conditioning(clip, "")
    rows = []
    for shift, stop_step in ((1.0, 6), (3.0, 6), (3.0, 12)):
        (shifted,) = ModelSamplingSD3().patch(model, shift=shift)
        hits, kept, notes = [], [], []
        for label, image in images:
            target = colour_swap(label)
            latent = encoded(vae, image)
            out = invert(nodes, "RFInversionInvert", {**RF_DEFAULT, "stop_step": stop_step}, shifted,
                         conditioning(clip, data.caption(label)), empty, latent, steps)
            edited = sample_noise(shifted, conditioning(clip, data.caption(target)), empty, 1.0, out.args[1],
                                  out.args[2], out.args[3])
            shown, background = colour_edit_score(vae, image, label, target, edited)
            hits.append(shown)
            kept.append(background)
            notes.append("warning" in out.ui["seedfinder"][0])
        sigmas = out.args[2]
        window = float(sigmas[0] - sigmas[min(stop_step, len(sigmas) - 1)])
        rows.append({"shift": shift, "stop_step": stop_step, "sigma_window": window,
                     "shown": 100 * statistics.mean(hits), "background_psnr": statistics.mean(kept),
                     "warned": all(notes)})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="held-out procedural images")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20], help="reconstruction step counts")
    parser.add_argument("--edit-steps", type=int, default=20)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes

    from demo_model import data, evaluate
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED + 2)
    labels = data.all_labels(held_out=False)
    chosen = [labels[i] for i in rng.choice(len(labels), args.images, replace=False)]
    images = [(label, data.render(label, rng)) for label in chosen]
    with torch.inference_mode():
        model, clip, vae = load_demo(tempfile.mkdtemp(prefix="seedfinder-flow-"), wide=False, objective="flow")
        empty = conditioning(clip, "")
        cases = []
        for label, image in images:
            pixels = torch.from_numpy(image.copy()).float().div(255).unsqueeze(0)
            latent = {"samples": vae.encode(pixels)}
            bound = psnr(pixels, vae.decode(latent["samples"])[..., :3].float().cpu().clamp(0, 1))
            cases.append({"pixels": pixels, "latent": latent, "bound": bound,
                          "positive": conditioning(clip, data.caption(label)), "negative": empty})
        reconstruction = [row for steps in args.steps for row in reconstruction_rows(nodes, model, vae, cases, steps)]
        edits, strips, methods = editing_rows(nodes, model, clip, vae, images, args.edit_steps)
        shifts = shift_rows(nodes, model, clip, vae, images, args.edit_steps)
        sweeps = sweep_rows(nodes, model, clip, vae, images, args.edit_steps)
    lines = [f"Flow demo model (ModelSamplingSD3 shift 1), 64×64, simple schedule, cfg 1; {args.images} held-out "
             "procedural images, each regenerated through the NOISE route with the method's own sampler", "",
             "| steps | method | PSNR (dB) | VAE bound (dB) | gap (dB) | latent round trip | evaluations / step |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['steps']} | {r['method']} | {r['psnr']:.2f} | {r['bound']:.2f} | {r['bound'] - r['psnr']:.2f} | "
              f"{r['latent']:.3g} | {r['evaluations']:.2f} |" for r in reconstruction]
    lines += ["", f"Editing, {args.edit_steps} steps, cfg 1 (FlowEdit: its own cfgs); the same images", "",
              "| swap | method | target shown (%) | background PSNR vs source (dB) |", "|---|---|---|---|"]
    lines += [f"| {r['swap']} | {r['method']} | {r['shown']:.0f} | {r['background_psnr']:.2f} |" for r in edits]
    lines += ["", f"The shift trap: RF-Inversion colour edit (γ 0.5, η 0.9 from step 0), {args.edit_steps} steps", "",
              "| shift | stop_step | η window spans Δσ | target shown (%) | background PSNR (dB) | node warns |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['shift']:g} | {r['stop_step']} | {r['sigma_window']:.3f} | {r['shown']:.0f} | "
              f"{r['background_psnr']:.2f} | {'yes' if r['warned'] else 'no'} |" for r in shifts]
    lines += ["", f"Settings around the defaults, colour edit, {args.edit_steps} steps", "",
              "| method | setting | target shown (%) | background PSNR (dB) |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['setting']} | {r['shown']:.0f} | {r['background_psnr']:.2f} |" for r in sweeps]
    lines += ["", "Picture (`flow_edits.png`, colour swap), columns: source | " + " | ".join(methods)]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "flow.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, "flow.json"), "w") as f:
        json.dump({"reconstruction": reconstruction, "editing": edits, "shift": shifts, "settings": sweeps}, f,
                  indent=1)
    from PIL import Image
    grid = np.concatenate(strips, axis=0)
    Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST).save(
        os.path.join(args.out, "flow_edits.png"))


if __name__ == "__main__":
    main()
