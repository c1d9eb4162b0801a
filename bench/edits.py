"""Edits on the trained demo ε model in PIE-Bench's metrics, every method side by side in one run: colour, shape and
background edits of procedural images whose object masks are exact.

Each image is encoded and inverted with its caption (20 simple steps, euler, cfg 1) by DDIM, FixedPoint, RNRI and
EDICT, then edited to the caption with one word changed (colour: the object's colour; shape: the object's shape;
background: the background's colour):
- re-prompted seed: each inverter's seed sampled back by its own sampler with the target caption;
- attention edit: the Attention Edit Guider on the FixedPoint seed (exact source branch, τ_c and τ_s the node's), with
  no mask, with its automatic mask, at Prompt-to-Prompt's own fractions with its automatic mask, and with the true
  edit region as the mask;
- on the demo model's rectified-flow twin (same VAE and text encoder; ModelSamplingSD3 shift 1): FlowEdit (node
  defaults), RF-Inversion (node defaults: invert, sample with the target prompt) and the attention edit with its
  automatic mask on the twin's FixedPoint seed.
The edit region (PIE-Bench's mask, 1 = edited): colour, the object grown by `--dilate` px; shape, the object's
bounding box grown by a ninth of its half-extent (a square's corners reach past a disc's box) and `--dilate`;
background, everything but the object's interior (its fully covered pixels, shrunk by `--dilate`).
Metrics:
- background PSNR / SSIM / MSE on 1 − mask as PIE-Bench computes them (both images multiplied by 1 − mask), against
  the source image; the VAE's own round trip on the same pixels is the bound;
- structure: the IoU of the object masks of source and edit (demo_model.measure.segment: the pixels nearer the shape
  colour than the background). It is the layout of the picture, blind to colour (a colour or background edit that
  keeps the object where and as it was scores 100 %), which is what PIE-Bench's DINO self-similarity distance
  measures on photographs; it needs no downloaded network;
- edit success by demo_model.measure: the target's changed attribute and the source's other attributes (colour edit:
  target colour, source background; shape: target shape, source colour; background: target background, source
  colour); the demo model follows shape words only part of the time (demo_model/README.md);
- automatic mask IoU with the edit region; model evaluations per edit (a batch of two counts as two; the mask pass
  included) counted by a post-CFG function, and wall time per edit (the inversions, shared, separately).
A picture grid (bench/results/edits.png): per edit type and image, the source and every method's edit.
usage: .host/venv/bin/python -m bench.edits [--steps 20] [--dilate 2] [--out bench/results]
"""
import argparse
import os
import statistics
import tempfile
import time
from dataclasses import asdict, replace

import numpy as np
import torch

from bench.editing import SWAP, pictures
from bench.fidelity import RNRI_DEFAULT, conditioning, load_demo, regenerate
from solvers import (
    P2P_PAPER,
    AttentionEditOptions,
    EDICTOptions,
    FixedPointOptions,
    FlowEditOptions,
    RFInversionOptions,
    psnr,
    ssim,
    widgets,
)
from tests.support.inprocess import import_pack

HERE = os.path.dirname(os.path.abspath(__file__))
EDIT = AttentionEditOptions()
KINDS = ("colour", "shape", "background")
INVERTERS = (("DDIM", "DDIMInvert", {}), ("FixedPoint", "FixedPointInvert", widgets(FixedPointOptions())),
             ("RNRI", "RNRIInvert", RNRI_DEFAULT), ("EDICT", "EDICTInvert", widgets(EDICTOptions())))
"""(name, node, widgets) of the inverters whose seeds are re-prompted; the attention edit uses FixedPoint's."""
GUIDED = (("attention edit, no mask", replace(EDIT, auto_mask=False), False),
          ("attention edit + automatic mask", EDIT, False),
          ("attention edit + automatic mask, threshold 0.4, 4 steps", replace(EDIT, mask_threshold=0.4, mask_steps=4),
           False),
          ("attention edit + automatic mask, Prompt-to-Prompt's τ_c 0.8, τ_s 0.4", P2P_PAPER, False),
          ("attention edit + true mask", EDIT, True))
