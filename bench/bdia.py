"""BDIA as a generation sampler against the sampler it corrects, on the two trained models (demo shapes, second
glyphs): BDIA-euler (= BDIA-DDIM) against euler (= DDIM), BDIA-heun (= BDIA-EDM) against heun, at several step counts,
from the same random seeds and prompts (KSampler's normal schedule, cfg 4).

- Prompt following (demo model only; the second world has no classifier): the share of samples whose colour, shape
  and background `demo_model.measure.classify` reads as the prompt's.
- FD: the Fréchet distance (FID's formula, ‖μ_g − μ_r‖² + tr(Σ_g + Σ_r − 2(Σ_g Σ_r)^½)) between features of the
  generated pictures and of real procedural pictures of the same prompts, the features being each model's own VAE
  encoder output average-pooled to 2×2 (16 numbers per picture). "real floor" is the FD between two independent
  real sets of the same size: what the metric reads for a perfect sampler at this sample count.
- Δ against the base sampler with a 95 % interval from a paired bootstrap over the samples (the same seeds and
  prompts resampled for both samplers): a difference whose interval excludes 0 exceeds its spread.

Heun runs at the `--heun-steps` only (default 10 and 20: at 50 steps it costs 99 evaluations per sample, more than
the whole euler grid, on a CPU budget of 25 minutes).
usage: OMP_NUM_THREADS=1 .host/venv/bin/python -m bench.bdia [--prompts 8] [--samples 8] [--steps 10 20 50]
                                                             [--heun-steps 10 20] [--out bench/results]
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from tests.support.inprocess import import_pack, trained_model

HERE = os.path.dirname(os.path.abspath(__file__))
CFG = 4.0
SCHEDULER = "normal"
BOOTSTRAP = 200
# (label, base, γ): the base samplers are ComfyUI's own; γ 0.5 is the node's default (the authors' at 10 steps)
SAMPLERS = [("euler", "euler", None), ("BDIA-euler γ=0.5", "euler", 0.5), ("heun", "heun", None),
            ("BDIA-heun γ=0.5", "heun", 0.5)]
POOL = 2
"""Features: the VAE latent average-pooled to POOL×POOL cells (4 channels: 16 numbers), few enough that a covariance
from 64 samples is not singular (FID needs n ≫ d)."""


def world(name: str):
    """(caption of a label, every label of a caption, render) of the world model `name` was trained on."""
    from demo_model import data, glyphs
    if name == "demo":
        return data.caption, data.all_labels(held_out=False), data.render
    return glyphs.caption, glyphs.all_labels(), glyphs.render


def prompts_and_reals(name: str, prompts: int, per_prompt: int, rng: np.random.Generator) -> tuple:
    """`prompts` captions drawn without repeats, and two independent real sets of `per_prompt` pictures per caption
    (labels drawn among that caption's: the second world's caption leaves the background colour open)."""
    caption, labels, render = world(name)
    captions = sorted({caption(label) for label in labels})
    chosen = [captions[i] for i in rng.choice(len(captions), prompts, replace=False)]
    reals = []
    for _ in range(2):
        pictures = []
        for text in chosen:
            options = [label for label in labels if caption(label) == text]
            pictures += [render(options[i], rng) for i in rng.integers(0, len(options), per_prompt)]
        reals.append(np.stack(pictures))
    return chosen, reals


def features(vae, pictures: np.ndarray) -> torch.Tensor:
    """The VAE encoder's latent of uint8 pictures, average-pooled to POOL×POOL: (n, channels·POOL²), float64."""
    pixels = torch.from_numpy(pictures.copy()).float().div(255)
    latent = torch.cat([vae.encode(chunk) for chunk in pixels.split(256)]).float()
    return torch.nn.functional.adaptive_avg_pool2d(latent, POOL).flatten(1).double()


