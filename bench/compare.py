"""Every inverter side by side on the same inputs, in one run: evaluations, wall time, peak memory, per-step
residual and round-trip error; writes a markdown table, a JSON file and an SVG plot (error vs time and vs
evaluations).

Each configuration runs its node's execute() (the full node path) on the same latents; the seed is then
regenerated with the sampler the node hands off (euler through a CFGGuider, as KSamplerAdvanced with add_noise
disabled does; EDICT/BDIA with their own sampler) and compared with the latent the inversion started from.
On the CPU tiny model only ratios mean anything: a random model does not denoise.
usage: .host/venv/bin/python -m bench.compare [--steps 10] [--scheduler ddim_uniform] [--latents 3] [--out DIR]
On a GPU, full-size architectures with random weights (timing does not depend on the weights), e.g.
  python -m bench.compare --gpu --model sd15 --size 64 --steps 50 --dtype float16
  python -m bench.compare --gpu --model sd15-lcm --size 64 --steps 4 --scheduler sgm_uniform --sampler lcm
"""
import argparse
import json
import os
import statistics
import threading
import time
from dataclasses import replace

import torch
from seedfinder.solvers import FPI_PAPER, BDIAOptions, EDICTOptions, FixedPointOptions, widgets

from bench.plot import error_plot_svg
from tests.support.inprocess import full_size_model, import_pack, random_conditioning, tiny_model

HERE = os.path.dirname(os.path.abspath(__file__))

FIXED_POINT = {"tolerance": 0.0, "warm_start": False}
EDICT, BDIA = EDICTOptions(), BDIAOptions()


def configurations(full_size: bool):
    """(label, node class name, node options, prompt-aware) for every method and setting compared
    (a shorter list for full-size models)."""
    default_fixed_point = widgets(FixedPointOptions())
    exact = [(f"EDICT p={EDICT.mix:g} {precision}", "EDICTInvert", widgets(replace(EDICT, precision=precision)), False)
             for precision in ("float64", "float32")]
    exact += [(f"BDIA γ={BDIA.gamma:g} {precision}", "BDIAInvert", widgets(replace(BDIA, precision=precision)), False)
              for precision in ("float64", "float32")]
    if full_size:
        return [("DDIM", "DDIMInvert", {}, False),
                ("FixedPoint default", "FixedPointInvert", default_fixed_point, False),
                ("FixedPoint 20 it", "FixedPointInvert", {**FIXED_POINT, "max_iterations": 20,
                                                          "acceleration": "none"}, False),
                ("RNRI 2 it jacobian-free", "RNRIInvert",
                 {"iterations": 2, "regularization": 0.1, "gradient": "jacobian-free"}, False),
                ("RNRI 2 it autograd", "RNRIInvert",
                 {"iterations": 2, "regularization": 0.1, "gradient": "autograd"}, False),
                ("FixedPoint default + Prompt-Aware Encode", "FixedPointInvert", default_fixed_point, True),
                exact[0], exact[2]]
    rows = [("DDIM", "DDIMInvert", {}, False)]
    rows += [(f"FixedPoint {k} it", "FixedPointInvert", {**FIXED_POINT, "max_iterations": k, "acceleration": "none"},
              False) for k in (2, 5, 20)]
    rows += [("FixedPoint 20 it Anderson", "FixedPointInvert",
              {**FIXED_POINT, "max_iterations": 20, "acceleration": "anderson"}, False)]
    rows += [("FixedPoint to tol 1e-4", "FixedPointInvert", widgets(FPI_PAPER), False)]
    rows += [("FixedPoint to tol 1e-4, Anderson", "FixedPointInvert", {**default_fixed_point, "warm_start": False},
              False)]
    rows += [("FixedPoint default (tol 1e-4, Anderson, warm start)", "FixedPointInvert", default_fixed_point, False)]
    rows += [("FixedPoint to tol 1e-4, up to 200 it", "FixedPointInvert",
              widgets(replace(FPI_PAPER, max_iterations=200)), False),
             ("FixedPoint default, up to 200 it", "FixedPointInvert", {**default_fixed_point, "max_iterations": 200},
              False)]
    for gradient in ("jacobian-free", "autograd"):
        rows += [(f"RNRI {k} it {gradient}", "RNRIInvert",
                  {"iterations": k, "regularization": 0.1, "gradient": gradient}, False) for k in (1, 2)]
    rows += [("RNRI 20 it jacobian-free", "RNRIInvert",
              {"iterations": 20, "regularization": 0.1, "gradient": "jacobian-free"}, False)]
    rows += exact
    rows += [("DDIM + Prompt-Aware Encode", "DDIMInvert", {}, True),
             ("FixedPoint default + Prompt-Aware Encode", "FixedPointInvert", default_fixed_point, True)]
    return rows


class PeakMemory:
    """Peak memory above the start: resident memory sampled every 2 ms (CPU), or torch's peak allocation (CUDA)."""

    def __init__(self, cuda: bool):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        import psutil
        self.process, self.running = psutil.Process(), True
        self.start = self.peak = self.process.memory_info().rss
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()
        return self

    def sample(self):
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.running = False
            self.thread.join()
        self.growth_mib = (self.peak - self.start) / 2 ** 20