"""(name, options, whether it gets the true edit region as its mask) of the Attention Edit Guider's rows."""
NEXT_SHAPE = {"disc": "square", "square": "triangle", "triangle": "disc"}
FLOW_TWIN = ("FlowEdit (flow twin)", "RF-Inversion (flow twin)", "attention edit + automatic mask (flow twin)")
"""The rows of the flow twin's methods."""


def demo_images() -> list:
    """(label, uint8 image, object coverage (64, 64) in [0, 1]) of the demo images and two held-out ones."""
    from demo_model import data, evaluate, install, masks
    drawn = [(label, *masks.draw(label, np.random.default_rng(install.DEMO_SEED + index)))
             for index, label in enumerate(install.DEMO_LABELS)]
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED + 2)
    labels = data.all_labels(held_out=False)
    held_out = [labels[i] for i in rng.choice(len(labels), 2, False)]
    return drawn + [(label, *masks.draw(label, rng)) for label in held_out]


def target_of(label: tuple, kind: str) -> tuple:
    """The label with one word changed: the colour (SWAP, or the next colour when that is the background's), the
    shape (NEXT_SHAPE) or the background (the next background that is neither the old one nor the colour)."""
    from demo_model import data
    colour, shape, background = label
    if kind == "colour":
        options = [SWAP[colour]] + [c for c in data.COLOURS if c != colour]
        return next(c for c in options if c != background), shape, background
    if kind == "shape":
        return colour, NEXT_SHAPE[shape], background
    start = data.BACKGROUNDS.index(background)
    ring = data.BACKGROUNDS[start + 1:] + data.BACKGROUNDS[:start]
    return colour, shape, next(b for b in ring if b != colour)


def grow(mask: np.ndarray, pixels: int) -> np.ndarray:
    """A {0, 1} mask grown by `pixels` (a square max filter)."""
    tensor = torch.from_numpy(mask.astype(np.float32))[None, None]
    return torch.nn.functional.max_pool2d(tensor, 2 * pixels + 1, 1, pixels)[0, 0].numpy()


def edit_region(cover: np.ndarray, kind: str, dilate: int) -> np.ndarray:
    """PIE-Bench's mask for the edit (64, 64), 1 = edited (the module docstring says how for each kind)."""
    if kind == "colour":
        return grow(cover > 0, dilate)
    if kind == "shape":
        rows, cols = np.nonzero(cover > 0)
        margin = int(np.ceil(max(np.ptp(rows), np.ptp(cols)) / 18)) + dilate
        box = np.zeros_like(cover)
        top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
        box[top:rows.max() + margin + 1, left:cols.max() + margin + 1] = 1
        return box
    return grow(cover < 1, dilate)


def background_metrics(source: np.ndarray, edited: np.ndarray, mask: np.ndarray) -> tuple:
    """(PSNR dB, SSIM, MSE) of the two uint8 images each multiplied by 1 − mask (PIE-Bench's unedited region)."""
    keep = torch.from_numpy(1 - mask)[None, ..., None].double()
    a = torch.from_numpy(source)[None].double().div(255) * keep
    b = torch.from_numpy(edited)[None].double().div(255) * keep
    return float(psnr(a, b)), float(ssim(a, b)), float((a - b).pow(2).mean())


def structure(source: np.ndarray, edited: np.ndarray) -> float:
    """IoU of the two images' object masks (demo_model.measure.segment); 0 when either shows no object."""
    from demo_model import measure
    a, b = measure.segment(source)[2], measure.segment(edited)[2]
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def succeeded(edited: np.ndarray, target: tuple, kind: str) -> bool:
    """Whether demo_model.measure sees the target's changed attribute and its other named one (module docstring)."""
    from demo_model import measure
    colour, shape, background = measure.classify(edited)
    seen = {"colour": (colour, background), "shape": (shape, colour), "background": (background, colour)}[kind]
    wanted = {"colour": (target[0], target[2]), "shape": (target[1], target[0]),
              "background": (target[2], target[0])}[kind]
    return seen == wanted


def counting(model) -> tuple:
    """(a clone of `model` that counts evaluations, the count): a post-CFG function adds the rows it sees over the
    image batch of one, so a batch of two (the guider's source and target) counts as two."""
    count = [0]

    def counted(args: dict) -> torch.Tensor:
        count[0] += args["denoised"].shape[0]
        return args["denoised"]

    clone = model.clone()
    clone.set_model_sampler_post_cfg_function(counted)
    return clone, count