def frechet(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID's formula on two feature sets: ‖μ_a − μ_b‖² + tr Σ_a + tr Σ_b − 2 tr (Σ_a^½ Σ_b Σ_a^½)^½."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def generate(model, vae, positive: list, negative: list, noise: torch.Tensor, sampler, steps: int) -> np.ndarray:
    """uint8 pictures: `sampler` through CFGGuider (cfg 4) over KSampler's normal schedule from `noise`."""
    import comfy.samplers
    sigmas = comfy.samplers.calculate_sigmas(model.get_model_object("model_sampling"), SCHEDULER, steps).cpu()
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, "negative": negative})
    guider.set_cfg(CFG)
    latent = guider.sample(noise, torch.zeros_like(noise), sampler, sigmas, disable_pbar=True, seed=0)
    decoded = torch.cat([vae.decode(chunk) for chunk in latent.split(256)])
    return (decoded[..., :3].float().clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def following(name: str, pictures: np.ndarray, labels: list) -> np.ndarray:
    """Per picture, 1 where the measure reads the prompt's colour, shape and background (demo model), else empty."""
    if name != "demo":
        return np.zeros(0)
    from demo_model import measure
    return np.array([measure.classify(picture) == label for picture, label in zip(pictures, labels)], dtype=float)


def paired_interval(statistic, first, second, count: int, rng: np.random.Generator) -> tuple:
    """The 2.5 and 97.5 percentiles of statistic(first[i]) − statistic(second[i]) over bootstrap resamples i."""
    differences = []
    for _ in range(BOOTSTRAP):
        index = torch.from_numpy(rng.integers(0, count, count))
        differences.append(statistic(first[index]) - statistic(second[index]))
    return tuple(float(v) for v in np.percentile(differences, [2.5, 97.5]))


def run_model(name: str, nodes, args, rng: np.random.Generator) -> dict:
    model, clip, vae = trained_model(name)
    chosen, (real, real_b) = prompts_and_reals(name, args.prompts, args.samples, rng)
    real_features, floor_features = features(vae, real), features(vae, real_b)
    caption, labels, _ = world(name)
    prompt_labels = [next(label for label in labels if caption(label) == text) for text in chosen
                     for _ in range(args.samples)]
    from demo_model import text as demo_text
    encoded = {t: demo_text.encode(clip, t) for t in chosen + [""]}
    positive = [[torch.cat([encoded[caption(label)] for label in prompt_labels]), {}]]
    negative = [[encoded[""].expand(len(prompt_labels), -1, -1).contiguous(), {}]]
    count = len(prompt_labels)
    noise = torch.randn(count, 4, 8, 8, generator=torch.Generator().manual_seed(args.seed))
    import comfy.samplers
    result = {"prompts": chosen, "samples": count, "real_floor": frechet(floor_features, real_features), "rows": []}
    for steps in args.steps:
        outputs = {}
        samplers = [entry for entry in SAMPLERS if entry[1] != "heun" or steps in args.heun_steps]
        for label, base, gamma in samplers:
            sampler = (comfy.samplers.sampler_object(base) if gamma is None
                       else nodes.BDIASampler.execute(base=base, gamma=gamma).args[0])
            start = time.perf_counter()
            pictures = generate(model, vae, positive, negative, noise, sampler, steps)
            outputs[label] = (features(vae, pictures), following(name, pictures, prompt_labels),
                              time.perf_counter() - start)
        for label, base, gamma in samplers:
            feats, hits, seconds = outputs[label]
            row = {"sampler": label, "steps": steps, "fd": frechet(feats, real_features), "seconds": seconds,
                   "following": float(hits.mean()) if hits.size else None}
            if gamma is not None:
                base_feats, base_hits, _ = outputs[base]
                row["fd_delta"] = row["fd"] - frechet(base_feats, real_features)
                row["fd_interval"] = paired_interval(lambda f: frechet(f, real_features), feats, base_feats, count,
                                                     rng)
                if hits.size:
                    row["following_delta"] = float(hits.mean() - base_hits.mean())
                    row["following_interval"] = paired_interval(lambda h: float(h.mean()), torch.from_numpy(hits),
                                                                torch.from_numpy(base_hits), count, rng)
            result["rows"].append(row)
            print(name, json.dumps(row), flush=True)
    return result


def table(name: str, result: dict) -> list:
    lines = [f"**{name}** ({len(result['prompts'])} prompts × {result['samples'] // len(result['prompts'])} seeds = "
             f"{result['samples']} samples per row; FD real floor {result['real_floor']:.4f})", "",
             "| sampler | steps | prompt following (%) | Δ vs base (95 % interval) | FD ↓ | Δ FD vs base "
             "(95 % interval) |",
             "|---|---|---|---|---|---|"]
    for row in result["rows"]:
        follow = "–" if row["following"] is None else f"{100 * row['following']:.1f}"
        follow_delta = ("" if "following_delta" not in row else
                        f"{100 * row['following_delta']:+.1f} ({100 * row['following_interval'][0]:+.1f} … "
                        f"{100 * row['following_interval'][1]:+.1f})")
        fd_delta = ("" if "fd_delta" not in row else
                    f"{row['fd_delta']:+.4f} ({row['fd_interval'][0]:+.4f} … {row['fd_interval'][1]:+.4f})")
        lines.append(f"| {row['sampler']} | {row['steps']} | {follow} | {follow_delta} | {row['fd']:.4f} | "
                     f"{fd_delta} |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["demo", "second"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--samples", type=int, default=8, help="seeds per prompt")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--heun-steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    import_pack()
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    rng = np.random.default_rng(args.seed)
    results, lines = {}, [f"KSampler's {SCHEDULER} schedule, cfg {CFG:g}; `python -m bench.bdia "
                          f"--prompts {args.prompts} --samples {args.samples} --steps "
                          f"{' '.join(map(str, args.steps))} --heun-steps {' '.join(map(str, args.heun_steps))}`", ""]
    with torch.inference_mode():
        for name in args.models:
            results[name] = run_model(name, nodes, args, rng)
            lines += table(name, results[name]) + [""]
    print("\n".join(lines))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "bdia.md"), "w") as f:
        f.write("\n".join(lines))
    with open(os.path.join(args.out, "bdia.json"), "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
