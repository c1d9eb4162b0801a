"""Run an API-format workflow on a folder of images against a running ComfyUI server, one prompt per image.

usage: python scripts/headless.py IMAGES_DIR OUT_DIR [--workflow example_workflows/api/reconstruct_fixed_point.json]
                                  [--server http://127.0.0.1:8188] [--timeout 3600]

Each image is uploaded, put into the workflow's first LoadImage node, queued, and waited for, with a progress bar
over the images. Every SaveLatent and SaveImage output is downloaded into OUT_DIR named after the image:
`cat.seed.latent` (the inverted seed in ComfyUI's latent format, safetensors) beside `cat.reconstruction.png` (on the
server the files get a name of their own, safe for any image name). Images that share a name but for the extension
(`cat.png`, `cat.PNG`) are refused, since their outputs would overwrite each other.

OUT_DIR/manifest.jsonl gets a row per image, as scripts/batch.py writes it: status done, error (a node refused the
image: the run goes on to the next) or failed (it ran past --timeout, or the server answered with an error). A
re-run skips the images whose row is done or error and tries the failed ones again. An image past --timeout, and on
Ctrl-C the running one, is taken off the server's queue or interrupted.

Exit status, from every image's row (this run's or an earlier one's): 0 when every image is done; 3 when some are
error (and none failed); 4 when some failed or were not tried (a re-run tries them again); 130 on Ctrl-C; 1 for a
mistake in the arguments or a server that cannot be reached, said in one line naming the argument. Needs only the
standard library and tqdm (which every ComfyUI install has).
"""
import argparse
import copy
import hashlib
import http.client
import json
import os
import posixpath
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter

from tqdm import tqdm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_WORKFLOW = os.path.join(REPO, "example_workflows", "api", "reconstruct_fixed_point.json")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SAVERS = {"SaveLatent": "latents", "SaveImage": "images"}
MANIFEST = "manifest.jsonl"


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


SERVER_FAILURES = (OSError, http.client.HTTPException, RuntimeError)
"""What a dead, hung or unstartable server raises through Server (urllib, http.client, a server's start)."""
FINAL = ("done", "error")
"""Statuses a re-run skips: the item's outputs are written, or the item itself is at fault (retrying cannot help)."""
EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED = 3, 4, 130
"""Exit statuses when not every item is done: some ended error (none failed), some failed, Ctrl-C."""


def load_workflow(path: str, argument: str = "--workflow") -> dict:
    """The API-format workflow at `path`, refused in one line naming `argument` when it cannot be used."""
    try:
        with open(path) as f:
            workflow = json.load(f)
    except OSError as error:
        raise ValueError(f"{argument}: cannot read {path} ({error.strerror})") from None
    except ValueError as error:
        raise ValueError(f"{argument}: expected a workflow in JSON, {path} is not ({error}); save it from ComfyUI "
                         f"with Export (API)") from None
    if isinstance(workflow, dict) and "nodes" in workflow and "links" in workflow:
        raise ValueError(f"{argument}: {path} is a UI workflow (nodes and links); save it from ComfyUI with Export "
                         f"(API)")
    if not isinstance(workflow, dict) or not all(isinstance(node, dict) and "class_type" in node
                                                 for node in workflow.values()):
        raise ValueError(f"{argument}: expected an API-format workflow (node id → class_type and inputs) in {path}; "
                         f"save it from ComfyUI with Export (API)")
    if image_node(workflow) is None:
        raise ValueError(f"{argument}: expected a LoadImage node (each image goes there) in {path}, found none; add "
                         f"a Load Image node feeding the VAE Encode and export the workflow again")
    return workflow


def image_node(workflow: dict):
    """The id of the workflow's first LoadImage node (None without one)."""
    return next((node_id for node_id, node in workflow.items() if node["class_type"] == "LoadImage"), None)


def check_server(server: Server) -> None:
    """Refuse a URL where no ComfyUI server answers, in one line naming --server."""
    remedy = "start ComfyUI, or pass the URL it prints at start with --server"
    try:
        stats = server.json("/system_stats", timeout=10)
    except urllib.error.HTTPError as error:
        stats = f"HTTP {error.code}"
    except (OSError, http.client.HTTPException) as error:
        raise ValueError(f"--server: no server answers at {server.url} ({getattr(error, 'reason', error)}); "
                         f"{remedy}") from None
    except ValueError:
        stats = "an answer that is not JSON"
    if not isinstance(stats, dict) or "system" not in stats:
        got = stats if isinstance(stats, str) else "JSON without 'system'"
        raise ValueError(f"--server: {server.url} is not a ComfyUI server (/system_stats gave {got}); {remedy}")


