"""Fidelity on the trained models (the demo model and the second model), in the papers' own metric: reconstruction
PSNR in pixel space against the VAE bound (decode(encode(x)): no seed does better through this VAE), the latent round
trip, evaluations and wall time, for every inverter and Prompt-Aware Encode at its node defaults, at several step
counts and cfg; beside the round trip, the node's estimate of it and the round trip the node measured (and so warns
on), per image in fidelity.json (bench.calibration reads them).

Everything runs in this process through ComfyUI's own classes (each model at its trained width in ComfyUI's SD15
class, CLIP and VAE as CLIPLoader/VAELoader load them, each node's execute(), the stock euler sampler through a
CFGGuider for the regeneration). Images: held-out procedural images of each model's world (captioned) and real
photographs from scikit-image's bundled samples (read from its wheel, center-cropped and resized to 64×64, inverted
with the empty prompt).
usage: .host/venv/bin/python -m bench.fidelity [--models demo second] [--steps 4 10 50] [--cfg 1 3] [--images 3]
       [--methods LABEL …] [--out bench/results] [--name fidelity]
"""
import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
import zipfile

import numpy as np
import torch
from seedfinder.solvers import BDIAOptions, EDICTOptions, FixedPointOptions, RNRIOptions, widgets

from tests.support.inprocess import TRAINED_MODELS, import_pack, model_of_config, trained_images, trained_model

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
SKIMAGE_WHEEL = "scikit-image==0.26.0"
DEFAULT_FIXED_POINT = widgets(FixedPointOptions())
RNRI_DEFAULT = widgets(RNRIOptions())
METHODS = [  # (label, node, options, prompt-aware)
    ("DDIM", "DDIMInvert", {}, False),
    ("FixedPoint default", "FixedPointInvert", DEFAULT_FIXED_POINT, False),
    ("FixedPoint cap 40", "FixedPointInvert", {**DEFAULT_FIXED_POINT, "max_iterations": 40}, False),
    ("FixedPoint tol 1e-5", "FixedPointInvert", {**DEFAULT_FIXED_POINT, "tolerance": 1e-5}, False),
    ("RNRI default", "RNRIInvert", RNRI_DEFAULT, False),
    ("RNRI paper update", "RNRIInvert", {**RNRI_DEFAULT, "update": "paper"}, False),
    ("EDICT", "EDICTInvert", widgets(EDICTOptions()), False),
    ("BDIA", "BDIAInvert", widgets(BDIAOptions()), False),
    ("FixedPoint default + Prompt-Aware Encode", "FixedPointInvert", DEFAULT_FIXED_POINT, True),
]


def photographs(folder: str) -> list:
    """scikit-image's bundled sample photographs as 64×64 RGB uint8 (the wheel is downloaded once, not installed)."""
    from PIL import Image
    wheels = [name for name in os.listdir(folder) if name.startswith("scikit_image-")] if os.path.isdir(folder) else []
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", SKIMAGE_WHEEL, "-d", folder],
                       check=True)
        wheels = [name for name in os.listdir(folder) if name.startswith("scikit_image-")]
    images = []
    with zipfile.ZipFile(os.path.join(folder, wheels[0])) as wheel:
        for name in PHOTOS:
            image = Image.open(io.BytesIO(wheel.read(f"skimage/data/{name}"))).convert("RGB")
            side = min(image.size)
            left, top = (image.width - side) // 2, (image.height - side) // 2
            images.append(np.asarray(image.crop((left, top, left + side, top + side)).resize((64, 64),
                                                                                          Image.LANCZOS)))
    return images


