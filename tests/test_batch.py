"""scripts/batch.py on a local Ray cluster on CPU: the test host's server alone (interrupted by Ctrl-C, then resumed),
then two workers that each start a ComfyUI server, one of them killed mid-run; a corrupt image; a re-run."""
import json
import os
import signal
import subprocess
import time

import psutil
import pytest
import safetensors.torch
from support.comfy_host import PYTHON, REPO, STUBS, default_ctrl_c
from support.graphs import batch_graph
from support.tinymodels import smooth_image

from scripts.headless import Server

pytestmark = pytest.mark.host

BATCH = [PYTHON, os.path.join(REPO, "scripts", "batch.py")]
FRAMES = [f"frame_{index}" for index in range(6)]
STEPS = 3  # with 4 fixed-point iterations a step, a second or two an item on the smoke-test model: time to kill a
# server in the middle of one


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
    workflow.write_text(json.dumps(batch_graph(steps=STEPS, max_iterations=4)))
    return folder


def batch(image_set, out, *args, inputs=None) -> subprocess.Popen:
    """The command on the image set (or `inputs`), its output in <out>.log."""
    env = dict(os.environ, PYTHONPATH=STUBS, HF_HUB_OFFLINE="1", DO_NOT_TRACK="1")
    log = open(f"{out}.log", "w")
    return subprocess.Popen([*BATCH, str(image_set / "workflow.json"), str(inputs or image_set / "images"), str(out),
                             *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=default_ctrl_c)


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
    """The condition's first true value, while the batch runs."""
    deadline = time.time() + timeout
    while not (value := condition()):
        assert process.poll() is None and time.time() < deadline, "the batch ended (or stalled) before the test acted"
        time.sleep(0.05)
    return value


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


def own_servers(host, work, workers: int) -> list:
    """The command's arguments for workers that start the test host's ComfyUI (its models) themselves."""
    return ["--comfyui", host.root, "--workers", str(workers), "--work", str(work), "--",
            "--cpu", "--base-directory", host.base, "--disable-api-nodes"]


def alive(pid: int) -> bool:
    return psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


@pytest.fixture(scope="module")
def single_server(host, image_set):
    """The set through one worker and the server it starts, Ctrl-C after two rows, then the same command again.

    The reference for the seeds: a worker's server, as Ray runs it (one CPU: OMP_NUM_THREADS=1), not the test host's
    (CPU float sums depend on the thread count)."""
    out, work = image_set / "single", image_set / "single_servers"
    process = batch(image_set, out, *own_servers(host, work, 1))
    wait_for(lambda: len(manifest(out)) >= 2, process)
    process.send_signal(signal.SIGINT)
    interrupted = (finish(process, out), process.returncode, manifest(out),
                   json.loads((work / "worker-0.json").read_text())["pid"])
    resumed = batch(image_set, out, *own_servers(host, work, 1))
    return out, interrupted, finish(resumed, out)


def test_ctrl_c_leaves_a_consistent_manifest_and_the_next_run_finishes_it(single_server, image_set):
    out, (log, code, rows, server), resumed_log = single_server
    assert code == 130 and "interrupted (run again to finish them)" in log, log
    assert 2 <= len(rows) < 7
    for row in rows:  # a row means its files are written, whole
        assert all(os.path.getsize(os.path.join(out, name)) > 0 for name in row["outputs"])
    assert not [name for name in os.listdir(out) if name.endswith(".partial")]
    assert not alive(server)  # the busy worker's server ended with it
    assert_every_item_once(manifest(out), image_set)
    assert f"{len(rows)} skipped (already in the manifest)" in resumed_log, resumed_log


def test_attaches_to_a_running_server(host, image_set, tmp_path):
    out = tmp_path / "out"
    process = batch(image_set, out, "--server", host.url, inputs=image_set / "images" / "frame_0.png")
    log = finish(process, out)
    [row] = manifest(out)
    assert (row["stem"], row["status"], row["server"], row["worker"]) == ("frame_0", "done", host.url, "server-0"), log
    assert process.returncode == 0 and "exit 0: every item done" in log
    assert safetensors.torch.load_file(out / "frame_0.seed.latent")["latent_tensor"].shape == (1, 4, 8, 8)


LOOPBACK = ("127.0.0.1", "::ffff:127.0.0.1", "::1")


def listening(process: subprocess.Popen) -> set:
    """(process name, address) of every socket the command's processes (its own Ray cluster's among them) listen on."""
    try:
        family = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    found = set()
    for member in family:
        try:
            found |= {(member.name(), connection.laddr.ip) for connection in member.net_connections(kind="inet")
                      if connection.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass  # ended between the listing and the look
    return found


def test_a_dotted_name_keeps_its_outputs_and_the_own_cluster_listens_on_loopback_only(host, image_set, tmp_path):
    """An item named with '..' (a file name ComfyUI's /view refuses) gets its outputs under its own stem; the Ray
    cluster the command starts for itself listens on 127.0.0.1 only."""
    from PIL import Image
    folder, out = tmp_path / "dotted", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(smooth_image(300)).save(folder / "holiday..2024.png")
    process = batch(image_set, out, "--server", host.url, inputs=folder)
    sockets = set()
    while process.poll() is None:
        sockets |= listening(process)
        time.sleep(0.1)
    log = finish(process, out)
    [row] = manifest(out)
    assert row["status"] == "done" and process.returncode == 0, log
    assert row["outputs"] == ["holiday..2024.reconstruction.png", "holiday..2024.seed.latent"]
    assert {name for name, _ in sockets} >= {"gcs_server", "raylet"}, sockets  # the cluster was seen running
    assert all(ip in LOOPBACK for _, ip in sockets), sockets


def test_an_item_past_its_timeout_is_interrupted_retried_and_recorded_as_failed(host, image_set, tmp_path):
    out = tmp_path / "out"
    process = batch(image_set, out, "--server", host.url, "--timeout", "0.05", "--retries", "1",
                    inputs=image_set / "images" / "frame_2.png")
    log = finish(process, out)
    [row] = manifest(out)
    assert row["status"] == "failed" and row["attempts"] == 2 and row["error"].startswith("TimeoutError"), log
    assert "--timeout 0.05 s" in row["error"] and "raise --timeout" in row["error"]
    assert "0 done, 0 error, 1 failed" in log and "exit 4: 1 item(s) not done" in log and process.returncode == 4
    assert "Interrupting prompt" in host.log()  # its own prompt, not a global interrupt
    deadline = time.time() + 60
    while host.get("/queue")["queue_running"]:  # and the server is free again
        assert time.time() < deadline
        time.sleep(0.1)


def test_a_killed_server_is_retried_on_the_other_worker_and_every_seed_matches_one_server(host, image_set,
                                                                                          single_server):
    out, work = image_set / "two", image_set / "work"
    process = batch(image_set, out, *own_servers(host, work, 2))
    servers = [work / f"worker-{index}.json" for index in range(2)]

    def busy_server():
        """A worker's server in the middle of a frame's prompt (not the corrupt image's, which would be retried too),
        once both run and the first item is recorded."""
        if not manifest(out) or not all(path.exists() for path in servers):
            return None
        for path in servers:
            started = json.loads(path.read_text())
            try:
                running = Server(started["url"]).json("/queue", timeout=2)["queue_running"]
                if running and "frame_" in json.dumps(running[0][2]):
                    return path, started
            except OSError:
                pass  # still starting
        return None

    path, killed = wait_for(busy_server, process)
    os.kill(killed["pid"], signal.SIGKILL)
    log = finish(process, out)
    assert process.returncode == 3 and "exit 3: 1 item(s) ended error" in log, log  # the corrupt image
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
    rerun = batch(image_set, out, "--comfyui", host.root, "--workers", "2", "--work", str(work))
    again = finish(rerun, out)
    assert "0 done, 0 error, 0 failed, 7 skipped" in again and len(manifest(out)) == len(rows), again
    assert rerun.returncode == 3  # the corrupt image's row still stands
    assert "Ray" not in again and time.time() - started < 30  # nothing to do: no cluster, no server started


def test_input_sets_folder_glob_list_file_and_uri(tmp_path):
    """A folder's images, a glob, a list file (relative lines, comments) and the same folder as a file:// URI."""
    from batch import list_items
    (tmp_path / "shot" / "deep").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "notes.txt", "deep/c.png"):
        (tmp_path / "shot" / name).write_bytes(b"")
    shot = str(tmp_path / "shot")
    assert list_items(shot) == [f"{shot}/a.png", f"{shot}/b.jpg"]
    assert list_items(f"{shot}/**/*.png") == [f"{shot}/a.png", f"{shot}/deep/c.png"]
    (tmp_path / "items.txt").write_text("# frames\nshot/a.png\n\nshot/deep/c.png\n")
    assert list_items(str(tmp_path / "items.txt")) == [f"{shot}/a.png", f"{shot}/deep/c.png"]
    assert list_items(f"file://{shot}") == [f"file://{shot}/a.png", f"file://{shot}/b.jpg"]
    assert list_items(f"file://{shot}/*.png") == [f"file://{shot}/a.png"]
    with pytest.raises(ValueError, match="inputs: expected a folder, a glob or a list file"):
        list_items(str(tmp_path / "missing"))


def test_manifest_keeps_the_last_row_of_each_item_and_ignores_a_line_cut_short(tmp_path):
    from headless import Manifest
    rows = [{"item": "a", "status": "failed"}, {"item": "b", "status": "error"}, {"item": "a", "status": "done"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows) + '{"item": "c", "st')
    manifest = Manifest(str(tmp_path), "test")
    assert manifest.finished("a") and manifest.finished("b") and not manifest.finished("c")
    assert manifest.unreadable == 1
    manifest.append({"item": "c", "status": "failed"})
    manifest.close()
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert json.loads(lines[-1]) == {"item": "c", "status": "failed"} and len(lines) == 5
    assert not Manifest(str(tmp_path), "test").finished("c")  # failed: a re-run tries it again
