"""Run an API-format workflow for every image of a set on a Ray cluster, one ComfyUI server per worker, resumable.

usage: python scripts/batch.py WORKFLOW INPUTS OUT [--address ADDRESS] [--server URL ...]
                               [--comfyui PATH [--workers N] [--python PYTHON]] [--retries 2] [--timeout S]
                               [-- ARGS FOR COMFYUI'S main.py]

INPUTS is a folder (its image files), a glob (`frames/*.png`, `**` recurses) or a list file (one path a line,
relative to the list's folder); a URI (`s3://bucket/frames/`) is read through fsspec, which ships with torch (the
filesystem's own fsspec package, e.g. s3fs, must be installed on every node). Each worker is a Ray actor that owns
one ComfyUI server with Seedfinder installed: with --comfyui it starts `main.py` from that folder on the GPU Ray gives
it (`num_gpus=1`; one CPU each where the cluster has no GPU) and restarts it when it dies; with --server it attaches
to a running one (repeatable: one worker each). The workflow needs a LoadImage node (the item goes there) and a
SaveLatent on a Seedfinder invert node (the seed).

For each item OUT gets `<stem>.seed.latent` (ComfyUI's latent format), the other savers' files (e.g.
`<stem>.reconstruction.png`) and a row in OUT/manifest.jsonl: item, status (done, error: a node refused the item, or
failed: its servers died or timed out on every try), error, evaluations and round_trip_estimate (from the Seedfinder
nodes' reports), wall_s, server, worker, node, attempts, outputs. A re-run skips every item whose row is done or error
and tries the failed ones again. An item whose server died or timed out goes to another worker, up to --retries times.
Ctrl-C stops it with the manifest consistent: an item has a row only once its files are written.
"""
import argparse
import glob
import hashlib
import http.client
import json
import os
import posixpath
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque

import headless
from tqdm import tqdm

MANIFEST = "manifest.jsonl"
FINAL = ("done", "error")
"""Statuses a re-run skips: the item's outputs are written, or the item itself is at fault (retrying cannot help)."""
SERVER_FAILURES = (OSError, http.client.HTTPException, RuntimeError)
"""What a dead, hung or unstartable server raises through headless.Server (urllib, http.client, startup)."""


def is_uri(spec: str) -> bool:
    return "://" in spec


def is_glob(spec: str) -> bool:
    return any(char in spec for char in "*?[")


def list_items(spec: str) -> list:
    """The input set's image paths (absolute, or URIs): a folder's image files, a glob's matches, a list file's lines
    (an image file alone is a set of one)."""
    if is_uri(spec):
        return list_uri_items(spec)
    if is_glob(spec):
        return sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(spec), recursive=True)
                      if os.path.isfile(p))
    path = os.path.abspath(os.path.expanduser(spec))
    if os.path.isdir(path):
        return sorted(os.path.join(path, name) for name in os.listdir(path)
                      if name.lower().endswith(headless.IMAGE_SUFFIXES))
    if not os.path.isfile(path):
        raise ValueError(f"inputs: expected a folder, a glob or a list file, got {spec} (not found)")
    if path.lower().endswith(headless.IMAGE_SUFFIXES):
        return [path]
    with open(path) as f:
        lines = [line.strip() for line in f]
    folder = os.path.dirname(path)
    return [line if is_uri(line) else os.path.normpath(os.path.join(folder, os.path.expanduser(line)))
            for line in lines if line and not line.startswith("#")]


def list_uri_items(spec: str) -> list:
    """list_items for a URI, through fsspec."""
    import fsspec
    fs, path = fsspec.core.url_to_fs(spec)
    if is_glob(path):
        found = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isdir(path):
        found = [p for p in fs.ls(path, detail=False) if p.lower().endswith(headless.IMAGE_SUFFIXES)]
    elif fs.isfile(path) and path.lower().endswith(headless.IMAGE_SUFFIXES):
        found = [path]
    elif fs.isfile(path):
        with fs.open(path, "r") as f:
            lines = [line.strip() for line in f]
        return [line if is_uri(line) else fs.unstrip_protocol(posixpath.join(posixpath.dirname(path), line))
                for line in lines if line and not line.startswith("#")]
    else:
        raise ValueError(f"inputs: expected a folder, a glob or a list file, got {spec} (not found)")
    return sorted(fs.unstrip_protocol(p) for p in found)