def load_demo(models: str, wide: bool, objective: str = "eps"):
    """(model, clip, vae) of the demo model: CLIP and VAE as installed, through the functions core's loader nodes
    call; the UNet as installed (`wide`), or by default at its trained width in ComfyUI's SD15 model class — the
    same function (tests/test_demo_model.py: to 1e-4), 8× faster on this CPU. The flow twin (`objective` "flow")
    through ModelSamplingSD3 at shift 1, as a user loads it."""
    import comfy.sd
    import comfy.supported_models
    import comfy.utils

    import demo_model.install as install
    from demo_model import train, widen
    paths = install.write_demo_models(models)
    if wide:
        model = comfy.sd.load_diffusion_model(paths[objective])
    else:
        model = model_of_config(comfy.supported_models.SD15, widen.unet_config(), torch.float32,
                                train.load_weights(objective)[0])
    if objective == "flow":
        from comfy_extras.nodes_model_advanced import ModelSamplingSD3
        (model,) = ModelSamplingSD3().patch(model, shift=1.0)
    clip = comfy.sd.load_clip([paths["clip"]], clip_type=comfy.sd.CLIPType.STABLE_DIFFUSION)
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(paths["vae"]))
    return model, clip, vae


def conditioning(clip, text: str) -> list:
    """What CLIPTextEncode returns for `text`."""
    tokens = clip.tokenize(text)
    return clip.encode_from_tokens_scheduled(tokens)


