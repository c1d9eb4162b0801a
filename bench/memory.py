"""Memory of one inversion step against one step of ComfyUI's own sampler, on the CPU tiny model; with --edit, the
attention edit's modes against a plain sample.

Each run is its own process (peak RSS is per process): the model is loaded, then either DDIM Invert (1 step) or
core's common_ksampler (1 euler step, the same latent, prompt and schedule) runs while a thread samples the RSS.
After the run: the RSS held, then the RSS after glibc's malloc_trim (what is still held once the allocator returns
its cached free blocks to the system), then after three more runs (does anything accumulate?).
--edit: the seed of a 2-step DDIM inversion, then (measured) a 2-step euler sample from it through CFGGuider (plain)
or through the Attention Edit Guider with no mask, its automatic mask (the mask pass included), or a given mask, on
the tiny model or SD1.5's full-size architecture with random weights (--model sd15); and, computed from the shapes by
`edit_memory` (the estimate the guider's memory guard checks), the state the edit keeps per σ and per block for
SD1.5, SDXL, Flux and Wan at their usual sizes (`edit_state_rows`; --state prints that table alone).
usage: .host/venv/bin/python -m bench.memory [--size 128] [--edit] [--model tiny|sd15] [--state]
"""
import argparse
import ctypes
import gc
import importlib
import subprocess
import sys
import threading
import time

MiB = 2 ** 20


def peak_rss(process, run) -> tuple:
    """(run()'s result, the process's peak resident memory while it ran, sampled every 5 ms by a thread)."""
    peak, running = [process.memory_info().rss], [True]

    def watch():
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run()
    finally:
        running[0] = False
        watcher.join()
    return result, peak[0]


def one_run(kind: str, size: int) -> None:
    """Measure `kind` (seedfinder or comfyui) in this process and print one markdown row."""
    import psutil
    import torch

    from tests.support.inprocess import import_pack, random_conditioning, tiny_model
    import_pack()
    import comfy.model_management
    from seedfinder.nodes.invert import DDIMInvert

    comfy_nodes = importlib.import_module("nodes")  # ComfyUI's own nodes.py (its tree leads sys.path), not the pack's

    process, trim = psutil.Process(), ctypes.CDLL("libc.so.6").malloc_trim
    with torch.inference_mode():
        model, conditioning = tiny_model(), random_conditioning(0)
        latent = {"samples": torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(0))}
        comfy.model_management.load_models_gpu([model])

    def step():
        with torch.inference_mode():
            if kind == "seedfinder":
                return DDIMInvert.execute(model=model, positive=conditioning, latent=latent, steps=1,
                                          scheduler="simple", cfg=1.0, strength=1.0, sampler="euler", noise_seed=0)
            return comfy_nodes.common_ksampler(model, 0, 1, 1.0, "euler", "simple", conditioning, conditioning,
                                               latent, disable_noise=True, start_step=0, last_step=1)

    gc.collect()
    trim(0)
    base = process.memory_info().rss
    output, peak = peak_rss(process, step)
    gc.collect()
    held = process.memory_info().rss
    trim(0)
    trimmed = process.memory_info().rss
    for _ in range(3):
        output = step()
    del output
    gc.collect()
    trim(0)
    again = process.memory_info().rss
    name = "DDIM Invert, 1 step" if kind == "seedfinder" else "ComfyUI common_ksampler, 1 euler step"
    print(f"| {name} | {(peak - base) / MiB:+.0f} | {(held - base) / MiB:+.0f} | {(trimmed - base) / MiB:+.0f} | "
          f"{(again - base) / MiB:+.0f} |", flush=True)


EDIT_KINDS = ("plain sample", "attention edit, no mask", "attention edit + automatic mask", "attention edit + mask")
STEPS = 2


def one_edit_run(kind: str, size: int, model_name: str) -> None:
    """Measure one of EDIT_KINDS in this process (the seed's inversion before the baseline) and print one row."""
    import psutil
    import torch

    from tests.support.inprocess import full_size_model, import_pack, random_conditioning, tiny_model
    import_pack()
    import comfy.samplers
    from seedfinder.nodes import host
    from seedfinder.solvers import AttentionEditOptions, ddim_invert

    process = psutil.Process()
    with torch.inference_mode():
        model, source = ((tiny_model(), random_conditioning(0)) if model_name == "tiny"
                         else full_size_model(model_name, torch.float32))
        target = random_conditioning(1)
        sigmas = host.build_schedule(model, STEPS, "simple", 1.0, None).sigmas
        latent = {"samples": torch.randn(1, 4, size, size, generator=torch.Generator().manual_seed(0))}
        seed = host.run_inversion(ddim_invert, model, host.Prompt(source, None, 1.0), latent, sigmas,
                                  host.HandOff("ddim")).noise
        empty = torch.zeros(1, 4, size, size)
        noise = seed.generate_noise({"samples": empty})
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    base = process.memory_info().rss

    def edit():
        with torch.inference_mode():
            if kind == "plain sample":
                guider = comfy.samplers.CFGGuider(model)
                guider.inner_set_conds({"positive": target})
            else:
                mask = torch.zeros(1, 8 * size, 8 * size)
                mask[..., :4 * size] = 1.0
                guider = host.attention_edit_guider(
                    model, host.Prompt(source, None, 1.0), host.Prompt(target, None, 1.0),
                    AttentionEditOptions(auto_mask=kind.endswith("automatic mask"), mask_steps=STEPS), seed,
                    mask if kind.endswith("+ mask") else None)
            guider.sample(noise, empty, comfy.samplers.sampler_object("euler"), sigmas, disable_pbar=True, seed=0)

    _, peak = peak_rss(process, edit)
    print(f"| {kind} | {(peak - base) / MiB:+.0f} |", flush=True)