def invert_seed(nodes, node_name: str, options: dict, model, positive, negative, latent, steps: int):
    """The invert node's NodeOutput (latent, noise, sigmas, sampler) at strength 1, cfg 1 (DDIM, FixedPoint and
    RNRI with sampler euler)."""
    inputs = dict(model=model, positive=positive, negative=negative, latent=latent, steps=steps, scheduler="simple",
                  cfg=1.0, strength=1.0)
    if node_name in ("DDIMInvert", "FixedPointInvert", "RNRIInvert"):
        inputs.update(sampler="euler", noise_seed=0)
    return getattr(nodes, node_name).execute(**inputs, **options)


def guided_edit(model, source, target, negative, options, seed, mask):
    """The Attention Edit Guider from the seed, its source branch exact, with `mask` (or none): (edited latent, the
    mask it kept to as shown by the node). `options` is rebuilt in the pack's own class, the one the host is typed
    for (this bench's top-level `solvers` import is a second copy of the module)."""
    import comfy.samplers
    from seedfinder.nodes import host
    from seedfinder.solvers import AttentionEditOptions as PackOptions
    guider = host.attention_edit_guider(model, host.Prompt(source, negative, options.cfg),
                                        host.Prompt(target, negative, options.cfg), PackOptions(**asdict(options)),
                                        seed, None if mask is None else torch.from_numpy(mask)[None])
    empty = torch.zeros(seed.noise.shape)
    edited = guider.sample(seed.generate_noise({"samples": empty}), empty, comfy.samplers.sampler_object("euler"),
                           seed.sigmas, disable_pbar=True, seed=0)
    return edited, host.shown_mask(guider)


def flow_twin_edits(nodes, flow, source, target, negative, latent, steps: int) -> dict:
    """{row of FLOW_TWIN: (edited latent, evaluations, seconds)} of one edit on the flow twin."""
    import comfy.samplers
    edits = {}
    counted, count = counting(flow)
    start = time.perf_counter()
    out = nodes.FlowEdit.execute(model=counted, source_positive=source, source_negative=negative,
                                 target_positive=target, target_negative=negative, latent=latent, steps=steps,
                                 scheduler="simple", seed=0, **widgets(FlowEditOptions()))
    edits[FLOW_TWIN[0]] = (out.args[0]["samples"], count[0], time.perf_counter() - start)
    counted, count = counting(flow)
    start = time.perf_counter()
    seed = invert_seed(nodes, "RFInversionInvert", {**widgets(RFInversionOptions()), "noise_seed": 0}, counted,
                       source, negative, latent, steps).args
    count[0] = 0  # the inversion is shared work, counted separately for every method
    guider = comfy.samplers.CFGGuider(counted)
    guider.inner_set_conds({"positive": target, "negative": negative})
    empty = torch.zeros(seed[1].noise.shape)
    edited = guider.sample(seed[1].generate_noise({"samples": empty}), empty, seed[3], seed[2], disable_pbar=True,
                           seed=0)
    edits[FLOW_TWIN[1]] = (edited, count[0], time.perf_counter() - start)
    fixed = invert_seed(nodes, "FixedPointInvert", widgets(FixedPointOptions()), flow, source, negative, latent,
                        steps).args
    counted, count = counting(flow)
    start = time.perf_counter()
    edited, _ = guided_edit(counted, source, target, negative, EDIT, fixed[1], None)
    edits[FLOW_TWIN[2]] = (edited, count[0], time.perf_counter() - start)
    return edits