def stem_of(item: str) -> str:
    return os.path.splitext(posixpath.basename(item))[0]


def key_of(item: str) -> str:
    """A short name unique to the item, for the server's copies (uploads, saved files) of different items."""
    return hashlib.sha1(item.encode()).hexdigest()[:12]


def server_safe(text: str) -> str:
    """`text` with every run of characters other than letters, digits, '_' and '-' made one '_': ComfyUI's /view
    refuses a file name holding '..' (and a '/' would make a subfolder)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)[:48]


def server_prefix(item: str) -> str:
    """The item's name on the server: its key and its stem made safe (the local files keep the stem itself)."""
    return f"{key_of(item)}_{server_safe(stem_of(item))}"


def check_stems(items: list, argument: str) -> None:
    """Refuse items whose outputs would overwrite each other's: the same stem (letter case aside: `cat.png`,
    `cat.PNG`)."""
    stems = Counter(stem_of(item).casefold() for item in items)
    shared = [item for item in items if stems[stem_of(item).casefold()] > 1]
    if shared:
        raise ValueError(f"{argument}: outputs are named by the image's name without its extension, and these share "
                         f"one: {', '.join(shared[:6])}; rename them or run them separately")


def folder_images(folder: str) -> list:
    """A folder's image files (by extension), sorted."""
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.lower().endswith(IMAGE_SUFFIXES))


def prompt_for(workflow: dict, image_name: str, prefix: str, folder: str) -> dict:
    """The workflow with this image loaded and every saver writing under <folder>/<prefix>."""
    prompt = copy.deepcopy(workflow)
    prompt[image_node(prompt)]["inputs"]["image"] = image_name
    for node_id, node in prompt.items():
        if node["class_type"] in SAVERS:
            node["inputs"]["filename_prefix"] = f"{folder}/{prefix}.{server_safe(saver_kind(node, node_id))}"
    return prompt


def saver_kind(node: dict, node_id: str) -> str:
    """What a saver saves, from its filename_prefix (`seedfinder/seed` → `seed`): the middle of its files' names."""
    return os.path.basename(node["inputs"].get("filename_prefix", node_id))


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
    raise TimeoutError(f"prompt {prompt_id} did not finish within --timeout {timeout:g} s (taken off the server); "
                       f"raise --timeout")


def discard(server: Server, prompt_id: str) -> None:
    """Take our prompt off the server's queue, or interrupt it if it runs (the server's other prompts are not ours to
    stop)."""
    try:
        server.json("/queue", {"delete": [prompt_id]}, timeout=10)
        server.json("/interrupt", {"prompt_id": prompt_id}, timeout=10)
    except SERVER_FAILURES:
        pass  # a server that is down has nothing to interrupt


def outputs(server: Server, workflow: dict, entry: dict, stem: str):
    """Each saver's files, downloaded: (<stem>.<prefix name>[_k].<ext>, content)."""
    for node_id, saved in entry.get("outputs", {}).items():
        node = workflow.get(node_id, {})
        if node.get("class_type") not in SAVERS:
            continue
        kind = saver_kind(node, node_id)
        records = saved.get(SAVERS[node["class_type"]], [])
        for index, record in enumerate(records):
            suffix = os.path.splitext(record["filename"])[1]
            yield f"{stem}.{kind}{'' if len(records) == 1 else f'_{index}'}{suffix}", server.download(record)


def reports(workflow: dict, entry: dict) -> list:
    """The Seedfinder nodes' `ui` reports in a /history record (the invert nodes' and the prompt-aware encode's)."""
    return [output["seedfinder"][0] for node_id, output in entry.get("outputs", {}).items()
            if workflow.get(node_id, {}).get("class_type", "").startswith("Seedfinder") and output.get("seedfinder")]