def regenerate(model, positive, negative, cfg, latent, sigmas, sampler):
    """The hand-off's sampler from the inverted latent with zero noise, as KSamplerAdvanced with add_noise off."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    samples = latent["samples"]
    return guider.sample(torch.zeros_like(samples), samples, sampler, sigmas, disable_pbar=True, seed=0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    from seedfinder.solvers import psnr as batch_psnr
    return float(batch_psnr(a, b).mean())


def run_method(nodes, model, vae, case, steps, cfg, label, node_name, options, prompt_aware) -> dict:
    """Invert one image with one method and regenerate it: PSNR to the source and to the VAE bound, latent error."""
    positive, negative, pixels, latent = case["positive"], case["negative"], case["pixels"], case["latent"]
    common = dict(model=model, positive=positive, negative=negative, steps=steps, scheduler="simple", cfg=cfg,
                  strength=1.0)
    if node_name in ("DDIMInvert", "FixedPointInvert", "RNRIInvert"):
        common.update(sampler="euler", noise_seed=0)
    start = time.perf_counter()
    start_latent, encode_evaluations = latent, 0
    if prompt_aware:
        adjusted = nodes.PromptAwareEncode.execute(model=model, positive=positive, negative=negative, steps=steps,
                                                   scheduler="simple", cfg=cfg, depth=2, cycles=1, mode="seeded",
                                                   seed=0, latent=latent)
        start_latent = adjusted.args[0]
        encode_evaluations = adjusted.ui["seedfinder"][0]["evaluations"]
    out = getattr(nodes, node_name).execute(latent=start_latent, **common, **options)
    wall = time.perf_counter() - start
    info = out.ui["seedfinder"][0]
    back = regenerate(model, positive, negative, cfg, out.args[0], out.args[2], out.args[3])
    decoded = vae.decode(back)[..., :3].float().cpu().clamp(0, 1)
    target = start_latent["samples"]
    return {"psnr": psnr(pixels, decoded), "bound": case["bound"],
            "latent_error": float((back.cpu() - target).norm() / target.norm()),
            "evaluations": (info["evaluations"] + encode_evaluations) / info["steps"], "wall": wall,
            "estimate": info["round_trip_estimate"], "measured": info["round_trip_measured"],
            "warned": "round trip" in info.get("warning", ""), "final_residuals": info["final_residual"]}


def cases(name: str, clip, vae, count: int, photos: int, photo_folder: str) -> list:
    """Held-out procedural images of the model `name`'s world with their captions, then the photographs with the empty
    prompt."""
    items = [(caption, image, "procedural") for caption, image in trained_images(name, count)]
    items += [("", photo, "photo") for photo in (photographs(photo_folder)[:photos] if photos else [])]
    out = []
    empty = conditioning(clip, "")
    for text, image, kind in items:
        pixels = torch.from_numpy(image.copy()).float().div(255).unsqueeze(0)
        latent = {"samples": vae.encode(pixels)}
        bound = psnr(pixels, vae.decode(latent["samples"])[..., :3].float().cpu().clamp(0, 1))
        out.append({"kind": kind, "caption": text, "pixels": pixels, "latent": latent, "bound": bound,
                    "positive": conditioning(clip, text), "negative": empty})
    return out


def mean_or_none(values: list):
    """The mean of the values that are not None (a method the node does not measure: None)."""
    present = [v for v in values if v is not None]
    return statistics.mean(present) if present else None


def cell(value) -> str:
    return "—" if value is None else f"{value:.3g}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(TRAINED_MODELS), choices=TRAINED_MODELS)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 10, 50])
    parser.add_argument("--cfg", type=float, nargs="+", default=[1.0, 3.0])
    parser.add_argument("--images", type=int, default=3, help="held-out procedural images")
    parser.add_argument("--photos", type=int, default=2, help="photographs (of astronaut, chelsea, coffee, rocket)")
    parser.add_argument("--methods", nargs="+", default=[label for label, *_ in METHODS],
                        choices=[label for label, *_ in METHODS], metavar="LABEL", help="the methods to run, by label")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--name", default="fidelity", help="the files' name: NAME.md and NAME.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    rows = []
    header = ("| model | steps | cfg | images | method | PSNR (dB) | VAE bound (dB) | gap (dB) | latent round trip | "
              "estimate | measured by the node | node warned | evaluations / step | wall (s) |")
    lines = ["Trained models (demo: procedural shapes; second: glyphs; both SD1.5-class ε), 64×64 images, simple "
             "schedule, euler, each node at its defaults unless the label says otherwise; means over the images of "
             "each kind. Latent round trip: "
             "‖x_rec − x‖/‖x‖ regenerated by the stock sampler here; estimate: the node's first-order "
             "`round_trip_estimate`; measured: the node's `round_trip_measured` (— where the node does not measure); "
             "node warned: images on which the node's round-trip warning fired", "", header,
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for name in args.models:
        with torch.inference_mode():
            model, clip, vae = trained_model(name)
            images = cases(name, clip, vae, args.images, args.photos, os.path.join(REPO, "bench", "out"))
            for steps in args.steps:
                for cfg in args.cfg:
                    for label, node_name, options, prompt_aware in METHODS:
                        if label not in args.methods:
                            continue
                        results = [dict(run_method(nodes, model, vae, case, steps, cfg, label, node_name, options,
                                                   prompt_aware), kind=case["kind"]) for case in images]
                        for kind in ("procedural", "photo"):
                            chosen = [r for r in results if r["kind"] == kind]
                            if not chosen:
                                continue
                            row = {"model": name, "steps": steps, "cfg": cfg, "images": kind, "method": label,
                                   **{key: statistics.mean(r[key] for r in chosen)
                                      for key in ("psnr", "bound", "latent_error", "evaluations", "wall")},
                                   **{key: mean_or_none([r[key] for r in chosen]) for key in ("estimate", "measured")},
                                   "warned": sum(r["warned"] for r in chosen), "per_image": chosen}
                            rows.append(row)
                            line = (f"| {name} | {steps} | {cfg:g} | {kind} | {label} | {row['psnr']:.2f} | "
                                    f"{row['bound']:.2f} | {row['bound'] - row['psnr']:.2f} | "
                                    f"{row['latent_error']:.3g} | {cell(row['estimate'])} | {cell(row['measured'])} | "
                                    f"{row['warned']}/{len(chosen)} | {row['evaluations']:.1f} | {row['wall']:.2f} |")
                            lines.append(line)
                            print(line, flush=True)
                            write(args.out, args.name, lines, rows)


def write(folder: str, name: str, lines: list, rows: list) -> None:
    """The table so far (NAME.md) and its numbers (NAME.json)."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(folder, f"{name}.json"), "w") as f:
        json.dump(rows, f, indent=1, default=float)


if __name__ == "__main__":
    main()
