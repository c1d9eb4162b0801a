"""Generating a concept the model never saw from a few pictures of it (the FPI paper's Table 2 in small): on the demo
model's held-out pair, the green triangle, how often the picture generated is one (colour, shape and background by
`demo_model.measure`), and how varied the pictures are, from

- random seeds (the caption alone, cfg 1 and the model's usual cfg 4);
- the NAO centroid (Seed Centroid, method nao) of the seeds of k ∈ {1, 3, 5} reference pictures inverted by DDIM,
  FixedPoint and RNRI Invert (their defaults) with the caption (k = 1: that seed itself);
- those centroids refined by SeedSelect (its defaults: 5 iterations toward the k references).

The demo world draws every trained (colour, shape, background) uniformly (demo_model/data.py): each trained
colour-shape pair is about 1/17 of the training set, so no pair is seen in ≤ 1 % of it; the held-out pair, seen in
none, is the rare concept. Per background colour (the first `--backgrounds` of 5), `--draws` independent sets of 5
reference pictures; the k-subsets are the first k; RANDOM_PER_DRAW random seeds per draw. Everything at 10 simple
steps, euler, cfg 1 (the authors' guidance from NAO seeds); diversity is the mean pairwise RMS pixel distance (0-1)
between the pictures of one background. Writes bench/results/rare.md, rare.json and rare.png (a grid: a row per
method, k = 3, a column per background: its first draw).
usage: OMP_NUM_THREADS=1 .host/venv/bin/python -m bench.rare [--draws 3] [--backgrounds 2] [--steps 10]
                                                             [--out bench/results]
"""
import argparse
import itertools
import json
import os
import time

import numpy as np
import torch
from seedfinder.solvers import FixedPointOptions, SeedSelectOptions, widgets

from bench.editing import pictures
from bench.fidelity import RNRI_DEFAULT, conditioning
from tests.support.inprocess import import_pack, trained_model

HERE = os.path.dirname(os.path.abspath(__file__))
INVERTERS = [("DDIM", "DDIMInvert", {}), ("FixedPoint", "FixedPointInvert", widgets(FixedPointOptions())),
             ("RNRI", "RNRIInvert", RNRI_DEFAULT)]
KS = (1, 3, 5)
CFG = 1.0
USUAL_CFG = 4.0  # demo_model/README.md: prompt following is measured at cfg 4
SEED_SELECT = widgets(SeedSelectOptions())
RANDOM_PER_DRAW = 4  # random seeds are cheap: more of them per reference draw


