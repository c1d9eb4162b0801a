"""Run an API-format workflow for every image of a set on a Ray cluster, one ComfyUI server per worker, resumable.

usage: python scripts/batch.py WORKFLOW INPUTS OUT [--address ADDRESS | --listen-all] [--server URL ...]
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
Ctrl-C stops it with the manifest consistent: an item has a row only once its files are written. On the servers the
files get names of their own (safe for any item's name); OUT names them by the item's stem, so items that share a stem
are refused.

Without --address the command starts a Ray cluster of this machine for the run, listening on 127.0.0.1 only
(--listen-all: on every interface).

Exit status, from every item's row (this run's or an earlier one's): 0 when every item is done; 3 when some are error
(and none failed); 4 when some failed (a re-run tries them again); 130 on Ctrl-C; 1 for a mistake in the arguments,
said in one line naming it. The summary says which.
"""
import argparse
import glob
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

RAY_LOOPBACK_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Ray's switch for a cluster of one machine: at 0 every Ray process of it listens on 127.0.0.1 only (Ray's default on
Windows and macOS; on Linux they listen on every interface)."""


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
        return headless.folder_images(path)
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


def seed_savers(workflow: dict) -> list:
    """The SaveLatent nodes that save a Seedfinder invert node's output (the seed)."""
    inverters = {node_id for node_id, node in workflow.items()
                 if node["class_type"].startswith("Seedfinder") and node["class_type"].endswith("Invert")}
    return [node_id for node_id, node in workflow.items() if node["class_type"] == "SaveLatent"
            and isinstance(node["inputs"].get("samples"), list) and str(node["inputs"]["samples"][0]) in inverters]


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
            headless.discard(headless.Server(self.url), self.prompt_id)

    def ready(self) -> headless.Server:
        if self.launch and (self.process is None or self.process.poll() is not None):
            self.discard()
            self.start()
        return headless.Server(self.url)

    def run(self, item: str) -> dict:
        """One item: a manifest row (status done, error or retry) and, when done, its output files' contents."""
        row = {"item": item, "worker": self.name, "node": socket.gethostname()}
        try:
            content = read_item(item)
        except OSError as error:
            return {**row, "status": "error", "error": f"inputs: cannot read {item}: {error}", "wall_s": 0.0}
        started = time.time()
        try:
            server = self.ready()
        except headless.SERVER_FAILURES as error:
            self.discard()
            return {**row, "status": "retry", "error": f"{type(error).__name__}: {error}",
                    "wall_s": time.time() - started}
        result = headless.try_item(server, self.workflow, item, content, self.client, self.timeout, "seedfinder_batch",
                                   queued=self.queued)
        if result["status"] == "retry":
            self.discard()
        self.prompt_id = None
        return {**row, "server": self.url, **result}

    def queued(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id

    def stop(self) -> None:
        if self.process is not None:
            self.discard()


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


def run(args, workflow: dict, todo: list, manifest: headless.Manifest) -> Counter:
    """Hand the items to the workers, one at a time each, retry server failures elsewhere, record every result."""
    if not args.address:
        os.environ[RAY_LOOPBACK_SWITCH] = "1" if args.listen_all else "0"  # read when ray is imported
    import ray
    ray.init(address=args.address or "local", log_to_driver=False,
             runtime_env={"working_dir": os.path.dirname(os.path.abspath(__file__))},
             **({} if args.address else {"include_dashboard": False}))
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
                row = headless.record(manifest, args.out, result, attempts[item])
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
    parser.add_argument("--address", help="Ray cluster to join (e.g. auto, or ray://head:10001); default: a new one "
                        "on this machine, listening on 127.0.0.1 only")
    parser.add_argument("--listen-all", action="store_true", help="the cluster started without --address listens on "
                        "every interface (other machines can reach its ports) instead of 127.0.0.1 only")
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
    try:
        workflow = headless.load_workflow(args.workflow, "workflow")
        if not seed_savers(workflow):
            raise ValueError(f"workflow: expected a SaveLatent that saves a Seedfinder invert node's output (the "
                             f"seed) in {args.workflow}, found none")
        items = list_items(args.inputs)
        if not items:
            raise ValueError(f"inputs: expected images in {args.inputs}, found none")
        headless.check_stems(items, "inputs")
    except ValueError as error:
        sys.exit(str(error))
    os.makedirs(args.out, exist_ok=True)
    manifest = headless.Manifest(args.out, "seedfinder batch")
    todo = [item for item in items if not manifest.finished(item)]
    started = time.time()
    try:
        counts = run(args, workflow, todo, manifest) if todo else Counter()
    finally:
        manifest.close()
    rows = [manifest.rows[item] for item in todo if manifest.rows.get(item, {}).get("finished_at", 0) >= started]
    done = [row for row in rows if row["status"] == "done"]
    status, meaning = headless.exit_status(counts, manifest, items)
    print(f"seedfinder batch: {len(items)} items: {headless.tally(counts, len(items) - len(todo))}; "
          f"{throughput(done):.3f} items/s on {len(Counter(row['worker'] for row in done))} worker(s); {meaning}; "
          f"manifest: {manifest.path}")
    sys.exit(status)


if __name__ == "__main__":
    main()
