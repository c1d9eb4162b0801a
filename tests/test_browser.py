"""The artist's view: ComfyUI's official frontend in headless Chromium, every example workflow loaded and queued.

Debian's chromium runs with the flags that keep it off the network (no component updates, sync, metrics or
background requests); Playwright drives it through the DevTools protocol. Screenshots of each finished workflow go
to tests/artifacts/ (docs/usage.md shows one of them, docs/screenshot.png).
"""
import glob
import json
import os
import re
import shutil
import urllib.request

import pytest
from support.comfy_host import REPO

pytestmark = [pytest.mark.host, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
OFFLINE_FLAGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-default-apps", "--disable-domain-reliability", "--no-first-run",
                 "--metrics-recording-only", "--disable-client-side-phishing-detection", "--disable-breakpad",
                 "--no-pings", "--disable-features=OptimizationHints,MediaRouter,Translate"]
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")
WORKFLOWS = sorted(glob.glob(os.path.join(REPO, "example_workflows", "*.json")))
SETTINGS = {"Comfy.TutorialCompleted": True, "Comfy.Minimap.Visible": False,
            "LiteGraph.Canvas.LowQualityRenderingZoomThreshold": 0.2}
RUN_TIMEOUT_MS = 240_000
INVERT_NODE = re.compile(r"^Seedfinder.*Invert$")  # the nodes the convergence chart is drawn on
# Run once, as their API twins (test_workflows.py), which the frontend is checked to queue: the examples on the wide
# scenes UNet (about 25 s a run on 2 cores) and two more FixedPoint examples (15-18 s); FixedPoint's chart is shown
# here on reconstruct_fixed_point, prompt_aware_reconstruct, attention_edit_dit and edit_video_wan21
RUN_BY_THEIR_TWINS_ONLY = ("attention_edit_shape", "attention_edit_masked", "interpolate_seeds",
                           "rare_concept_seed_select")

# Listens to the server's events, finds what the page shows as errors, and reads the chart state of invert nodes.
WATCH_EVENTS = """() => {
    window.seedfinderEvents = [];
    for (const type of ["execution_start", "execution_cached", "execution_success", "execution_error",
                        "execution_interrupted"])
        app.api.addEventListener(type, (event) => window.seedfinderEvents.push([type, event.detail]));
}"""
PAGE_ERRORS = """() => {
    const texts = [...document.querySelectorAll(".p-toast-message-error, .p-dialog, .comfy-modal")]
        .filter((element) => element.offsetParent !== null).map((element) => element.innerText);
    return texts.filter((text) => /error|missing|failed/i.test(text));
}"""
CHARTS = """() => app.graph._nodes.filter((node) => /^Seedfinder.*Invert$/.test(node.type)).map((node) => ({
    id: node.id, type: node.type, size: [...node.size], report: node.seedfinderReport || null,
    chart: node.seedfinderChart || null}))"""


def post_settings(url: str) -> None:
    request = urllib.request.Request(url + "/api/settings", data=json.dumps(SETTINGS).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=30).close()


@pytest.fixture(scope="module")
def page(host):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=OFFLINE_FLAGS)
        context = browser.new_context(viewport={"width": 1920, "height": 1080})
        page = context.new_page()
        page.console_errors = []
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        post_settings(host.url)
        page.goto(host.url)
        page.wait_for_function("window.app && app.graph && window.LiteGraph && app.api", timeout=120_000)
        page.evaluate(WATCH_EVENTS)
        yield page
        browser.close()


def queue_and_wait(page, ending: str) -> None:
    """Queue the loaded workflow as the Run button does and wait for an event matching `ending`. The canvas is
    not redrawn meanwhile (the chart checks draw it again): on 2 cores the renderer would slow the server down."""
    page.evaluate("async () => { app.canvas.pause_rendering = true; await app.queuePrompt(0, 1); }")
    try:
        page.wait_for_function(f"window.seedfinderEvents.some((e) => {ending}.test(e[0]))", timeout=RUN_TIMEOUT_MS)
    finally:
        page.evaluate("() => { app.canvas.pause_rendering = false; }")