def try_item(server: Server, workflow: dict, item: str, content: bytes, client: str, timeout: float, folder: str,
             queued=lambda prompt_id: None) -> dict:
    """One item on `server`: status done with its output files' contents and the Seedfinder nodes' figures, error
    (the item's fault: a node or the server refused it) or retry (the server died, hung or failed), with the error.
    `queued` learns the prompt id (to discard it on a timeout or Ctrl-C)."""
    started = time.time()
    try:
        extension = server_safe(os.path.splitext(posixpath.basename(item))[1][1:])
        # a fresh name on every try: a prompt the server has run before comes from its cache without the invert
        # node's report
        name = server.upload(item, name=f"{server_prefix(item)}_{uuid.uuid4().hex[:8]}.{extension}", content=content)
        prompt_id = queue(server, prompt_for(workflow, name, server_prefix(item), folder), client)
        queued(prompt_id)
        entry = wait(server, prompt_id, timeout)
        files = dict(outputs(server, workflow, entry, stem_of(item)))
    except NodeError as error:
        return {"status": "error", "error": str(error).strip(), "wall_s": time.time() - started}
    except urllib.error.HTTPError as error:
        if error.code >= 500:  # the server failed, not the item
            return {"status": "retry", "error": f"HTTPError: {error}", "wall_s": time.time() - started}
        return {"status": "error", "error": f"the server refused a request for this item: HTTP {error.code} at "
                f"{urllib.parse.urlsplit(error.url).path}: {error.read().decode(errors='replace')[:500]}",
                "wall_s": time.time() - started}
    except SERVER_FAILURES as error:
        return {"status": "retry", "error": f"{type(error).__name__}: {error}", "wall_s": time.time() - started}
    found = reports(workflow, entry)
    # a prompt-aware encode reports no estimate, RF-Inversion and FireFlow report None
    evaluations = [r["evaluations"] for r in found if r.get("evaluations") is not None]
    estimates = [r["round_trip_estimate"] for r in found if r.get("round_trip_estimate") is not None]
    return {"status": "done", "error": None, "evaluations": sum(evaluations) if evaluations else None,
            "round_trip_estimate": max(estimates) if estimates else None, "wall_s": time.time() - started,
            "files": files}


class Manifest:
    """OUT/manifest.jsonl: one JSON row per finished try of an item, appended whole and synced; the last row of an
    item says where it stands. A line cut short (the machine died mid-write) is ignored, and `command` says so."""

    def __init__(self, out: str, command: str):
        self.path = os.path.join(out, MANIFEST)
        self.rows, self.unreadable = {}, 0
        if os.path.exists(self.path):
            with open(self.path) as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.rows[row["item"]] = row
                    except (ValueError, KeyError, TypeError):
                        self.unreadable += 1
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if os.fstat(self.fd).st_size and not self._ends_with_newline():
            os.write(self.fd, b"\n")
        if self.unreadable:
            print(f"{command}: {self.unreadable} line(s) of {self.path} cut short (a crash mid-write) are ignored: "
                  f"their items run again", file=sys.stderr)

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def finished(self, item: str) -> bool:
        return self.rows.get(item, {}).get("status") in FINAL

    def append(self, row: dict) -> None:
        os.write(self.fd, (json.dumps(row) + "\n").encode())
        os.fsync(self.fd)
        self.rows[row["item"]] = row

    def close(self) -> None:
        os.close(self.fd)


def write_atomically(path: str, content: bytes) -> None:
    """A file is either whole or absent, even under Ctrl-C."""
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        f.write(content)
    os.replace(partial, path)


def record(manifest: Manifest, out: str, result: dict, attempts: int = 1) -> dict:
    """Write a finished item's files, then its row (so a row always means its files are there)."""
    files = result.pop("files", {})
    for name, content in files.items():
        write_atomically(os.path.join(out, name), content)
    row = {"item": result["item"], "stem": stem_of(result["item"]), "status": result["status"],
           "error": result.get("error"), "evaluations": result.get("evaluations"),
           "round_trip_estimate": result.get("round_trip_estimate"), "wall_s": round(result["wall_s"], 3),
           "server": result.get("server"), "worker": result.get("worker"), "node": result.get("node"),
           "attempts": attempts, "outputs": sorted(files), "finished_at": time.time()}
    manifest.append(row)
    return row


def tally(counts: Counter, skipped: int) -> str:
    """The summary's counts: done, error, failed, skipped (and interrupted, or not tried)."""
    return (f"{counts['done']} done, {counts['error']} error, {counts['failed']} failed, {skipped} skipped (already in "
            f"the manifest)" + (f", {counts['interrupted']} interrupted (run again to finish them)"
                                if counts["interrupted"] else "")
            + (f", {counts['untried']} not tried (the server stopped answering; run again to finish them)"
               if counts["untried"] else ""))


