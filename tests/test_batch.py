"""scripts/batch.py on a local Ray cluster on CPU: the test host's server alone (interrupted by Ctrl-C, then resumed),
then two workers that each start a ComfyUI server, one of them killed mid-run; a corrupt image; a re-run."""
import json
import os
import signal
import subprocess
import time

import pytest
import safetensors.torch
from support.comfy_host import PYTHON, REPO, STUBS
from support.tinymodels import CLIP_FILE, UNET_FILE, VAE_FILE, smooth_image

from scripts.headless import Server

pytestmark = pytest.mark.host

BATCH = [PYTHON, os.path.join(REPO, "scripts", "batch.py")]
FRAMES = [f"frame_{index}" for index in range(6)]
STEPS = 3  # a second or two an item on the smoke-test model: long enough to kill a server in the middle of one


def smoke_workflow() -> dict:
    """Invert the image with FixedPoint on the smoke-test model, regenerate it; save the seed and the picture."""
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_FILE, "weight_dtype": "default"}},
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_FILE, "type": "stable_diffusion"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_FILE}},
        "image": {"class_type": "LoadImage", "inputs": {"image": "replaced by each item"}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["vae", 0]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo", "clip": ["clip", 0]}},
        "invert": {"class_type": "SeedfinderFixedPointInvert", "inputs": {
            "model": ["unet", 0], "positive": ["pos", 0], "latent": ["encode", 0], "steps": STEPS,
            "scheduler": "simple", "cfg": 1.0, "strength": 1.0, "sampler": "euler", "noise_seed": 0,
            "max_iterations": 4, "tolerance": 1e-4, "acceleration": "anderson", "warm_start": True}},
        "sample": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["unet", 0], "add_noise": "disable", "noise_seed": 0, "steps": STEPS, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["pos", 0], "negative": ["pos", 0],
            "latent_image": ["invert", 0], "start_at_step": 0, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["vae", 0]}},
        "save_seed": {"class_type": "SaveLatent", "inputs": {"samples": ["invert", 0],
                                                             "filename_prefix": "seedfinder/seed"}},
        "save_image": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0],
                                                             "filename_prefix": "seedfinder/reconstruction"}},
    }


@pytest.fixture(scope="module")
def image_set(tmp_path_factory):
    """Six 64x64 images and a corrupt one; the workflow file."""
    from PIL import Image
    folder = tmp_path_factory.mktemp("batch")
    images = folder / "images"
    images.mkdir()
    for index, stem in enumerate(FRAMES):
        Image.fromarray(smooth_image(100 + index)).save(images / f"{stem}.png")
    (images / "broken.png").write_bytes(b"not a png")
    workflow = folder / "workflow.json"
    workflow.write_text(json.dumps(smoke_workflow()))
    return folder