def on_the_test_host(workflow: dict) -> dict:
    """The UI workflow as the test host can run it (tests/test_workflows.py does the same to the API twins): UMT5-XXL
    cannot be tiny, so each prompt a wan-type Load CLIP encodes becomes the test kit's random embedding of its text."""
    encoders = {node["id"] for node in workflow["nodes"]
                if node["type"] == "CLIPLoader" and node["widgets_values"][1] == "wan"}
    dropped = {link[0] for link in workflow["links"] if link[1] in encoders}
    nodes = []
    for node in workflow["nodes"]:
        if node["id"] in encoders:
            continue
        if node["type"] == "CLIPTextEncode" and any(entry.get("link") in dropped for entry in node["inputs"]):
            node = {**node, "type": "SeedfinderTestTextEmbedding", "inputs": [], "properties": {},
                    "widgets_values": [node["widgets_values"][0], 4096, 0]}
        nodes.append(node)
    return {**workflow, "nodes": nodes, "links": [link for link in workflow["links"] if link[0] not in dropped]}


def run_workflow(page, workflow: dict) -> None:
    """Load a UI workflow as a user does, queue it and wait for the server to finish it."""
    workflow = on_the_test_host(workflow)
    page.evaluate("async (workflow) => { window.seedfinderEvents = []; await app.loadGraphData(workflow); }", workflow)
    missing = page.evaluate("() => app.graph._nodes.map((n) => n.type)"
                            ".filter((t) => !LiteGraph.registered_node_types[t])")
    assert not missing, f"missing nodes: {missing}"
    queue_and_wait(page, "/success|error|interrupted/")
    events = page.evaluate("window.seedfinderEvents")
    errors = [detail for kind, detail in events if kind in ("execution_error", "execution_interrupted")]
    assert not errors, errors
    cached = [detail["nodes"] for kind, detail in events if kind == "execution_cached"]
    invert_nodes = page.evaluate("() => app.graph._nodes.filter((n) => /Invert$/.test(n.type))"
                                 ".map((n) => String(n.id))")
    assert not set(invert_nodes) & set(sum(cached, [])), "an invert node was cached: it would not report again"


def drawn_charts(page) -> list:
    page.evaluate("() => app.canvas.draw(true, true)")
    return page.evaluate(CHARTS)


FIT_VIEW = """() => {
    const nodes = app.graph._nodes, title = LiteGraph.NODE_TITLE_HEIGHT, margin = 30, left = 80, top = 110;
    const minX = Math.min(...nodes.map((n) => n.pos[0])), maxX = Math.max(...nodes.map((n) => n.pos[0] + n.size[0]));
    const minY = Math.min(...nodes.map((n) => n.pos[1] - title));
    const maxY = Math.max(...nodes.map((n) => n.pos[1] + n.size[1]));
    const element = app.canvas.canvas;
    const scale = Math.min((element.clientWidth - left - margin) / (maxX - minX),
                           (element.clientHeight - top - margin) / (maxY - minY));
    app.canvas.ds.scale = scale;
    app.canvas.ds.offset = [left / scale - minX, top / scale - minY];
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
}"""


def screenshot(page, name: str) -> None:
    """The whole graph in view, saved as tests/artifacts/<name>.png (the workflows' thumbnails show their pictures
    instead: tests/test_workflows.py)."""
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.evaluate(FIT_VIEW)
    page.screenshot(path=os.path.join(ARTIFACTS, f"{name}.png"))


@pytest.mark.parametrize("path", WORKFLOWS, ids=[os.path.basename(p)[:-5] for p in WORKFLOWS])
def test_the_frontend_queues_what_the_api_twin_runs(page, path):
    """The prompt the frontend builds from each UI workflow (what its Run button queues) is the API twin that
    tests/test_workflows.py runs and checks: same nodes, classes and inputs."""
    with open(path) as f:
        workflow = json.load(f)
    name = os.path.basename(path)[:-5]
    with open(os.path.join(REPO, "example_workflows", "api", f"{name}.json")) as f:
        twin = json.load(f)
    queued = page.evaluate("async (workflow) => { await app.loadGraphData(workflow); "
                           "return (await app.graphToPrompt()).output; }", workflow)
    assert {key: (node["class_type"], node["inputs"]) for key, node in queued.items()} == \
        {key: (node["class_type"], node["inputs"]) for key, node in twin.items()}


