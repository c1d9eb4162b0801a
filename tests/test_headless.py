"""scripts/headless.py against a real ComfyUI server: names the server would refuse, a refused image among good ones,
re-runs, same-stem sets, --timeout and Ctrl-C (the prompt leaves the server), exit statuses; and each mistake in the
arguments answered in one line naming the argument."""
import http.server
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import safetensors.torch
from support.comfy_host import PYTHON, REPO, default_ctrl_c, free_port
from support.graphs import batch_graph
from support.tinymodels import smooth_image

HEADLESS = [PYTHON, os.path.join(REPO, "scripts", "headless.py")]


def headless(images, out, *args, workflow=None) -> subprocess.CompletedProcess:
    return subprocess.run([*HEADLESS, str(images), str(out), *(["--workflow", str(workflow)] if workflow else []),
                           *args], capture_output=True, text=True, timeout=600)


def fast_workflow(folder, steps: int = 3, max_iterations: int = 4):
    """scripts/batch.py's kind of workflow on the smoke-test model (a second or two an image), as a file."""
    path = folder / f"workflow_{steps}.json"
    path.write_text(json.dumps(batch_graph(steps=steps, max_iterations=max_iterations)))
    return path


def save_images(folder, *names) -> None:
    from PIL import Image
    folder.mkdir(exist_ok=True)
    for index, name in enumerate(names):
        Image.fromarray(smooth_image(200 + index)).save(folder / name, format="PNG")


def manifest(out) -> dict:
    with open(out / "manifest.jsonl") as f:
        return {os.path.basename(row["item"]): row for row in map(json.loads, f)}


def assert_discarded(host, prompt_id: str, timeout: float = 60) -> None:
    """The prompt left the server unfinished: taken off the queue (no history) or interrupted."""
    deadline = time.time() + timeout
    while any(item[1] == prompt_id for key in ("queue_running", "queue_pending") for item in host.get("/queue")[key]):
        assert time.time() < deadline, "the server still holds the discarded prompt"
        time.sleep(0.1)
    entry = host.get(f"/history/{prompt_id}").get(prompt_id)
    if entry is not None:
        kinds = [message[0] for message in entry["status"]["messages"]]
        assert "execution_interrupted" in kinds and not entry["status"]["completed"], kinds


@pytest.mark.host
def test_dotted_names_a_refused_image_and_a_rerun(host, tmp_path):
    """A name holding '..' (which ComfyUI's /view refuses) keeps its outputs; a corrupt image ends `error` and the run
    goes on past it (exit 3); a re-run skips all three and still says exit 3."""
    images, out = tmp_path / "images", tmp_path / "out"
    save_images(images, "holiday..2024.png", "zebra.png")
    (images / "broken.png").write_bytes(b"not a png")
    workflow = fast_workflow(tmp_path)
    first = headless(images, out, "--server", host.url, workflow=workflow)
    assert first.returncode == 3, first.stderr
    assert "2 done, 1 error, 0 failed, 0 skipped" in first.stderr and "exit 3: 1 item(s) ended error" in first.stderr
    rows = manifest(out)
    assert rows["broken.png"]["status"] == "error" and "LoadImage" in rows["broken.png"]["error"]
    assert rows["zebra.png"]["status"] == "done"  # tried after the refused one
    assert rows["holiday..2024.png"]["outputs"] == ["holiday..2024.reconstruction.png", "holiday..2024.seed.latent"]
    seed = safetensors.torch.load_file(out / "holiday..2024.seed.latent")["latent_tensor"]
    assert seed.shape == (1, 4, 8, 8)
    again = headless(images, out, "--server", host.url, workflow=workflow)
    assert again.returncode == 3, again.stderr
    assert "0 done, 0 error, 0 failed, 3 skipped" in again.stderr and len(manifest(out)) == 3


