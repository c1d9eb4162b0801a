"""The example workflows' API twins and the headless pipeline script, on a real ComfyUI server."""
import glob
import json
import os
import re
import subprocess

import numpy as np
import pytest
import safetensors.torch
from conftest import IMAGES
from PIL import Image, ImageDraw, ImageFont, ImageSequence
from support.comfy_host import PYTHON, REPO

from demo_model import measure

pytestmark = pytest.mark.host

UI_FILES = sorted(glob.glob(os.path.join(REPO, "example_workflows", "*.json")))
NAMES = [os.path.splitext(os.path.basename(path))[0] for path in UI_FILES]
ARTIFACTS = os.path.join(REPO, "tests", "artifacts")
REQUIRED = {"reconstruct_fixed_point", "edit_rnri", "prompt_aware_reconstruct", "interpolate_seeds",
            "exact_round_trip_edict", "edit_flowedit", "edit_rf_inversion", "reconstruct_fireflow",
            "edit_video_wan21", "rare_concept_seed_select", "attention_edit_shape", "attention_edit_masked",
            "attention_edit_dit"}
SAVERS = ("SaveImage", "SaveAnimatedWEBP", "SaveLatent")
UNESTIMATED = {"SeedfinderRFInversionInvert", "SeedfinderFireFlowInvert"}
"""Inverters whose residuals do not estimate their round trip (a steered seed; midpoint corrections): null."""
EDITS = {"edit_flowedit": ("yellow", "blue"), "edit_rf_inversion": ("yellow", "blue")}
"""The flow edits' (colour, background) by demo_model.measure: the red disc on blue turned yellow."""
RARE = {"rare_concept_seed_select": ("green", "triangle", "black")}
"""The rare-concept example's (colour, shape, background) by demo_model.measure: the held-out pair it never saw."""
SCENE_EDITS = {"attention_edit_shape": ("gray", (("red", "square"), ("blue", "square"))),
               "attention_edit_masked": ("blue", (("white", "disc"), ("yellow", "triangle"))),
               "attention_edit_dit": ("black", (("green", "triangle"),))}
"""The attention edits' whole scene by demo_model.measure.classify_scene: the edited object has the target's word
(the red disc now a square; the purple triangle, inside its mask, yellow; the yellow triangle green), and the other
object and the background are the source's."""


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def api_twin(name: str) -> dict:
    return load(os.path.join(REPO, "example_workflows", "api", f"{name}.json"))


def random_weights(prompt: dict) -> bool:
    """Whether the test host runs this example on random weights (the tiny Wan files under the real names): a Load
    CLIP of type wan is the sign."""
    return any(node["class_type"] == "CLIPLoader" and node["inputs"]["type"] == "wan" for node in prompt.values())


def on_the_test_host(prompt: dict) -> dict:
    """The API twin as the test host can run it: UMT5-XXL cannot be tiny (ComfyUI builds it at its full 5.7 B
    parameters whatever the file holds, and its tokenizer needs sentencepiece), so each prompt that a wan-type Load
    CLIP encodes becomes the test kit's random embedding of the same text (4096 wide, UMT5-XXL's width)."""
    encoders = {key for key, node in prompt.items() if node["class_type"] == "CLIPLoader"
                and node["inputs"]["type"] == "wan"}
    graph = {}
    for key, node in prompt.items():
        if key in encoders:
            continue
        if node["class_type"] == "CLIPTextEncode" and node["inputs"]["clip"][0] in encoders:
            node = {"class_type": "SeedfinderTestTextEmbedding", "inputs": {"text": node["inputs"]["text"],
                                                                          "width": 4096, "pooled": 0}}
        graph[key] = {"class_type": node["class_type"], "inputs": node["inputs"]}
    return graph


def test_every_example_has_a_thumbnail_notes_and_only_core_or_seedfinder_nodes(host):
    assert REQUIRED <= set(NAMES)
    core = {node_id for node_id, node in host.get("/object_info").items()
            if node["python_module"] == "nodes" or node["python_module"].startswith("comfy_extras")}
    for path, name in zip(UI_FILES, NAMES):
        assert os.path.getsize(os.path.join(REPO, "example_workflows", f"{name}.jpg")) > 1000, name
        types = {node["type"] for node in load(path)["nodes"]}
        assert "MarkdownNote" in types or "Note" in types, name
        assert all(t in core or t.startswith("Seedfinder") for t in types - {"MarkdownNote", "Note"}), (name, types)


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_is_generated_from_the_ui_file(host, name):
    """example_workflows/api/ is what scripts/export_api.py makes of the UI files (regenerate after editing one)."""
    from export_api import to_api
    assert to_api(load(os.path.join(REPO, "example_workflows", f"{name}.json")), host.get("/object_info")) == \
        api_twin(name)