@pytest.mark.parametrize("path", WORKFLOWS, ids=[os.path.basename(p)[:-5] for p in WORKFLOWS])
def test_example_workflow_runs_in_the_browser_with_the_chart_drawn(page, path):
    if os.path.basename(path)[:-5] in RUN_BY_THEIR_TWINS_ONLY:
        pytest.skip("runs as its API twin in tests/test_workflows.py (the frontend queues that twin: "
                    "test_the_frontend_queues_what_the_api_twin_runs)")
    with open(path) as f:
        workflow = json.load(f)
    run_workflow(page, workflow)
    charts = drawn_charts(page)
    # one chart per invert node; FlowEdit edits without inverting, so its example has none
    assert len(charts) == sum(1 for node in workflow["nodes"] if INVERT_NODE.match(node["type"]))
    for node in charts:
        assert node["report"] and node["report"]["residuals"], node
        chart = node["chart"]
        assert chart and chart["box"]["height"] >= 100 and chart["points"] >= node["report"]["steps"], node
    screenshot(page, os.path.basename(path)[:-5])
    if charts:
        first = charts[0]
        page.evaluate("([id]) => { const node = app.graph.getNodeById(id); node.setSize([node.size[0] + 150, "
                      "node.size[1] + 80]); }", [first["id"]])
        resized = next(node for node in drawn_charts(page) if node["id"] == first["id"])
        assert resized["chart"]["drawnAt"] > first["chart"]["drawnAt"]
        assert resized["chart"]["box"]["width"] == pytest.approx(first["chart"]["box"]["width"] + 150)
        assert resized["chart"]["box"]["height"] == pytest.approx(first["chart"]["box"]["height"] + 80)
    assert not page.evaluate(PAGE_ERRORS)
    assert not page.console_errors, page.console_errors


def test_the_chart_follows_reruns_with_other_settings(page):
    with open(os.path.join(REPO, "example_workflows", "reconstruct_fixed_point.json")) as f:
        workflow = json.load(f)
    set_strength = """([strength]) => app.graph._nodes.find((n) => n.type === "SeedfinderFixedPointInvert")
        .widgets.find((w) => w.name === "strength").value = strength"""
    reports = []
    for strength, steps in ((0.5, 5), (0.3, 3)):
        if not reports:
            page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", workflow)
        page.evaluate(set_strength, [strength])
        page.evaluate("() => { window.seedfinderEvents = []; }")
        queue_and_wait(page, "/success/")
        node = drawn_charts(page)[0]
        assert node["report"]["steps"] == steps and len(node["report"]["residuals"]) == steps
        assert node["chart"]["steps"] == steps
        reports.append(node)
    assert reports[1]["chart"]["drawnAt"] > reports[0]["chart"]["drawnAt"]



# Where a node's title bar is on the page, in CSS pixels (the whole graph is in view: FIT_VIEW).
NODE_TITLE = """([type]) => {
    const node = app.graph._nodes.find((n) => n.type === type);
    const [x, y] = app.canvas.ds.convertOffsetToCanvas([node.pos[0] + node.size[0] / 2,
                                                        node.pos[1] - LiteGraph.NODE_TITLE_HEIGHT / 2]);
    const box = app.canvas.canvas.getBoundingClientRect();
    return [box.left + x / (window.devicePixelRatio || 1), box.top + y / (window.devicePixelRatio || 1)];
}"""


def node_help(page, node_type: str, shows: str) -> str:
    """Click a node's title, then the selection toolbox's Info button, and wait until the node-help panel shows `shows`;
    its text. (Without a page the panel falls back to the node's description and tooltips: `shows` must be a
    phrase only the page has.)"""
    page.evaluate(FIT_VIEW)
    page.mouse.click(*page.evaluate(NODE_TITLE, [node_type]))
    page.click("[data-testid='info-button']")
    page.wait_for_function("([phrase]) => document.querySelector('.node-help-content')?.innerText.includes(phrase)",
                           arg=[shows], timeout=30_000)
    return page.locator(".node-help-content").inner_text()


def test_the_node_help_panel_shows_our_page_and_core_nodes_pages(page):
    """Our nodes' pages are found where the frontend looks (web/docs/<NodeId>.md, tests/test_docs.py), and core
    nodes' pages come from ComfyUI's own comfyui-embedded-docs, as in a user's ComfyUI."""
    with open(os.path.join(REPO, "example_workflows", "reconstruct_fixed_point.json")) as f:
        workflow = json.load(f)
    page.evaluate("async (workflow) => { await app.loadGraphData(workflow); }", workflow)
    fetched = []
    page.on("response", lambda response: fetched.append((response.url, response.status)))
    text = node_help(page, "SeedfinderFixedPointInvert", "the seed is valid only together with them")
    assert "Warning: euler_ancestral and lcm seeds" in text and "max_iterations" in text, text[:500]
    assert any(url.endswith("/extensions/seedfinder/docs/SeedfinderFixedPointInvert.md") and status == 200
               for url, status in fetched), fetched
    node_help(page, "KSamplerAdvanced", "designed to enhance the sampling process")
    assert any(url.endswith("/docs/KSamplerAdvanced/en.md") and status == 200 for url, status in fetched), fetched
    assert not page.console_errors, page.console_errors
