"""A real ComfyUI server for the host tests: start main.py on 127.0.0.1, post API-format graphs through
scripts/headless.py's client (stdlib only).

Layout under one scratch folder: comfyui/ (a copy of the test host's tree), base/ (--base-directory with
custom_nodes/ holding a link to this pack, models/, input/, output/). The official frontend package serves the UI.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import uuid

from scripts.headless import Server  # the pack's own HTTP client: the tests drive the server as users' scripts do

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOST_DIR = os.environ.get("SEEDFINDER_HOST", os.path.join(REPO, ".host"))
PYTHON = os.path.join(HOST_DIR, "venv", "bin", "python")
COMFY_TREE = os.path.join(HOST_DIR, "comfyui")
STUBS = os.path.join(HOST_DIR, "stubs")


class PromptRejected(Exception):
    """/prompt answered 400: the graph failed ComfyUI's validation."""

    def __init__(self, code, body):
        super().__init__(f"HTTP {code}: {body[:3000]}")
        self.code, self.body = code, body


class PromptFailed(Exception):
    """The prompt ran and a node raised."""

    def __init__(self, prompt_id, messages):
        errors = [m[1] for m in (messages or []) if m and m[0] == "execution_error"]
        self.kinds = [m[0] for m in (messages or []) if m]
        self.message = errors[0].get("exception_message", "") if errors else ""
        super().__init__(f"prompt {prompt_id} failed: {json.dumps(errors or messages)[:3000]}")


def default_ctrl_c() -> None:
    """In a child process before it starts: Ctrl-C (SIGINT) stops it as in a terminal, also where the suite runs as a
    background job, which a shell starts with SIGINT ignored and a child inherits that (a server would then sit out
    its whole stop timeout before it is killed)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ComfyHost:
    def __init__(self, work: str, extra_args=()):
        self.work = work
        self.root = os.path.join(work, "comfyui")
        shutil.copytree(COMFY_TREE, self.root, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
        self.base = os.path.join(work, "base")
        for folder in ("custom_nodes", "models", "input", "output", "temp", "user"):
            os.makedirs(os.path.join(self.base, folder), exist_ok=True)
        os.symlink(REPO, os.path.join(self.base, "custom_nodes", "seedfinder"))
        os.symlink(os.path.join(REPO, "tests", "fixture_nodes", "seedfinder_testkit"),
                   os.path.join(self.base, "custom_nodes", "seedfinder_testkit"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = Server(self.url)
        self.extra_args = list(extra_args)
        self.log_path = os.path.join(work, "server.log")
        self.proc = None

    def start(self, timeout: float = 180.0) -> "ComfyHost":
        env = dict(os.environ, PYTHONPATH=STUBS, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", DO_NOT_TRACK="1")
        command = [PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--base-directory", self.base, "--disable-auto-launch",
                   "--disable-api-nodes", "--log-stdout", "--database-url", "sqlite:///:memory:", *self.extra_args]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True, preexec_fn=default_ctrl_c)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.get("/system_stats", timeout=2)
                return self
            except OSError:
                time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"ComfyUI was not ready after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, lines: int = 80) -> str:
        try:
            with open(self.log_path) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def get(self, path: str, timeout: float = 30):
        return self.client.json(path, timeout=timeout)

    def post(self, path: str, payload: dict, timeout: float = 30):
        try:
            return self.client.json(path, payload, timeout=timeout)
        except urllib.error.HTTPError as error:
            raise PromptRejected(error.code, error.read().decode()) from None

    def queue(self, graph: dict) -> str:
        answer = self.post("/prompt", {"prompt": graph, "client_id": uuid.uuid4().hex})
        if answer.get("node_errors"):  # some outputs failed validation: ComfyUI queued the rest; stop it
            self.cancel(answer["prompt_id"])
            raise PromptRejected(200, json.dumps(answer["node_errors"]))
        return answer["prompt_id"]

    def cancel(self, prompt_id: str, timeout: float = 60) -> None:
        """Take a prompt off the queue or interrupt it, and wait until the server is idle again."""
        self.post("/queue", {"delete": [prompt_id]})
        self.post("/interrupt", {"prompt_id": prompt_id})
        deadline = time.time() + timeout
        while time.time() < deadline:
            queue = self.get("/queue")
            if not any(item[1] == prompt_id for item in queue["queue_running"] + queue["queue_pending"]):
                return
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} still queued {timeout} s after it was cancelled")

    def wait(self, prompt_id: str, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history:
                entry = history[prompt_id]
                status = entry.get("status", {})
                if status.get("status_str") == "error":
                    raise PromptFailed(prompt_id, status.get("messages"))
                if status.get("completed") or status.get("status_str") == "success":
                    return entry
            if self.proc.poll() is not None:
                raise RuntimeError(f"ComfyUI died:\n{self.log_tail()}")
            time.sleep(0.05)
        raise TimeoutError(f"prompt {prompt_id} not done after {timeout} s")

    def run(self, graph: dict, timeout: float = 300) -> dict:
        return self.wait(self.queue(graph), timeout)

    def output_file(self, record: dict) -> str:
        return os.path.join(self.base, "output", record.get("subfolder", ""), record["filename"])