def read_item(item: str) -> bytes:
    if is_uri(item):
        import fsspec
        with fsspec.open(item, "rb") as f:
            return f.read()
    with open(item, "rb") as f:
        return f.read()


def stem_of(item: str) -> str:
    return os.path.splitext(posixpath.basename(item))[0]


def key_of(item: str) -> str:
    """A short name unique to the item, for the server's copies (uploads, saved files) of different items."""
    return hashlib.sha1(item.encode()).hexdigest()[:12]


def seed_savers(workflow: dict) -> list:
    """The SaveLatent nodes that save a Seedfinder invert node's output (the seed)."""
    inverters = {node_id for node_id, node in workflow.items()
                 if node["class_type"].startswith("Seedfinder") and node["class_type"].endswith("Invert")}
    return [node_id for node_id, node in workflow.items() if node["class_type"] == "SaveLatent"
            and isinstance(node["inputs"].get("samples"), list) and str(node["inputs"]["samples"][0]) in inverters]


def reports(workflow: dict, entry: dict) -> list:
    """The Seedfinder nodes' `ui` reports in a /history record (the invert nodes' and the prompt-aware encode's)."""
    return [output["seedfinder"][0] for node_id, output in entry.get("outputs", {}).items()
            if workflow.get(node_id, {}).get("class_type", "").startswith("Seedfinder") and output.get("seedfinder")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """In the server's process before exec: SIGKILL it when the worker dies (Ray ends actors without cleanup)."""
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Worker:
    """A Ray actor's state: one ComfyUI server (started here and restarted when it fails, or attached to) and the
    items it runs, one at a time."""

    def __init__(self, name: str, workflow: dict, timeout: float, server: str = None, launch: dict = None):
        self.name, self.workflow, self.timeout = name, workflow, timeout
        self.attached, self.launch = server, launch
        self.url, self.process, self.log, self.prompt_id = server, None, None, None
        self.client = uuid.uuid4().hex

    def start(self) -> None:
        """Start main.py on a free port (its own temp folder and database: servers may share a ComfyUI folder) and
        wait until it answers; its url and pid go to <work>/<name>.json."""
        launch = self.launch
        os.makedirs(launch["work"], exist_ok=True)
        port = free_port()
        temp = os.path.join(launch["work"], f"{self.name}.temp")
        command = [launch["python"] or sys.executable, "main.py", "--listen", "127.0.0.1", "--port", str(port),
                   "--disable-auto-launch", "--temp-directory", temp,
                   "--database-url", f"sqlite:///{os.path.join(launch['work'], self.name)}.db", *launch["args"]]
        self.log = open(os.path.join(launch["work"], f"{self.name}.log"), "a")
        self.process = subprocess.Popen(command, cwd=launch["comfyui"], stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True,
                                        preexec_fn=die_with_parent if sys.platform.startswith("linux") else None)
        self.url = f"http://127.0.0.1:{port}"
        with open(os.path.join(launch["work"], f"{self.name}.json"), "w") as f:
            json.dump({"url": self.url, "pid": self.process.pid}, f)
        deadline = time.time() + launch["start_timeout"]
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} at start "
                                   f"(log: {self.log.name})")
            try:
                headless.Server(self.url).json("/system_stats", timeout=2)
                return
            except OSError:
                time.sleep(0.25)
        self.discard()
        raise TimeoutError(f"ComfyUI did not answer within {launch['start_timeout']} s (log: {self.log.name})")

    def discard(self) -> None:
        """Kill a server of ours (the next item starts a new one); on an attached one, take our prompt off its queue
        or interrupt it (the server's other prompts are not ours to stop)."""
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None
            self.log.close()
        elif self.attached and self.prompt_id:
            try:
                headless.Server(self.url).json("/queue", {"delete": [self.prompt_id]}, timeout=10)
                headless.Server(self.url).json("/interrupt", {"prompt_id": self.prompt_id}, timeout=10)
            except OSError:
                pass  # a server that is down has nothing to interrupt

    def ready(self) -> headless.Server:
        if self.launch and (self.process is None or self.process.poll() is not None):
            self.discard()
            self.start()
        return headless.Server(self.url)

    def run(self, item: str) -> dict:
        """One item: a manifest row (status done, error or retry) and, when done, its output files' contents."""
        started = time.time()
        row = {"item": item, "worker": self.name, "node": socket.gethostname()}
        try:
            content = read_item(item)
        except OSError as error:
            return {**row, "status": "error", "error": f"inputs: cannot read {item}: {error}",
                    "wall_s": time.time() - started}
        try:
            server = self.ready()
            started = time.time()  # the item's own time: a server's start is not counted
            row["server"] = self.url
            stem, key = stem_of(item), key_of(item)
            # a fresh name on every try: a prompt the server has run before comes from its cache without the
            # invert node's report
            name = server.upload(item, name=f"{key}_{uuid.uuid4().hex[:8]}_{posixpath.basename(item)}",
                                 content=content)
            prompt = headless.prompt_for(self.workflow, name, f"{key}_{stem}", folder="seedfinder_batch")
            self.prompt_id = headless.queue(server, prompt, self.client)
            entry = headless.wait(server, self.prompt_id, self.timeout)
            files = dict(headless.outputs(server, self.workflow, entry, stem))
        except headless.NodeError as error:
            return {**row, "status": "error", "error": str(error).strip(), "wall_s": time.time() - started}
        except SERVER_FAILURES as error:
            self.discard()
            return {**row, "status": "retry", "error": f"{type(error).__name__}: {error}",
                    "wall_s": time.time() - started}
        found = reports(self.workflow, entry)
        # a prompt-aware encode reports no estimate, RF-Inversion and FireFlow report None
        evaluations = [r["evaluations"] for r in found if r.get("evaluations") is not None]
        estimates = [r["round_trip_estimate"] for r in found if r.get("round_trip_estimate") is not None]
        return {**row, "status": "done", "error": None, "evaluations": sum(evaluations) if evaluations else None,
                "round_trip_estimate": max(estimates) if estimates else None,
                "wall_s": time.time() - started, "files": files}

    def stop(self) -> None:
        if self.process is not None:
            self.discard()