@pytest.mark.host
def test_images_that_share_a_stem_are_refused(host, tmp_path):
    images = tmp_path / "images"
    save_images(images, "cat.png", "cat.PNG", "dog.png")
    result = headless(images, tmp_path / "out", "--server", host.url, workflow=fast_workflow(tmp_path))
    assert result.returncode == 1 and not (tmp_path / "out").exists(), result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("images: outputs are named by the image's name") and "cat.PNG" in line
    assert "cat.png" in line and "dog.png" not in line and "rename them" in line


@pytest.mark.host
def test_an_image_past_its_timeout_leaves_the_server_and_fails(host, tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    save_images(images, "slow.png")
    result = headless(images, out, "--server", host.url, "--timeout", "0.05", workflow=fast_workflow(tmp_path))
    assert result.returncode == 4, result.stderr
    assert "0 done, 0 error, 1 failed" in result.stderr and "exit 4" in result.stderr
    row = manifest(out)["slow.png"]
    assert row["status"] == "failed" and "--timeout 0.05 s" in row["error"] and "raise --timeout" in row["error"]
    assert_discarded(host, re.search(r"prompt (\S+) did not finish", row["error"]).group(1))


@pytest.mark.host
def test_ctrl_c_takes_the_running_prompt_off_the_server(host, tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    save_images(images, "first.png", "second.png")
    workflow = fast_workflow(tmp_path, steps=30, max_iterations=20)  # long enough to be caught running
    process = subprocess.Popen([*HEADLESS, str(images), str(out), "--workflow", str(workflow), "--server", host.url],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=default_ctrl_c)
    deadline = time.time() + 120
    while not host.get("/queue")["queue_running"]:
        assert process.poll() is None and time.time() < deadline, process.communicate()
        time.sleep(0.05)
    prompt_id = host.get("/queue")["queue_running"][0][1]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "2 interrupted (run again to finish them)" in stderr and "Traceback" not in stderr
    assert_discarded(host, prompt_id)
    assert not (out / "manifest.jsonl").read_text()  # neither image has a row: a re-run does both


class NotComfy(http.server.BaseHTTPRequestHandler):
    """A web server that is not ComfyUI: every GET answers HTTP 501."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def not_comfy():
    server = http.server.HTTPServer(("127.0.0.1", 0), NotComfy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def mistake(tmp_path, case: str, not_comfy: str) -> tuple:
    """(arguments, fragments of the one line that must answer them)."""
    images = tmp_path / "images"
    save_images(images, "cat.png")
    workflow = tmp_path / "workflow.json"
    workflow.write_text(json.dumps(batch_graph()))
    if case == "no_load_image":
        graph = batch_graph()
        del graph["image"]
        workflow.write_text(json.dumps(graph))
        return [images, "--workflow", workflow], ("--workflow: expected a LoadImage node", "add a Load Image node")
    if case == "malformed_workflow":
        workflow.write_text('{"1": {"class_type": ')
        return [images, "--workflow", workflow], ("--workflow: expected a workflow in JSON", "Export (API)")
    if case == "ui_workflow":
        workflow.write_text(json.dumps({"nodes": [], "links": [], "version": 0.4}))
        return [images, "--workflow", workflow], ("--workflow:", "is a UI workflow", "Export (API)")
    if case == "missing_images":
        return [tmp_path / "nowhere", "--workflow", workflow], ("images: expected a folder of images", "not found")
    url = f"http://127.0.0.1:{free_port()}" if case == "server_down" else not_comfy
    fragments = (("--server: no server answers at", url, "start ComfyUI") if case == "server_down"
                 else ("--server:", url, "is not a ComfyUI server", "HTTP 501"))
    return [images, "--workflow", workflow, "--server", url], fragments


@pytest.mark.parametrize("case", ["no_load_image", "malformed_workflow", "ui_workflow", "missing_images",
                                  "server_down", "not_comfyui"])
def test_a_mistake_is_answered_in_one_line_naming_the_argument(tmp_path, not_comfy, case):
    args, fragments = mistake(tmp_path, case, not_comfy)
    result = subprocess.run([*HEADLESS, str(args[0]), str(tmp_path / "out"), *map(str, args[1:])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    [line] = result.stderr.strip().splitlines()
    for fragment in fragments:
        assert fragment in line, line