def generate(model, positive, negative, cfg: float, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """euler through CFGGuider from a unit NOISE on an empty latent, as SamplerCustomAdvanced does: model output."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative})
    guider.set_cfg(cfg)
    return guider.sample(noise, torch.zeros_like(noise), comfy.samplers.sampler_object("euler"), sigmas,
                         disable_pbar=True, seed=0)


def diversity(images: list) -> float:
    """Mean pairwise RMS distance of uint8 pictures, in [0, 1]."""
    pairs = [np.sqrt(np.mean(np.square(a.astype(float) - b.astype(float)))) / 255
             for a, b in itertools.combinations(images, 2)]
    return float(np.mean(pairs)) if pairs else 0.0


def fpi_rows(results: dict) -> list:
    """The FPI paper's Table 2 shape: per seed source, accuracy at each k and over all k, diversity, the seconds per
    picture to make the seed (T_init) and to refine it (T_opt)."""
    lines = ["| seeds | " + " | ".join(f"k={k} (%)" for k in KS) + " | all (%) | diversity | T_init (s) | T_opt (s) |",
             "|---|" + "---|" * (len(KS) + 4)]
    for method in [m for m in results if m.startswith("random")]:
        row = results[method]
        lines.append(f"| {method} | " + "– | " * len(KS) + f"{100 * row['accuracy']:.0f} | {row['diversity']:.3f} | "
                     f"{row['seconds_per_picture']:.1f} | – |")
    for name, _, _ in INVERTERS:
        for refined in (False, True):
            rows = [results[f"NAO centroid of {name} seeds{' + SeedSelect' if refined else ''}, k={k}"] for k in KS]
            plain = [results[f"NAO centroid of {name} seeds, k={k}"] for k in KS]
            init = np.mean([row["seconds_per_picture"] for row in plain])
            spent = np.mean([a["seconds_per_picture"] - b["seconds_per_picture"] for a, b in zip(rows, plain)])
            optimise = f"{spent:.1f}" if refined else "–"
            lines.append(f"| NAO w {name}{' + SeedSelect' if refined else ''} | "
                         + " | ".join(f"{100 * row['accuracy']:.0f}" for row in rows)
                         + f" | {100 * np.mean([row['accuracy'] for row in rows]):.0f} | "
                         f"{np.mean([row['diversity'] for row in rows]):.3f} | {init:.1f} | {optimise} |")
    return lines


def tables(results: dict, backgrounds: int, args) -> list:
    """rare.md: the FPI-shaped summary, then every row."""
    pictures_per_row = next(row["pictures"] for method, row in results.items() if "k=" in method)
    lines = [f"Demo model, held-out pair (green triangle) on {backgrounds} backgrounds × {args.draws} reference draws "
             f"({pictures_per_row} pictures per centroid row); {args.steps} simple steps, euler, cfg {CFG:g}; "
             f"`python -m bench.rare --draws {args.draws} --backgrounds {backgrounds} --steps {args.steps}`", ""]
    lines += fpi_rows(results) + [""]
    lines += ["| seeds from | pictures | accuracy: colour, shape and background (%) | colour and shape (%) | "
              "diversity | seconds per picture (CPU, shared) |", "|---|---|---|---|---|---|"]
    lines += [f"| {method} | {row['pictures']} | {100 * row['accuracy']:.0f} | {100 * row['colour_shape']:.0f} | "
              f"{row['diversity']:.3f} | {row['seconds_per_picture']:.1f} |" for method, row in results.items()]
    return lines


def write(results: dict, lines: list, out: str) -> None:
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "rare.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out, "rare.json"), "w") as f:
        json.dump(results, f, indent=1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=3, help="reference sets per background colour")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backgrounds", type=int, default=2, help="how many of the pair's 5 background colours")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--tables-from", help="rewrite rare.md from this rare.json (of a run with these options) only")
    args = parser.parse_args()
    if args.tables_from:
        with open(args.tables_from) as f:
            results = json.load(f)
        lines = tables(results, args.backgrounds, args)
        print("\n".join(lines))
        write(results, lines, args.out)
        return
    torch.set_num_threads(1)
    import_pack()
    import comfy.samplers
    import seedfinder.nodes as pack_nodes
    from PIL import Image

    from demo_model import data, evaluate, measure
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    rng = np.random.default_rng(evaluate.HELD_OUT_SEED + 7)
    labels = data.all_labels(held_out=True)[:args.backgrounds]
    rows: dict = {}  # method label -> {background: [picture, ...]}
    seconds: dict = {}

    def record(method: str, label, picture: np.ndarray, spent: float) -> None:
        rows.setdefault(method, {}).setdefault(label[2], []).append(picture)
        seconds[method] = seconds.get(method, 0.0) + spent

    with torch.inference_mode():
        model, clip, vae = trained_model("demo")
        sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), "simple", args.steps).cpu()
        empty = conditioning(clip, "")
        for label in labels:
            positive = conditioning(clip, data.caption(label))
            for draw in range(args.draws):
                for cfg, index in itertools.product((CFG, USUAL_CFG), range(RANDOM_PER_DRAW)):
                    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1000 * draw + index))
                    start = time.perf_counter()
                    picture = pictures(vae, generate(model, positive, empty, cfg, noise, sigmas))[0]
                    record(f"random seeds, cfg {cfg:g}", label, picture, time.perf_counter() - start)
                references = np.stack([data.render(label, rng) for _ in range(max(KS))])
                latent = vae.encode(torch.from_numpy(references.copy()).float().div(255))
                for name, node, options in INVERTERS:
                    start = time.perf_counter()
                    inverted = getattr(nodes, node).execute(
                        model=model, positive=positive, negative=empty, latent={"samples": latent},
                        steps=args.steps, scheduler="simple", cfg=CFG, strength=1.0, sampler="euler", noise_seed=0,
                        **options).args[1]
                    invert_seconds = (time.perf_counter() - start) / max(KS)  # per reference picture
                    for k in KS:
                        start = time.perf_counter()
                        subset = inverted.with_noise(inverted.noise[:k], inverted.method)
                        seed = subset if k == 1 else nodes.SeedCentroid.execute(seeds=subset, method="nao").args[1]
                        init = invert_seconds * k + time.perf_counter() - start
                        picture = pictures(vae, generate(model, positive, empty, CFG, seed.noise, sigmas))[0]
                        record(f"NAO centroid of {name} seeds, k={k}", label, picture, init)
                        start = time.perf_counter()
                        refined = nodes.SeedSelect.execute(model=model, positive=positive, negative=empty, seed=seed,
                                                           references={"samples": latent[:k]},
                                                           **{**SEED_SELECT, "cfg": CFG}).args[1]
                        spent = time.perf_counter() - start
                        picture = pictures(vae, generate(model, positive, empty, CFG, refined.noise, sigmas))[0]
                        record(f"NAO centroid of {name} seeds + SeedSelect, k={k}", label, picture, init + spent)
                print(f"{data.caption(label)}, draw {draw} done", flush=True)
    results = {}
    for method, by_background in rows.items():
        hits = [measure.classify(picture) == (*labels[0][:2], background)
                for background, images in by_background.items() for picture in images]
        colour_shape = [measure.classify(picture)[:2] == labels[0][:2]
                        for images in by_background.values() for picture in images]
        count = sum(len(images) for images in by_background.values())
        results[method] = {"accuracy": float(np.mean(hits)), "colour_shape": float(np.mean(colour_shape)),
                           "diversity": float(np.mean([diversity(images) for images in by_background.values()])),
                           "pictures": count, "seconds_per_picture": seconds[method] / count}
    lines = tables(results, len(labels), args)
    print("\n".join(lines))
    write(results, lines, args.out)
    grid_rows = [method for method in rows if "k=" not in method or method.endswith("k=3")]
    grid = [np.concatenate([images[0] for images in rows[method].values()], axis=1) for method in grid_rows]
    Image.fromarray(np.concatenate(grid, axis=0)).resize((grid[0].shape[1] * 2, len(grid) * 128),
                                                         Image.NEAREST).save(os.path.join(args.out, "rare.png"))
    print("grid rows:", grid_rows)


if __name__ == "__main__":
    main()