class Manifest:
    """OUT/manifest.jsonl: one JSON row per finished try of an item, appended whole and synced; the last row of an
    item says where it stands. A line cut short (the machine died mid-write) is ignored."""

    def __init__(self, out: str):
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


def record(manifest: Manifest, out: str, result: dict, attempts: int) -> dict:
    """Write a finished item's files, then its row (so a row always means its files are there)."""
    files = result.pop("files", {})
    for name, content in files.items():
        write_atomically(os.path.join(out, name), content)
    row = {"item": result["item"], "stem": stem_of(result["item"]), "status": result["status"],
           "error": result.get("error"), "evaluations": result.get("evaluations"),
           "round_trip_estimate": result.get("round_trip_estimate"), "wall_s": round(result["wall_s"], 3),
           "server": result.get("server"), "worker": result["worker"], "node": result["node"], "attempts": attempts,
           "outputs": sorted(files), "finished_at": time.time()}
    manifest.append(row)
    return row


def next_item(pending: deque, worker: str, avoid: dict, workers: int):
    """The first pending item this worker may take: one whose earlier tries were on other workers (unless every
    worker has failed it)."""
    for item in pending:
        if worker not in avoid.get(item, ()) or len(avoid[item]) >= workers:
            pending.remove(item)
            return item
    return None


