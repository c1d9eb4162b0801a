"""The README's run command: scripts/serve.sh serves ComfyUI's UI with Seedfinder, its chart and its templates."""
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest
from support.comfy_host import COMFY_TREE, REPO, default_ctrl_c, free_port

from demo_model.install import (
    DEMO_LABELS,
    SCENE_DEMOS,
    SCENE_UNET_FILE,
    UNET_FILES,
    image_name,
    scene_image_name,
    scene_of,
)
from demo_model.twin import DIT_FILE

UNET_FILE = UNET_FILES["eps"]

pytestmark = pytest.mark.host


def get(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read()
    return json.loads(body) if response.headers.get_content_type() == "application/json" else body.decode()


def test_serve_command_serves_the_ui_with_seedfinder_and_the_demo_model(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(["bash", os.path.join(REPO, "scripts", "serve.sh"), "--port", str(port), "--work",
                               str(tmp_path / "serve")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                              preexec_fn=default_ctrl_c)
    try:
        deadline = time.time() + 240
        while True:
            try:
                page = get(url + "/")
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
        assert "<title>ComfyUI</title>" in page  # the official frontend, not an empty page
        assert "/extensions/seedfinder/convergence_chart.js" in get(url + "/extensions")
        templates = get(url + "/workflow_templates")["seedfinder"]
        assert {"reconstruct_fixed_point", "edit_rnri", "interpolate_seeds"} <= set(templates)
        assert get(url + f"/api/workflow_templates/seedfinder/{templates[0]}.json")["nodes"]
        info = get(url + "/object_info/UNETLoader")["UNETLoader"]["input"]["required"]["unet_name"][0]
        assert UNET_FILE in info and "SeedfinderFixedPointInvert" in get(url + "/object_info")
        assert SCENE_UNET_FILE in info and DIT_FILE in info  # the attention edit examples' models
        images = get(url + "/object_info/LoadImage")["LoadImage"]["input"]["required"]["image"][0]
        assert image_name(DEMO_LABELS[0]) in images and scene_image_name(scene_of(SCENE_DEMOS[0])) in images
    finally:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # a server still busy loading when it is told to stop
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
        log.close()


def test_serve_command_links_into_your_own_comfyui_and_keeps_your_models(tmp_path):
    own = tmp_path / "ComfyUI"
    os.makedirs(own / "models" / "checkpoints")
    shutil.copy(os.path.join(COMFY_TREE, "main.py"), own / "main.py")
    (own / "models" / "checkpoints" / "mine.safetensors").write_bytes(b"")
    run = [os.path.join(REPO, ".host", "venv", "bin", "python"), os.path.join(REPO, "scripts", "serve.py"),
           "--comfyui", str(own), "--prepare-only"]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    assert os.path.realpath(own / "custom_nodes" / "seedfinder") == REPO
    assert not (own / "models" / "diffusion_models").exists()  # a model of yours: no demo model
    os.remove(own / "models" / "checkpoints" / "mine.safetensors")
    subprocess.run(run, check=True, capture_output=True, timeout=300)
    assert (own / "models" / "diffusion_models" / UNET_FILE).exists() and (own / "input").exists()
    refused = subprocess.run(run[:2] + ["--comfyui", str(tmp_path / "nothing")], capture_output=True, text=True)
    assert refused.returncode != 0 and "--comfyui: expected a ComfyUI folder with main.py" in refused.stderr