def batch(image_set, out, *args) -> subprocess.Popen:
    """The command, its output in <out>.log."""
    env = dict(os.environ, PYTHONPATH=STUBS, HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    log = open(f"{out}.log", "w")
    return subprocess.Popen([*BATCH, str(image_set / "workflow.json"), str(image_set / "images"), str(out), *args],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def finish(process: subprocess.Popen, out, timeout: float = 240) -> str:
    try:
        process.wait(timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    with open(f"{out}.log") as f:
        return f.read()


def manifest(out) -> list:
    path = os.path.join(out, "manifest.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def wait_for(condition, process: subprocess.Popen, timeout: float = 180):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None and time.time() < deadline, "the batch ended (or stalled) before the test acted"
        time.sleep(0.05)


def seeds(out) -> dict:
    return {stem: safetensors.torch.load_file(os.path.join(out, f"{stem}.seed.latent"))["latent_tensor"]
            for stem in FRAMES}


def assert_every_item_once(rows: list, image_set) -> None:
    items = {str(image_set / "images" / f"{stem}.png") for stem in FRAMES} | {str(image_set / "images" / "broken.png")}
    assert sorted(row["item"] for row in rows) == sorted(items)  # each item has exactly one row
    for row in rows:
        if row["stem"] == "broken":
            assert row["status"] == "error" and "LoadImage: cannot identify image file" in row["error"], row
            assert row["attempts"] == 1 and row["outputs"] == []
        else:
            assert row["status"] == "done" and row["error"] is None, row
            assert row["outputs"] == [f"{row['stem']}.reconstruction.png", f"{row['stem']}.seed.latent"]
            assert row["evaluations"] >= STEPS and row["round_trip_estimate"] >= 0 and row["wall_s"] > 0


@pytest.fixture(scope="module")
def single_server(host, image_set):
    """The set through the test host's one server (--server), Ctrl-C after two rows, then the same command again."""
    out = image_set / "single"
    process = batch(image_set, out, "--server", host.url)
    wait_for(lambda: len(manifest(out)) >= 2, process)
    process.send_signal(signal.SIGINT)
    interrupted = (finish(process, out), process.returncode, manifest(out))
    resumed = batch(image_set, out, "--server", host.url)
    return out, interrupted, finish(resumed, out)


def test_ctrl_c_leaves_a_consistent_manifest_and_the_next_run_finishes_it(single_server, image_set):
    out, (log, code, rows), resumed_log = single_server
    assert code == 130 and "interrupted (run again to finish them)" in log, log
    assert 2 <= len(rows) < 7
    for row in rows:  # a row means its files are written, whole
        assert all(os.path.getsize(os.path.join(out, name)) > 0 for name in row["outputs"])
    assert not [name for name in os.listdir(out) if name.endswith(".partial")]
    assert_every_item_once(manifest(out), image_set)
    assert f"{len(rows)} skipped (already in the manifest)" in resumed_log, resumed_log


def test_a_killed_server_is_retried_on_the_other_worker_and_every_seed_matches_one_server(host, image_set,
                                                                                          single_server):
    out, work = image_set / "two", image_set / "work"
    process = batch(image_set, out, "--comfyui", host.root, "--workers", "2", "--work", str(work), "--",
                    "--cpu", "--base-directory", host.base, "--disable-api-nodes")
    servers = [work / f"worker-{index}.json" for index in range(2)]

    def busy_server():
        """A worker's server in the middle of a prompt, once both run and the first item is recorded."""
        if not manifest(out) or not all(path.exists() for path in servers):
            return None
        for path in servers:
            started = json.loads(path.read_text())
            try:
                if Server(started["url"]).json("/queue", timeout=2)["queue_running"]:
                    return path, started
            except OSError:
                pass  # still starting
        return None

    wait_for(busy_server, process)
    path, killed = busy_server()
    os.kill(killed["pid"], signal.SIGKILL)
    log = finish(process, out)
    assert process.returncode == 0, log
    rows = manifest(out)
    assert_every_item_once(rows, image_set)
    retried = [row for row in rows if row["attempts"] > 1]
    assert len(retried) == 1 and f"retrying {retried[0]['item']} on another worker" in log, log
    assert retried[0]["worker"] != path.stem and retried[0]["attempts"] == 2
    assert json.loads(path.read_text())["pid"] != killed["pid"]  # the worker started a new server
    assert {row["worker"] for row in rows} == {"worker-0", "worker-1"}
    reference = seeds(single_server[0])
    for stem, seed in seeds(out).items():  # bit-identical to the single-server run
        assert seed.dtype == reference[stem].dtype and bool((seed == reference[stem]).all()), stem
    started = time.time()
    again = finish(batch(image_set, out, "--comfyui", host.root, "--workers", "2", "--work", str(work)), out)
    assert "0 done, 0 error, 0 failed, 7 skipped" in again and len(manifest(out)) == len(rows), again
    assert "Ray" not in again and time.time() - started < 30  # nothing to do: no cluster, no server started