def start_workers(ray, args, workflow: dict) -> list:
    """(Ray actor, name): one per --server, and --workers that start ComfyUI from --comfyui (a GPU each, else a
    CPU). Ray restarts an actor that dies (a new server with it) up to 3 times."""
    gpus = ray.cluster_resources().get("GPU", 0)
    actor = ray.remote(Worker)
    workers = [(actor.options(num_cpus=0, max_restarts=3).remote(f"server-{index}", workflow, args.timeout,
                                                                  server=url), f"server-{index}")
               for index, url in enumerate(args.server)]
    if args.comfyui:
        count = args.workers or max(1, int(gpus))
        resources = {"num_gpus": 1} if gpus else {"num_cpus": 1}
        available = gpus if gpus else ray.cluster_resources().get("CPU", 0)
        if count > available:
            sys.exit(f"--workers {count}: each worker takes one {'GPU' if gpus else 'CPU'}, and the cluster has "
                     f"{available:g}")
        launch = {"comfyui": args.comfyui, "python": args.python, "args": args.comfy_args, "work": args.work,
                  "start_timeout": args.start_timeout}
        workers += [(actor.options(**resources, max_restarts=3).remote(f"worker-{index}", workflow, args.timeout,
                                                                       launch=launch), f"worker-{index}")
                    for index in range(count)]
    return workers


def run(args, workflow: dict, todo: list, manifest: Manifest) -> Counter:
    """Hand the items to the workers, one at a time each, retry server failures elsewhere, record every result."""
    import ray
    ray.init(address=args.address, runtime_env={"working_dir": os.path.dirname(os.path.abspath(__file__))},
             **({} if args.address else {"include_dashboard": False}), log_to_driver=False)
    counts, attempts, avoid = Counter(), Counter(), {}
    named = start_workers(ray, args, workflow)
    workers, names = [worker for worker, _ in named], dict(named)
    pending, running = deque(todo), {}
    idle = list(workers)
    try:
        with tqdm(total=len(todo), unit="item", desc="seedfinder batch") as bar:
            while pending or running:
                for worker in list(idle):
                    item = next_item(pending, names[worker], avoid, len(workers))
                    if item is not None:
                        idle.remove(worker)
                        running[worker.run.remote(item)] = (worker, item)
                ready = []
                while not ready:  # a bounded wait, so that Ctrl-C is handled while every worker is busy
                    ready, _ = ray.wait(list(running), num_returns=1, timeout=0.2)
                [ref] = ready
                worker, item = running.pop(ref)
                idle.append(worker)
                attempts[item] += 1
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as error:
                    result = {"item": item, "status": "retry", "error": f"the worker died: {error}", "wall_s": 0.0,
                              "worker": names[worker], "node": None}
                if result["status"] == "retry":
                    if attempts[item] <= args.retries:
                        avoid.setdefault(item, set()).add(names[worker])
                        pending.appendleft(item)
                        bar.write(f"retrying {item} on another worker: {result['error']}")
                        continue
                    result["status"] = "failed"
                row = record(manifest, args.out, result, attempts[item])
                counts[row["status"]] += 1
                if row["status"] != "done":
                    bar.write(f"{row['status']}: {item}: {row['error']}")
                bar.update()
    except KeyboardInterrupt:
        counts["interrupted"] = len(pending) + len(running)
    finally:
        # the idle workers stop their servers; a busy one (Ctrl-C) ends with the cluster, its server with it
        try:
            ray.get([worker.stop.remote() for worker in idle], timeout=30)
        except (ray.exceptions.RayError, TimeoutError) as error:
            print(f"seedfinder batch: a worker did not stop cleanly: {error}", file=sys.stderr)
        ray.shutdown()
    return counts


def throughput(rows: list) -> float:
    """Items per second over the time the items were being processed (first start to last finish)."""
    if not rows:
        return 0.0
    began = min(row["finished_at"] - row["wall_s"] for row in rows)
    return len(rows) / max(max(row["finished_at"] for row in rows) - began, 1e-9)


