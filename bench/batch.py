"""Throughput of scripts/batch.py with 1 and then 2 ComfyUI servers on this machine, in one run (CPU, smoke-test model).

Each pass is the command itself on a fresh local Ray cluster: --workers N servers started from a scratch copy of the
test host's ComfyUI, the same images. Items per second are counted from the manifest over the processing time (the
first item's start to the last item's end), so the servers' start-up is left out. Prints a markdown table.
usage: .host/venv/bin/python -m bench.batch [--images 12] [--steps 3] [--work DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from tests.support.comfy_host import PYTHON, REPO, STUBS, ComfyHost
from tests.support.graphs import batch_graph

sys.path.insert(0, os.path.join(REPO, "scripts"))
from batch import throughput  # noqa: E402  (scripts/ is not a package)


def scratch(work: str, images: int) -> ComfyHost:
    """A ComfyUI copy with the smoke-test models (never started: the batch's workers start it) and the images."""
    sys.path[:0] = [STUBS, os.path.join(REPO, ".host", "comfyui")]
    import comfy.cli_args
    comfy.cli_args.args.cpu = True
    from PIL import Image

    from tests.support import tinymodels
    host = ComfyHost(os.path.join(work, "comfy"))
    tinymodels.write_models(os.path.join(host.base, "models"))
    os.makedirs(os.path.join(work, "images"))
    for index in range(images):
        Image.fromarray(tinymodels.smooth_image(200 + index)).save(os.path.join(work, "images", f"{index:03d}.png"))
    return host


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--work", help="scratch folder (default: a new temporary one)")
    args = parser.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="seedfinder_bench_batch_")
    host = scratch(work, args.images)
    with open(os.path.join(work, "workflow.json"), "w") as f:
        json.dump(batch_graph(steps=args.steps), f)
    env = dict(os.environ, PYTHONPATH=STUBS, HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    speeds = {}
    print("| servers | items | items/s | wall incl. start-up (s) |\n|---|---|---|---|")
    for workers in (1, 2):
        out = os.path.join(work, f"out_{workers}")
        started = time.time()
        subprocess.run([PYTHON, os.path.join(REPO, "scripts", "batch.py"), os.path.join(work, "workflow.json"),
                        os.path.join(work, "images"), out, "--comfyui", host.root, "--workers", str(workers),
                        "--work", os.path.join(work, f"servers_{workers}"), "--",
                        "--cpu", "--base-directory", host.base, "--disable-api-nodes"],
                       env=env, check=True, capture_output=True)
        with open(os.path.join(out, "manifest.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        assert all(row["status"] == "done" for row in rows) and len(rows) == args.images, rows
        speeds[workers] = throughput(rows)
        print(f"| {workers} | {len(rows)} | {speeds[workers]:.3f} | {time.time() - started:.1f} |")
    print(f"\n2 servers / 1 server: {speeds[2] / speeds[1]:.2f}x on {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