@pytest.mark.parametrize("name", NAMES)
def test_api_twin_runs_and_saves_its_outputs(host, name):
    """Each API twin runs on the demo model and saves its outputs; its pictures (sources → results) become the
    thumbnail tests/artifacts/<name>.jpg, and the committed example_workflows/<name>.jpg must show the same."""
    prompt = api_twin(name)
    history = host.run(on_the_test_host(prompt))
    savers = [key for key, node in prompt.items() if node["class_type"] in SAVERS]
    assert savers
    for key in savers:
        records = history["outputs"][key].get("images") or history["outputs"][key].get("latents")
        assert records and all(os.path.exists(host.output_file(record)) for record in records), (name, key)
    inverters = [key for key, node in prompt.items() if node["class_type"].endswith("Invert")]
    for key in inverters:
        report = history["outputs"][key]["seedfinder"][0]
        assert report["evaluations"] >= report["steps"]
        if prompt[key]["class_type"] in UNESTIMATED:
            assert report["round_trip_estimate"] is None
        else:
            assert report["round_trip_estimate"] >= 0
    if name == "interpolate_seeds":  # five frames from one batch
        assert len(history["outputs"][savers[0]]["images"]) == 5
    if name in EDITS:
        colour, _, background = measure.classify(last_picture(host, history, savers))
        assert (colour, background) == EDITS[name], (name, colour, background)
    if name in RARE:
        assert measure.classify(last_picture(host, history, savers)) == RARE[name], name
    if name in SCENE_EDITS:
        assert measure.classify_scene(last_picture(host, history, savers)) == SCENE_EDITS[name], name
    sources = [os.path.join(host.base, "input", node["inputs"]["image"]) for node in prompt.values()
               if node["class_type"] == "LoadImage"]
    results = [host.output_file(record) for key in savers if prompt[key]["class_type"] != "SaveLatent"
               for record in history["outputs"][key]["images"]]
    if random_weights(prompt):  # its pictures would be a random model's noise: show the pipeline instead
        for path in results:
            with Image.open(path) as clip:
                assert clip.n_frames == Image.open(sources[0]).n_frames, path  # every frame came back
        thumbnail = compose_pipeline(prompt, sources[0])
    else:
        thumbnail = compose_thumbnail(sources, results)
    os.makedirs(ARTIFACTS, exist_ok=True)
    thumbnail.save(os.path.join(ARTIFACTS, f"{name}.jpg"), quality=90)
    committed = np.asarray(Image.open(os.path.join(REPO, "example_workflows", f"{name}.jpg")), dtype=float)
    fresh = np.asarray(Image.open(os.path.join(ARTIFACTS, f"{name}.jpg")), dtype=float)
    assert committed.shape == fresh.shape and np.abs(committed - fresh).mean() < 3.0, \
        f"{name}.jpg is not what the workflow makes now: copy tests/artifacts/{name}.jpg to example_workflows/"


def last_picture(host, history: dict, savers: list) -> np.ndarray:
    """The uint8 RGB picture the example's last saver saved first (its result)."""
    with Image.open(host.output_file(history["outputs"][savers[-1]]["images"][0])) as picture:
        return np.asarray(picture.convert("RGB"))