def parse(argv: list):
    own, comfy_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflow", help="API-format workflow (LoadImage, a Seedfinder invert node, its SaveLatent)")
    parser.add_argument("inputs", help="folder, glob or list file of images (local paths or fsspec URIs)")
    parser.add_argument("out", help="local folder for the seeds, the other outputs and manifest.jsonl")
    parser.add_argument("--address", help="Ray cluster to join (e.g. auto, or ray://head:10001); default: a local one")
    parser.add_argument("--server", action="append", default=[], help="a running ComfyUI server to use (repeatable)")
    parser.add_argument("--comfyui", help="ComfyUI folder (with Seedfinder in custom_nodes/) each worker starts")
    parser.add_argument("--workers", type=int, help="servers to start from --comfyui (default: one per GPU, else 1)")
    parser.add_argument("--python", help="the Python that runs --comfyui's main.py (default: the workers' own)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "seedfinder_batch"),
                        help="folder on each node for the started servers' logs, temp files and pid files")
    parser.add_argument("--retries", type=int, default=2, help="tries on other workers after a server failure")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds an item may take on its server")
    parser.add_argument("--start-timeout", type=float, default=600, help="seconds a started server may take to answer")
    args = parser.parse_args(own)
    args.comfy_args = comfy_args
    if not args.server and not args.comfyui:
        parser.error("expected --server URL (a running ComfyUI) or --comfyui PATH (start one per worker)")
    if args.comfyui:
        args.comfyui = os.path.abspath(args.comfyui)
        if not os.path.exists(os.path.join(args.comfyui, "main.py")):
            parser.error(f"--comfyui: expected a ComfyUI folder with main.py, got {args.comfyui}")
    args.out, args.work = os.path.abspath(args.out), os.path.abspath(args.work)
    return args


def main(argv: list = None) -> None:
    args = parse(sys.argv[1:] if argv is None else argv)
    with open(args.workflow) as f:
        workflow = json.load(f)
    headless.image_node(workflow)
    if not seed_savers(workflow):
        sys.exit("--workflow: expected a SaveLatent that saves a Seedfinder invert node's output (the seed), "
                 "found none")
    try:
        items = list_items(args.inputs)
    except ValueError as error:
        sys.exit(str(error))
    if not items:
        sys.exit(f"inputs: expected images in {args.inputs}, found none")
    stems = Counter(stem_of(item) for item in items)
    if max(stems.values()) > 1:
        shared = [item for item in items if stems[stem_of(item)] > 1]
        sys.exit(f"inputs: outputs are named by the item's stem, and these share one: {', '.join(shared[:6])}")
    os.makedirs(args.out, exist_ok=True)
    manifest = Manifest(args.out)
    if manifest.unreadable:
        print(f"seedfinder batch: {manifest.unreadable} line(s) of {manifest.path} cut short (a crash mid-write) are "
              "ignored: their items run again", file=sys.stderr)
    todo = [item for item in items if not manifest.finished(item)]
    skipped = len(items) - len(todo)
    started = time.time()
    try:
        counts = run(args, workflow, todo, manifest) if todo else Counter()
    finally:
        manifest.close()
    rows = [manifest.rows[item] for item in todo if manifest.rows.get(item, {}).get("finished_at", 0) >= started]
    done = [row for row in rows if row["status"] == "done"]
    print(f"seedfinder batch: {len(items)} items: {counts['done']} done, {counts['error']} error, "
          f"{counts['failed']} failed, {skipped} skipped (already in the manifest)"
          + (f", {counts['interrupted']} interrupted (run again to finish them)" if counts["interrupted"] else "")
          + f"; {throughput(done):.3f} items/s on {len(Counter(row['worker'] for row in done))} worker(s); "
          f"manifest: {manifest.path}")
    if counts["interrupted"]:
        sys.exit(130)


if __name__ == "__main__":
    main()