def regenerate(model, positive, cfg, latent, sigmas, sampler=None, negative=None):
    """The hand-off's own sampler (default euler) from the inverted latent with zero noise."""
    import comfy.samplers
    guider = comfy.samplers.CFGGuider(model)
    guider.inner_set_conds({"positive": positive, **({"negative": negative} if negative is not None else {})})
    guider.set_cfg(cfg)
    samples = latent["samples"]
    return guider.sample(torch.zeros_like(samples), samples, sampler or comfy.samplers.sampler_object("euler"),
                         sigmas, disable_pbar=True, seed=0)


def run_configuration(nodes, model, positive, latents, steps, scheduler, sampler, node_name, options, prompt_aware,
                      cuda, cfg=1.0, negative=None):
    """Mean evaluations per step, wall time, peak memory, residuals and round-trip error over the latents."""
    node = getattr(nodes, node_name)
    common = dict(model=model, positive=positive, steps=steps, scheduler=scheduler, cfg=cfg, strength=1.0)
    if negative is not None:
        common["negative"] = negative
    if node_name in ("DDIMInvert", "FixedPointInvert", "RNRIInvert"):
        common.update(sampler=sampler, noise_seed=0)
    stats = {"evaluations": [], "wall": [], "memory": [], "residual": [], "error": [], "residuals": []}
    for latent in latents:
        with PeakMemory(cuda) as memory:
            start = time.perf_counter()
            if prompt_aware:
                latent = nodes.PromptAwareEncode.execute(
                    model=model, positive=positive, steps=steps, scheduler=scheduler, cfg=1.0, depth=2, cycles=1,
                    mode="seeded", seed=0, latent=latent).args[0]
            out = node.execute(latent=latent, **common, **options)
            if cuda:
                torch.cuda.synchronize()
            stats["wall"].append(time.perf_counter() - start)
        info = out.ui["seedfinder"][0]
        stats["memory"].append(memory.growth_mib)
        stats["evaluations"].append(info["evaluations"] / info["steps"])
        stats["residual"].append(max(info["final_residual"]))
        stats["residuals"].append(info["final_residual"])
        sampler = out.args[3] if len(out.args) > 3 else None
        back = regenerate(model, positive, cfg, out.args[0], out.args[2], sampler, negative)
        stats["error"].append(float((back - latent["samples"]).norm() / latent["samples"].norm()))
    return {key: (values if key == "residuals" else statistics.mean(values)) for key, values in stats.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--scheduler", default="ddim_uniform")
    parser.add_argument("--latents", type=int, default=3, help="how many random latents to average over")
    parser.add_argument("--size", type=int, default=8, help="latent height and width")
    parser.add_argument("--sampler", default="euler", choices=["euler", "euler_ancestral", "lcm"])
    parser.add_argument("--model", default="tiny", choices=["tiny", "tiny-lcm", "sd15", "sd15-lcm", "sdxl"],
                        help="tiny(-lcm): the tests' SD1.5-architecture model (as an LCM); others: full size, random")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--gpu", action="store_true", help="run on ComfyUI's GPU device (absolute times)")
    parser.add_argument("--only", default="", help="run only the methods whose label contains this text")
    parser.add_argument("--out", default=os.path.join(HERE, "results"), help="folder for the .md/.json/.svg")
    args = parser.parse_args()
    import_pack(cpu=not args.gpu)
    import comfy.model_management
    import seedfinder.nodes as pack_nodes
    nodes = type("Nodes", (), {cls.__name__: cls for cls in pack_nodes.NODES})
    with torch.inference_mode():  # as ComfyUI's loaders build models inside a prompt
        if args.model.startswith("tiny"):
            model, positive = tiny_model(), random_conditioning(0)
            if args.model == "tiny-lcm":
                from comfy_extras.nodes_model_advanced import ModelSamplingDiscrete
                (model,) = ModelSamplingDiscrete().patch(model, "lcm", False)
        else:
            model, positive = full_size_model(args.model, getattr(torch, args.dtype))
    latents = [{"samples": torch.randn(1, 4, args.size, args.size, generator=torch.Generator().manual_seed(seed))}
               for seed in range(args.latents)]
    device = comfy.model_management.get_torch_device()
    device_name = torch.cuda.get_device_name(device) if args.gpu else "CPU"
    device = "gpu" if args.gpu else "cpu"
    name = "cpu" if args.model == "tiny" and not args.gpu else f"{args.model}-{args.dtype}-{device}"
    title = (f"{args.model} model ({device_name}, {args.dtype}), {args.size}×{args.size} latents, {args.steps} "
             f"{args.scheduler} steps, sampler {args.sampler}, cfg 1, mean over {args.latents} latents")
    lines = [title, "", "| method | evaluations / step | wall (s) | peak memory (MiB) | max final residual | "
             "round-trip error |", "|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    rows = []
    with torch.inference_mode():
        for label, node_name, options, prompt_aware in configurations(not args.model.startswith("tiny")):
            if not hasattr(nodes, node_name) or args.only not in label:
                continue
            result = run_configuration(nodes, model, positive, latents, args.steps, args.scheduler, args.sampler,
                                       node_name, options, prompt_aware, args.gpu)
            rows.append({"label": label, **result})
            line = (f"| {label} | {result['evaluations']:.1f} | {result['wall']:.3f} | {result['memory']:.0f} | "
                    f"{result['residual']:.2e} | {result['error']:.3g} |")
            lines.append(line)
            print(line, flush=True)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"{name}.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(args.out, f"{name}.json"), "w") as f:
        json.dump({"title": title, "rows": rows}, f, indent=1)
    with open(os.path.join(args.out, f"{name}.svg"), "w") as f:
        f.write(error_plot_svg(rows, title))


if __name__ == "__main__":
    main()