EDIT_STATE_MODELS = (
    # name, size, latent shape, steps, the largest attention layer: the latent cells per token (a UNet's
    # downsampling, a DiT's patch), the prompt's tokens in it (a joint attention's) and its width; cfg, bytes per value
    ("SD1.5", "512²", (1, 4, 64, 64), 20, (1, 1), 0, 320, 7.5, 2),
    ("SDXL", "1024²", (1, 4, 128, 128), 30, (2, 2), 0, 640, 7.5, 2),
    ("Flux dev", "1024²", (1, 16, 128, 128), 28, (2, 2), 512, 3072, 1.0, 2),
    ("Wan 2.1 1.3B", "832×480, 81 frames", (1, 16, 21, 60, 104), 30, (1, 2, 2), 0, 1536, 6.0, 2),
    ("Wan 2.1 14B", "832×480, 81 frames", (1, 16, 21, 60, 104), 30, (1, 2, 2), 0, 5120, 6.0, 2),
)
"""The families' usual settings: SD1.5's first attention level is at the latent's size, SDXL's at half; Flux's T5
prompt is 512 tokens; Wan's self-attention is over the image tokens only (its prompt comes in a second attention)."""


def edit_state_rows() -> list:
    """(model, size, latent shape, steps, EditMemory) for EDIT_STATE_MODELS, from the shapes by `edit_memory` (the
    estimate the guider's memory guard checks): the exact source branch's trajectory with the automatic mask, and the
    largest copy one block makes. No attention map or K/V outlives its block, since both branches run in one batch
    (which doubles the activations of each evaluation, as a batch of two images does)."""
    from seedfinder.solvers import edit_memory, image_tokens

    rows = []
    for name, size, shape, steps, patch, prompt_tokens, width, cfg, itemsize in EDIT_STATE_MODELS:
        tokens = image_tokens(shape[2:], patch) + prompt_tokens
        memory = edit_memory(shape, steps, True, True, tokens, width, 1 if cfg == 1.0 else 2, itemsize)
        rows.append((name, size, shape, steps, cfg, memory))
    return rows


def edit_state_table() -> str:
    """edit_state_rows as the markdown table bench/results/memory_edit.md shows."""
    lines = ["| model | size | latent | steps | cfg | trajectory per step | trajectory + mask | tokens × width "
             "| per block (freed after it) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, size, shape, steps, cfg, memory in edit_state_rows():
        lines.append(f"| {name} | {size} | {'×'.join(map(str, shape))} | {steps} | {cfg:g} | "
                     f"{memory.per_step / MiB:.2f} | {(memory.trajectory + memory.mask_map) / MiB:.1f} | "
                     f"{memory.tokens} × {memory.width} | {memory.per_block / MiB:.0f} |")
    return "\n".join(lines)


EDIT_STATE_INTRO = ("\nWhat the edit keeps beyond the batch of two, from the shapes (`edit_memory`, MiB): the "
                    "trajectory (one fp32 latent per σ, on the CPU) with the mask (one value per latent cell), and "
                    "the largest copy one block makes on the device and frees (a DiT's keys and values, a UNet's "
                    "queries and keys, of both branches; twice with cfg ≠ 1; fp16/bf16)\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="latent height and width")
    parser.add_argument("--edit", action="store_true", help="the attention edit's modes against a plain sample")
    parser.add_argument("--model", choices=("tiny", "sd15"), default="tiny")
    parser.add_argument("--state", action="store_true", help="only the edit's state from the shapes (no run)")
    parser.add_argument("--kind", choices=("seedfinder", "comfyui", *EDIT_KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind in EDIT_KINDS:
        return one_edit_run(args.kind, args.size, args.model)
    if args.kind:
        return one_run(args.kind, args.size)
    if args.state:
        print(EDIT_STATE_INTRO)
        print(edit_state_table())
        return None
    if args.edit:
        model = "the tests' tiny SD1.5-architecture model" if args.model == "tiny" else \
            "SD1.5's full-size architecture, random weights, fp32"
        print(f"1×4×{args.size}×{args.size} latent, {model}, CPU, {STEPS} euler steps from a DDIM seed; peak RSS in "
              f"MiB above the loaded model and the seed\n")
        print("| run | peak |\n|---|---|")
        for kind in EDIT_KINDS:
            subprocess.run([sys.executable, "-m", "bench.memory", "--kind", kind, "--size", str(args.size),
                            "--model", args.model], check=True, stderr=subprocess.DEVNULL)
        print(EDIT_STATE_INTRO)
        print(edit_state_table())
        return None
    print(f"1×4×{args.size}×{args.size} latent, tiny SD1.5-architecture model, CPU; MiB against the loaded model\n")
    print("| run | peak | held after | held after malloc_trim | after 3 more runs, trimmed |")
    print("|---|---|---|---|---|")
    for kind in ("seedfinder", "comfyui"):
        subprocess.run([sys.executable, "-m", "bench.memory", "--kind", kind, "--size", str(args.size)], check=True,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