def edit_rows(nodes, model, clip, vae, images, steps: int, dilate: int, flow=None) -> tuple:
    """{kind: {method: [(edited uint8, target label, seconds, evaluations, automatic mask or None)]}}, the masks,
    the inversions' mean evaluations."""
    from demo_model import data
    empty = conditioning(clip, "")
    results = {kind: {} for kind in KINDS}
    inversion_evaluations = []
    for label, image, cover in images:
        source = conditioning(clip, data.caption(label))
        latent = {"samples": vae.encode(torch.from_numpy(image.copy()).float().div(255).unsqueeze(0))}
        seeds = {}
        for name, node_name, options in INVERTERS:
            out = invert_seed(nodes, node_name, options, model, source, empty, latent, steps)
            seeds[name] = out.args
            inversion_evaluations.append(out.ui["seedfinder"][0]["evaluations"])
        bound = pictures(vae, latent["samples"])[0]
        for kind in KINDS:
            target_label = target_of(label, kind)
            target = conditioning(clip, data.caption(target_label))
            rows = results[kind]
            rows.setdefault("VAE round trip", []).append((bound, None, 0.0, 0, None))
            for name, _, _ in INVERTERS:
                counted, count = counting(model)
                seed_latent, _, sigmas, sampler = seeds[name]
                start = time.perf_counter()
                edited = regenerate(counted, target, empty, 1.0, seed_latent, sigmas, sampler)
                rows.setdefault(f"re-prompted {name} seed", []).append(
                    (pictures(vae, edited)[0], target_label, time.perf_counter() - start, count[0], None))
            for name, options, masked in GUIDED:
                counted, count = counting(model)
                start = time.perf_counter()
                edited, shown = guided_edit(counted, source, target, empty, options, seeds["FixedPoint"][1],
                                            edit_region(cover, kind, dilate) if masked else None)
                found = None if masked or not options.auto_mask else shown[0].numpy()
                rows.setdefault(name, []).append(
                    (pictures(vae, edited)[0], target_label, time.perf_counter() - start, count[0], found))
            if flow is not None:
                for name, (edited, evaluations, seconds) in flow_twin_edits(nodes, flow, source, target, empty,
                                                                            latent, steps).items():
                    rows.setdefault(name, []).append((pictures(vae, edited)[0], target_label, seconds, evaluations,
                                                      None))
    return results, statistics.mean(inversion_evaluations)