def compose_thumbnail(sources: list, results: list, size=(640, 360)) -> Image.Image:
    """The example's pictures side by side on a dark canvas: its source image(s), an arrow, then what it made."""
    canvas = Image.new("RGB", size, (24, 24, 28))
    tiles = [Image.open(path).convert("RGB") for path in sources + results]
    gap, arrow = 12, 28
    tile = min((size[0] - gap * (len(tiles) + 1) - arrow) // len(tiles), size[1] - 2 * gap)
    x, y = gap, (size[1] - tile) // 2
    draw = ImageDraw.Draw(canvas)
    for index, image in enumerate(tiles):
        if index == len(sources):
            middle = y + tile // 2
            draw.polygon([(x + 4, middle - 9), (x + arrow - 8, middle), (x + 4, middle + 9)], fill=(200, 200, 200))
            x += arrow
        canvas.paste(image.resize((tile, tile), Image.NEAREST), (x, y))
        x += tile + gap
    return canvas


def compose_pipeline(prompt: dict, source: str, size=(640, 360)) -> Image.Image:
    """An example run on random weights: the source clip's frames, the chain of nodes from the loaded clip to the
    saved one (read from the workflow), its prompts, and a line saying why no result is shown."""
    canvas = Image.new("RGB", size, (24, 24, 28))
    draw = ImageDraw.Draw(canvas)
    font, small = ImageFont.load_default(15), ImageFont.load_default(12)
    chain, key = [], next(key for key, node in prompt.items() if node["class_type"] == "SaveAnimatedWEBP")
    while key is not None:
        node = prompt[key]
        chain.insert(0, node["_meta"]["title"] or node["class_type"])
        key = next((node["inputs"][name][0] for name in ("images", "samples", "noise", "latent", "pixels")
                    if isinstance(node["inputs"].get(name), list)), None)
    with Image.open(source) as clip:
        frames = [frame.convert("RGB") for frame in ImageSequence.Iterator(clip)]
    tile, gap = 88, 10
    x = (size[0] - len(frames) * (tile + gap) + gap) // 2
    draw.text((size[0] // 2, 22), "source frames", font=small, fill=(200, 200, 200), anchor="mm")
    for index, frame in enumerate(frames):
        canvas.paste(frame.resize((tile, tile), Image.NEAREST), (x + index * (tile + gap), 34))
    box_width, top = (size[0] - 20) // len(chain), 150
    for index, title in enumerate(chain):
        left = 10 + index * box_width
        draw.rounded_rectangle((left + 4, top, left + box_width - 8, top + 56), radius=6, outline=(200, 200, 200),
                               fill=(48, 48, 56))
        words, lines = (title if " " in title else re.sub(r"(?<=[a-z])(?=[A-Z])", " ", title)).split(), [""]
        for word in words:  # wrap the title into the box
            trial = f"{lines[-1]} {word}".strip()
            lines[-1:] = [trial] if draw.textlength(trial, font=small) <= box_width - 18 else [lines[-1], word]
        draw.multiline_text((left + box_width // 2 - 2, top + 28), "\n".join(lines), font=small, fill=(235, 235, 235),
                            anchor="mm", align="center")
        if index:
            draw.polygon([(left - 6, top + 22), (left + 2, top + 28), (left - 6, top + 34)], fill=(200, 200, 200))
    texts = [node["inputs"]["text"] for node in prompt.values() if node["class_type"] == "CLIPTextEncode"]
    for row, (label, text) in enumerate(zip(("source prompt", "target prompt"), texts)):
        draw.text((20, 228 + 22 * row), f"{label}: {text}", font=small, fill=(200, 200, 200))
    draw.text((size[0] // 2, 318), "Tested on tiny Wan files with random weights: their output is noise,",
              font=font, fill=(255, 196, 120), anchor="mm")
    draw.text((size[0] // 2, 340), "so no result is shown. Load the real Wan 2.1 files to edit a clip.",
              font=font, fill=(255, 196, 120), anchor="mm")
    return canvas


def test_headless_script_saves_each_seed_beside_its_reconstruction(host, tmp_path):
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    for name in IMAGES[:2]:
        Image.open(os.path.join(host.base, "input", name)).save(images / name.replace("seedfinder_", "photo_"))
    result = subprocess.run([PYTHON, os.path.join(REPO, "scripts", "headless.py"), str(images), str(out),
                             "--server", host.url], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "2/2" in result.stderr  # the progress bar reached the end
    for stem in ("photo_demo_0", "photo_demo_1"):
        seed = safetensors.torch.load_file(out / f"{stem}.seed.latent")
        assert seed["latent_tensor"].shape == (1, 4, 8, 8) and "latent_format_version_0" in seed
        assert Image.open(out / f"{stem}.reconstruction.png").size == (64, 64)


def test_headless_script_names_a_failing_input(host, tmp_path):
    (tmp_path / "empty").mkdir()
    result = subprocess.run([PYTHON, os.path.join(REPO, "scripts", "headless.py"), str(tmp_path / "empty"),
                             str(tmp_path / "out"), "--server", host.url], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "images: expected image files" in result.stderr
