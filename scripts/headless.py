"""Run an API-format workflow on a folder of images against a running ComfyUI server, one prompt per image.

usage: python scripts/headless.py IMAGES_DIR OUT_DIR [--workflow example_workflows/api/reconstruct_fixed_point.json]
                                  [--server http://127.0.0.1:8188]

Each image is uploaded, put into the workflow's first LoadImage node, queued, and waited for, with a progress bar
over the images. Every SaveLatent and SaveImage output is downloaded into
OUT_DIR named after the image: `cat.seed.latent` (the inverted seed in ComfyUI's latent format, safetensors) beside
`cat.reconstruction.png`. Needs only the standard library and tqdm (which every ComfyUI install has).
"""
import argparse
import copy
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKFLOW = os.path.join(REPO, "example_workflows", "api", "reconstruct_fixed_point.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SAVERS = {"SaveLatent": "latents", "SaveImage": "images"}


class Server:
    """A ComfyUI server's HTTP API (standard library only); the test host drives its servers through it too."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def request(self, path: str, data: bytes = None, headers: dict = None, timeout: float = 60):
        request = urllib.request.Request(self.url + path, data=data, headers=headers or {})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()

    def json(self, path: str, payload=None, timeout: float = 60):
        """GET `path` (or POST `payload` as JSON) and decode the answer."""
        data = None if payload is None else json.dumps(payload).encode()
        body = self.request(path, data, {"Content-Type": "application/json"} if data else None, timeout)
        return json.loads(body) if body.strip() else None

    def upload(self, path: str, name: str = None, content: bytes = None) -> str:
        """POST /upload/image (multipart) the file at `path` (or `content`, as `name`); returns the name the server
        stored it under."""
        boundary = uuid.uuid4().hex
        if content is None:
            with open(path, "rb") as f:
                content = f.read()
        body = b"".join([
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
            f"filename=\"{name or os.path.basename(path)}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n".encode(), content,
            f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n"
            f"--{boundary}--\r\n".encode()])
        answer = json.loads(self.request("/upload/image", body,
                                         {"Content-Type": f"multipart/form-data; boundary={boundary}"}))
        return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]

    def download(self, record: dict) -> bytes:
        query = urllib.parse.urlencode({"filename": record["filename"], "subfolder": record.get("subfolder", ""),
                                        "type": record.get("type", "output")})
        return self.request(f"/view?{query}")


class NodeError(RuntimeError):
    """The server refused the prompt or a node raised: the item's own fault, the server is fine."""


def image_node(workflow: dict) -> str:
    for node_id, node in workflow.items():
        if node["class_type"] == "LoadImage":
            return node_id
    raise ValueError("--workflow: expected an API-format workflow with a LoadImage node, found none")


def prompt_for(workflow: dict, image_name: str, stem: str, folder: str = "seedfinder_headless") -> dict:
    """The workflow with this image loaded and every saver writing under <folder>/<stem>."""
    prompt = copy.deepcopy(workflow)
    prompt[image_node(prompt)]["inputs"]["image"] = image_name
    for node_id, node in prompt.items():
        if node["class_type"] in SAVERS:
            kind = os.path.basename(node["inputs"].get("filename_prefix", node_id))
            node["inputs"]["filename_prefix"] = f"{folder}/{stem}.{kind}"
    return prompt


def queue(server: Server, prompt: dict, client: str) -> str:
    """POST the prompt; its prompt id. A prompt the server rejects (HTTP 400, node_errors) raises NodeError."""
    try:
        answer = server.json("/prompt", {"prompt": prompt, "client_id": client})
    except urllib.error.HTTPError as error:
        if error.code != 400:
            raise
        raise NodeError(f"the server rejected the workflow: {error.read().decode()[:2000]}") from None
    if answer.get("node_errors"):
        raise NodeError(f"the server rejected the workflow: {json.dumps(answer['node_errors'])[:2000]}")
    return answer["prompt_id"]


def wait(server: Server, prompt_id: str, timeout: float) -> dict:
    """Poll /history until the prompt ends; a node's error is raised as NodeError with its message."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = server.json(f"/history/{prompt_id}")
        if prompt_id in history:
            entry = history[prompt_id]
            status = entry.get("status", {})
            if status.get("status_str") == "error":
                errors = [m[1] for m in status.get("messages", []) if m[0] == "execution_error"]
                detail = errors[0] if errors else status
                raise NodeError(f"{detail.get('node_type', '')}: {detail.get('exception_message', detail)}")
            if status.get("completed"):
                return entry
        time.sleep(0.2)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")


def outputs(server: Server, workflow: dict, entry: dict, stem: str):
    """Each saver's files, downloaded: (<stem>.<prefix name>[_k].<ext>, content)."""
    for node_id, saved in entry.get("outputs", {}).items():
        node = workflow.get(node_id, {})
        if node.get("class_type") not in SAVERS:
            continue
        kind = os.path.basename(node["inputs"].get("filename_prefix", node_id))
        records = saved.get(SAVERS[node["class_type"]], [])
        for index, record in enumerate(records):
            suffix = os.path.splitext(record["filename"])[1]
            yield f"{stem}.{kind}{'' if len(records) == 1 else f'_{index}'}{suffix}", server.download(record)


def save_outputs(server: Server, workflow: dict, entry: dict, out_dir: str, stem: str) -> list:
    """Download each saver's files into `out_dir` (named as `outputs` says); returns the paths written."""
    written = []
    for name, content in outputs(server, workflow, entry, stem):
        path = os.path.join(out_dir, name)
        with open(path, "wb") as f:
            f.write(content)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", help="folder of images")
    parser.add_argument("out", help="folder for the seeds (.latent) and reconstructions")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW, help="API-format workflow with a LoadImage node")
    parser.add_argument("--server", default="http://127.0.0.1:8188")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per image")
    args = parser.parse_args()
    with open(args.workflow) as f:
        workflow = json.load(f)
    image_node(workflow)
    paths = sorted(os.path.join(args.images, name) for name in os.listdir(args.images)
                   if name.lower().endswith(IMAGE_SUFFIXES))
    if not paths:
        sys.exit(f"images: expected image files ({', '.join(IMAGE_SUFFIXES)}) in {args.images}, found none")
    os.makedirs(args.out, exist_ok=True)
    server = Server(args.server)
    client = uuid.uuid4().hex
    with tqdm(paths, unit="image", desc="seedfinder") as bar:
        for path in bar:
            stem = os.path.splitext(os.path.basename(path))[0]
            bar.set_postfix_str(stem)
            prompt = prompt_for(workflow, server.upload(path), stem)
            try:
                entry = wait(server, queue(server, prompt, client), args.timeout)
            except NodeError as error:
                sys.exit(f"{path}: {error}")
            for written in save_outputs(server, workflow, entry, args.out, stem):
                bar.write(f"  {written}")


if __name__ == "__main__":
    main()
