"""Memory of one inversion step against one step of ComfyUI's own sampler, on the CPU tiny model.

Each run is its own process (peak RSS is per process): the model is loaded, then either DDIM Invert (1 step) or
core's common_ksampler (1 euler step, the same latent, prompt and schedule) runs while a thread samples the RSS.
After the run: the RSS held, then the RSS after glibc's malloc_trim (what is still held once the allocator returns
its cached free blocks to the system), then after three more runs (does anything accumulate?).
usage: .host/venv/bin/python -m bench.memory [--size 128]
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
    peak, running = [base], [True]

    def watch():
        while running[0]:
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    output = step()
    running[0] = False
    watcher.join()
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
    print(f"| {name} | {(peak[0] - base) / MiB:+.0f} | {(held - base) / MiB:+.0f} | {(trimmed - base) / MiB:+.0f} | "
          f"{(again - base) / MiB:+.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128, help="latent height and width")
    parser.add_argument("--kind", choices=("seedfinder", "comfyui"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kind:
        return one_run(args.kind, args.size)
    print(f"1×4×{args.size}×{args.size} latent, tiny SD1.5-architecture model, CPU; MiB against the loaded model\n")
    print("| run | peak | held after | held after malloc_trim | after 3 more runs, trimmed |")
    print("|---|---|---|---|---|")
    for kind in ("seedfinder", "comfyui"):
        subprocess.run([sys.executable, "-m", "bench.memory", "--kind", kind, "--size", str(args.size)], check=True,
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