def table(kind: str, rows: dict, images: list, dilate: int) -> tuple:
    """The markdown lines of one edit type's table and {method: (PSNR, structure, success)}."""
    lines = ["| method | background PSNR (dB) ↑ | background SSIM ×10² ↑ | background MSE ×10⁴ ↓ | structure: object "
             "IoU (%) ↑ | edit success (%) ↑ | automatic mask IoU (%) | evaluations | wall time per edit (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for name, results in rows.items():
        masks = [edit_region(cover, kind, dilate) for _, _, cover in images]
        scores = [background_metrics(image, edited, mask)
                  for (_, image, _), (edited, *_), mask in zip(images, results, masks)]
        psnr_db, ssim_score, mse = (statistics.mean(score[i] for score in scores) for i in range(3))
        shape_iou = statistics.mean(structure(image, row[0]) for (_, image, _), row in zip(images, results))
        edited_rows = [row for row in results if row[1] is not None]
        success = statistics.mean(succeeded(row[0], row[1], kind) for row in edited_rows) if edited_rows else None
        found = [(row[4] > 0.5, mask > 0.5) for row, mask in zip(results, masks) if row[4] is not None]
        mask_iou = statistics.mean(float((a & b).sum() / (a | b).sum()) for a, b in found) if found else None
        summary[name] = (psnr_db, shape_iou, success)

        def cell(value, scale=100, digits=0):
            return "—" if value is None else f"{scale * value:.{digits}f}"

        evaluations = f"{statistics.mean(row[3] for row in edited_rows):.0f}" if edited_rows else "—"
        seconds = f"{statistics.mean(row[2] for row in edited_rows):.2f}" if edited_rows else "—"
        lines.append(f"| {name} | {psnr_db:.2f} | {100 * ssim_score:.1f} | {1e4 * mse:.2f} | {100 * shape_iou:.0f} | "
                     f"{cell(success)} | {cell(mask_iou)} | {evaluations} | {seconds} |")
    return lines, summary


def grid(results: dict, images: list, path: str) -> None:
    """The picture grid: a row per edit type and image (source, then every method's edit), 64 px cells."""
    from PIL import Image
    methods = [name for name in next(iter(results.values())) if name != "VAE round trip"]
    rows = [[image] + [results[kind][name][index][0] for name in methods]
            for kind in KINDS for index, (_, image, _) in enumerate(images)]
    canvas = Image.new("RGB", (64 * len(rows[0]), 64 * len(rows)), "white")
    for r, row in enumerate(rows):
        for c, picture in enumerate(row):
            canvas.paste(Image.fromarray(picture), (64 * c, 64 * r))
    canvas.save(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--dilate", type=int, default=2, help="pixels the edit region grows by")
    parser.add_argument("--no-flow", action="store_true", help="leave out the flow twin's rows")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes

    from demo_model import data
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    images = demo_images()
    with torch.inference_mode():
        folder = tempfile.mkdtemp(prefix="seedfinder-edits-")
        model, clip, vae = load_demo(folder, wide=False)
        flow = None if args.no_flow else load_demo(folder, wide=False, objective="flow")[0]
        results, inversion_evaluations = edit_rows(nodes, model, clip, vae, images, args.steps, args.dilate, flow)
    head = (f"Demo ε model, {len(images)} images ({', '.join(data.caption(label) for label, _, _ in images)}), each "
            f"inverted with its caption ({args.steps} simple steps, euler, cfg 1; {inversion_evaluations:.0f} "
            f"evaluations on average over DDIM, FixedPoint, RNRI and EDICT) and edited with one word changed. "
            f"Attention edit: τ_c {EDIT.cross_fraction}, τ_s {EDIT.self_fraction}, exact source branch from the "
            f"FixedPoint seed; automatic mask: {EDIT.mask_source}, threshold {EDIT.mask_threshold}, "
            f"{EDIT.mask_steps} steps; cfg 1 for every method. Background metrics on 1 − mask (PIE-Bench), MSE ×10⁴; "
            f"evaluations per edit (a batch of two counts as two, the mask pass included; the inversions are "
            f"shared and not counted); wall time on this machine's CPU, one thread.")
    sections, summaries = [], {}
    for kind in KINDS:
        lines, summaries[kind] = table(kind, results[kind], images, args.dilate)
        sections.append(f"## {kind.capitalize()} edits\n\n" + "\n".join(lines))
    colour = summaries["colour"]
    bound, automatic, baseline = (colour[name] for name in ("VAE round trip", "attention edit + automatic mask",
                                                           "re-prompted FixedPoint seed"))
    goals = (f"## The goals, on colour edits\n\n- background PSNR with the automatic mask {automatic[0]:.2f} dB, "
             f"{bound[0] - automatic[0]:.2f} dB below the VAE bound ({bound[0]:.2f} dB; goal: within 1 dB);\n"
             f"- {automatic[0] - baseline[0]:+.2f} dB over the re-prompted FixedPoint seed ({baseline[0]:.2f} dB; "
             f"goal: ≥ 6 dB);\n- structure distance (1 − object IoU) {1 - automatic[1]:.3f} against "
             f"{1 - baseline[1]:.3f}: {(1 - baseline[1]) / max(1 - automatic[1], 1e-9):.1f}× lower (goal: ≥ 2×);\n"
             f"- edit success {100 * automatic[2]:.0f} % (colour), "
             f"{100 * summaries['shape']['attention edit + automatic mask'][2]:.0f} % (shape), "
             f"{100 * summaries['background']['attention edit + automatic mask'][2]:.0f} % (background); "
             f"re-prompting the FixedPoint seed: {100 * baseline[2]:.0f} / "
             f"{100 * summaries['shape']['re-prompted FixedPoint seed'][2]:.0f} / "
             f"{100 * summaries['background']['re-prompted FixedPoint seed'][2]:.0f} %.")
    text = head + "\n\n" + "\n\n".join(sections) + "\n\n" + goals
    print(text)
    os.makedirs(args.out, exist_ok=True)
    grid(results, images, os.path.join(args.out, "edits.png"))
    methods = [name for name in results["colour"] if name != "VAE round trip"]
    with open(os.path.join(args.out, "edits.md"), "w") as f:
        f.write(f"# Edits in PIE-Bench's metrics\n\n`python -m bench.edits --steps {args.steps} --dilate "
                f"{args.dilate}{' --no-flow' if args.no_flow else ''}`\n\n"
                f"{text}\n\n![edits](edits.png)\n\nThe grid: a row per edit type (colour, shape, "
                f"background) and image; columns: the source, then {', '.join(methods)}.\n")


if __name__ == "__main__":
    main()