def exit_status(counts: Counter, manifest: Manifest, items: list) -> tuple:
    """(exit status, what it means) for the set after a run (`counts`): 0 only when every item's row says done, in
    this run or an earlier one (a re-run skips error rows, and they still stand)."""
    standing = Counter(manifest.rows.get(item, {}).get("status", "failed") for item in items)
    if counts["interrupted"]:
        return EXIT_INTERRUPTED, f"exit {EXIT_INTERRUPTED}: interrupted"
    if standing["failed"]:
        return EXIT_FAILED, (f"exit {EXIT_FAILED}: {standing['failed']} item(s) not done (failed: server failures or "
                             f"timeouts); run again to retry them")
    if standing["error"]:
        return EXIT_ERROR, (f"exit {EXIT_ERROR}: {standing['error']} item(s) ended error (refused by a node; their "
                            f"manifest rows say why)")
    return 0, "exit 0: every item done"


def main(argv: list = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", help="folder of images")
    parser.add_argument("out", help="folder for the seeds (.latent), the reconstructions and manifest.jsonl")
    parser.add_argument("--workflow", default=DEFAULT_WORKFLOW, help="API-format workflow with a LoadImage node")
    parser.add_argument("--server", default="http://127.0.0.1:8188", help="URL of a running ComfyUI server")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per image")
    args = parser.parse_args(argv)
    server = Server(args.server)
    try:
        workflow = load_workflow(args.workflow)
        paths = image_paths(args.images)
        check_stems(paths, "images")
        check_server(server)
    except ValueError as error:
        sys.exit(str(error))
    os.makedirs(args.out, exist_ok=True)
    manifest = Manifest(args.out, "seedfinder headless")
    todo = [path for path in paths if not manifest.finished(path)]
    try:
        counts = run(server, workflow, todo, manifest, args.out, args.timeout)
    finally:
        manifest.close()
    status, meaning = exit_status(counts, manifest, paths)
    print(f"seedfinder headless: {len(paths)} images: {tally(counts, len(paths) - len(todo))}; {meaning}; manifest: "
          f"{manifest.path}", file=sys.stderr)
    sys.exit(status)


def image_paths(folder: str) -> list:
    """The folder's images (absolute paths, the manifest's keys), refused in one line naming `images`."""
    if not os.path.isdir(folder):
        raise ValueError(f"images: expected a folder of images, got {folder} "
                         f"({'a file' if os.path.exists(folder) else 'not found'})")
    paths = folder_images(os.path.abspath(folder))
    if not paths:
        raise ValueError(f"images: expected image files ({', '.join(IMAGE_SUFFIXES)}) in {folder}, found none")
    return paths


def run(server: Server, workflow: dict, todo: list, manifest: Manifest, out: str, timeout: float) -> Counter:
    """Each image in turn, each recorded; a failed one is taken off the server, a server that stops answering ends the
    run, and so does Ctrl-C (taking the running prompt off the server)."""
    counts, client, running = Counter(), uuid.uuid4().hex, {}
    try:
        with tqdm(todo, unit="image", desc="seedfinder") as bar:
            for path in bar:
                bar.set_postfix_str(stem_of(path))
                row = record(manifest, out, {**run_image(server, workflow, path, client, timeout, running),
                                             "item": path, "server": server.url})
                running.clear()
                counts[row["status"]] += 1
                for name in row["outputs"]:
                    bar.write(f"  {os.path.join(out, name)}")
                if row["status"] != "done":
                    bar.write(f"{row['status']}: {path}: {row['error']}")
                if row["status"] == "failed" and not answers(server):
                    counts["untried"] = len(todo) - counts.total()
                    return counts
    except KeyboardInterrupt:
        if running.get("prompt"):
            discard(server, running["prompt"])
        counts["interrupted"] = len(todo) - counts.total()
    return counts


def run_image(server: Server, workflow: dict, path: str, client: str, timeout: float, running: dict) -> dict:
    """try_item on one image file (`running` learns its prompt id); a failure is discarded on the server."""
    try:
        with open(path, "rb") as f:
            content = f.read()
    except OSError as error:
        return {"status": "error", "error": f"images: cannot read {path}: {error.strerror}", "wall_s": 0.0}
    result = try_item(server, workflow, path, content, client, timeout, "seedfinder_headless",
                      queued=lambda prompt_id: running.update(prompt=prompt_id))
    if result["status"] == "retry":
        if running.get("prompt"):
            discard(server, running["prompt"])
        result["status"] = "failed"
    return result


def answers(server: Server) -> bool:
    """Whether the server still answers; says why not (the run ends) when it does not."""
    try:
        check_server(server)
        return True
    except ValueError as error:
        tqdm.write(f"{error}; the images not yet tried are left for the next run", file=sys.stderr)
        return False


if __name__ == "__main__":
    main()
