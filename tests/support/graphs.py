"""API-format graphs for the host tests: load the tiny models, invert, regenerate through both routes."""
import time

import pytest
import safetensors.torch

from solvers import BDIAOptions, EDICTOptions, FixedPointOptions, RNRIOptions, widgets

from .comfy_host import PromptFailed, PromptRejected
from .tinymodels import CLIP_FILE, UNET_FILE, VAE_FILE

INVERT = {"ddim": "SeedfinderDDIMInvert", "fixed_point": "SeedfinderFixedPointInvert", "rnri": "SeedfinderRNRIInvert",
          "edict": "SeedfinderEDICTInvert", "bdia": "SeedfinderBDIAInvert"}
EXACT = ("edict", "bdia")
ESTIMATE = {"round_trip": "estimate"}
"""The step solvers' (DDIM, FixedPoint, RNRI) round trip left to its estimate: the host tests regenerate the seed
themselves, so the node's own regeneration would be one more sampling pass per inversion that no assertion reads. A
test of the measured round trip passes {"round_trip": "measure"} in its options."""
DEFAULT_OPTIONS = {"fixed_point": widgets(FixedPointOptions()), "rnri": widgets(RNRIOptions()),
                   "edict": widgets(EDICTOptions()), "bdia": widgets(BDIAOptions())}


def base_graph(image: str, positive: str = "a photo of a cat", negative: str = "blurry") -> dict:
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_FILE, "weight_dtype": "default"}},
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": CLIP_FILE, "type": "stable_diffusion"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_FILE}},
        "image": {"class_type": "LoadImage", "inputs": {"image": image}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["vae", 0]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": positive, "clip": ["clip", 0]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": negative, "clip": ["clip", 0]}},
        "save_encoded": {"class_type": "SaveLatent", "inputs": {"samples": ["encode", 0],
                                                                "filename_prefix": "latents/encoded"}},
    }


def batch_graph(steps: int = 3, max_iterations: int = 4) -> dict:
    """scripts/batch.py's kind of workflow on the smoke-test model: FixedPoint-invert the image, regenerate it, save the
    seed (SaveLatent on the invert node) and the picture."""
    graph = {**base_graph("replaced by each item", positive="a photo")}
    del graph["neg"], graph["save_encoded"]
    graph.update({
        "invert": {"class_type": INVERT["fixed_point"], "inputs": {
            "model": ["unet", 0], "positive": ["pos", 0], "latent": ["encode", 0], "steps": steps,
            "scheduler": "simple", "cfg": 1.0, "strength": 1.0, "sampler": "euler", "noise_seed": 0,
            **DEFAULT_OPTIONS["fixed_point"], "max_iterations": max_iterations}},
        "sample": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["unet", 0], "add_noise": "disable", "noise_seed": 0, "steps": steps, "cfg": 1.0,
            "sampler_name": "euler", "scheduler": "simple", "positive": ["pos", 0], "negative": ["pos", 0],
            "latent_image": ["invert", 0], "start_at_step": 0, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["vae", 0]}},
        "save_seed": {"class_type": "SaveLatent", "inputs": {"samples": ["invert", 0],
                                                             "filename_prefix": "seedfinder/seed"}},
        "save_image": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0],
                                                             "filename_prefix": "seedfinder/reconstruction"}},
    })
    return graph


STOCHASTIC = ("euler_ancestral", "lcm")


def round_trip_graph(method: str, image: str, steps: int = 10, scheduler: str = "ddim_uniform", cfg: float = 1.0,
                     use_negative: bool = False, strength: float = 1.0, options: dict | None = None,
                     latent_node=("encode", 0), sampler: str = "euler") -> dict:
    """Invert the encoded image, then regenerate it with KSamplerAdvanced (LATENT) and SamplerCustomAdvanced (NOISE),
    both with the stock `sampler` (KSamplerAdvanced's sampler_name, KSamplerSelect).

    With a stochastic `sampler` option or an exact method, both routes sample with the invert node's sampler output
    (the LATENT route through SamplerCustom with add_noise off): only it carries the fixed noises or the partner.
    """
    graph = base_graph(image)
    inputs = {"model": ["unet", 0], "positive": ["pos", 0], "latent": list(latent_node), "steps": steps,
              "scheduler": scheduler, "cfg": cfg, "strength": strength,
              **({} if method in EXACT else {"sampler": sampler, "noise_seed": 0, **ESTIMATE}),
              **DEFAULT_OPTIONS.get(method, {}), **(options or {})}
    stock = "euler" if inputs.get("sampler", "euler") in STOCHASTIC else inputs.get("sampler", "euler")
    if use_negative:
        inputs["negative"] = ["neg", 0]
    inverted = max(1, round(steps * strength))
    graph.update({
        "invert": {"class_type": INVERT.get(method, method), "inputs": inputs},
        "ksampler": {"class_type": "KSamplerAdvanced", "inputs": {
            "model": ["unet", 0], "add_noise": "disable", "noise_seed": 0, "steps": steps, "cfg": cfg,
            "sampler_name": stock, "scheduler": scheduler, "positive": ["pos", 0], "negative": ["neg", 0],
            "latent_image": ["invert", 0], "start_at_step": steps - inverted, "end_at_step": 10000,
            "return_with_leftover_noise": "disable"}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["pos", 0],
                                                         "negative": ["neg", 0], "cfg": cfg}},
        "euler": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": stock}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "custom": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["invert", 1], "guider": ["guider", 0], "sampler": ["euler", 0], "sigmas": ["invert", 2],
            "latent_image": ["empty", 0]}},
        "save_latent_route": {"class_type": "SaveLatent", "inputs": {"samples": ["ksampler", 0],
                                                                     "filename_prefix": "latents/latent_route"}},
        "save_noise_route": {"class_type": "SaveLatent", "inputs": {"samples": ["custom", 0],
                                                                    "filename_prefix": "latents/noise_route"}},
    })
    if method in EXACT or inputs["sampler"] in STOCHASTIC:
        graph["custom"]["inputs"]["sampler"] = ["invert", 3]
        graph["ksampler"] = {"class_type": "SamplerCustom", "inputs": {
            "model": ["unet", 0], "add_noise": False, "noise_seed": 0, "cfg": cfg, "positive": ["pos", 0],
            "negative": ["neg", 0], "sampler": ["invert", 3], "sigmas": ["invert", 2], "latent_image": ["invert", 0]}}
    return graph


def on_demo_model(graph: dict, label=("red", "disc", "blue")) -> dict:
    """The same graph on the trained demo model (installed by the host fixture), with its demo image of `label` and
    that image's caption as the prompt."""
    from demo_model import data, install
    graph["unet"]["inputs"]["unet_name"] = install.UNET_FILES["eps"]
    graph["clip"]["inputs"]["clip_name"] = install.CLIP_FILE
    graph["vae"]["inputs"]["vae_name"] = install.VAE_FILE
    graph["image"]["inputs"]["image"] = install.image_name(label)
    graph["pos"]["inputs"]["text"] = data.caption(label)
    graph["neg"]["inputs"]["text"] = ""
    return graph


def rewire(graph: dict, source: list, target: list, skip: str = "") -> dict:
    """Point every input that reads `source` at `target` instead (except in node `skip`)."""
    for name, entry in graph.items():
        if name != skip:
            for key, value in entry["inputs"].items():
                if value == source:
                    entry["inputs"][key] = list(target)
    return graph


def only(graph: dict, *outputs: str) -> dict:
    """The part of `graph` that the nodes `outputs` read from (ComfyUI runs every output node of a graph: a test that
    reads some of them drops the others, and the sampling behind them)."""
    kept, todo = {}, list(outputs)
    while todo:
        name = todo.pop()
        if name not in kept:
            kept[name] = graph[name]
            todo += [value[0] for value in graph[name]["inputs"].values()
                     if isinstance(value, list) and value[0] in graph]  # a link: [node, output]
    return {name: node for name, node in graph.items() if name in kept}


def patch_model(graph: dict, node: dict) -> dict:
    """Route every use of the loaded UNet through a model-patch node (e.g. ModelSamplingDiscrete)."""
    graph["patched"] = node
    return rewire(graph, ["unet", 0], ["patched", 0], skip="patched")


def saved_latent(host, history: dict, node: str):
    record = history["outputs"][node]["latents"][0]
    return safetensors.torch.load_file(host.output_file(record))["latent_tensor"]


def relative_error(reconstructed, target) -> float:
    return float((reconstructed - target).norm() / target.norm())


def round_trip(host, method, image, demo: bool = False, routes=("latent", "noise"), **kwargs) -> tuple:
    """Run round_trip_graph (`demo`: on the demo model, `image` a label of its demo images) regenerating through
    `routes`: ({route: relative error to the encoded latent}, the invert node's ui report)."""
    graph = round_trip_graph(method, image if not demo else "", **kwargs)
    graph = only(graph, "save_encoded", *(f"save_{route}_route" for route in routes))
    history = host.run(on_demo_model(graph, image) if demo else graph)
    encoded = saved_latent(host, history, "save_encoded")
    errors = {route: relative_error(saved_latent(host, history, f"save_{route}_route"), encoded) for route in routes}
    return errors, history["outputs"]["invert"]["seedfinder"][0]


def expect_failure(host, graph, *fragments) -> str:
    """Run `graph`, expect it refused or failed with a message holding every fragment; the message."""
    with pytest.raises((PromptFailed, PromptRejected)) as caught:
        host.run(graph)
    text = caught.value.message if isinstance(caught.value, PromptFailed) else caught.value.body
    for fragment in fragments:
        assert fragment in text, text
    return text


def seconds_to_interrupt(host, graph: dict) -> float:
    """Queue a long `graph`, press Cancel a second after it starts, expect it interrupted; the seconds it took."""
    prompt_id = host.queue(graph)
    deadline = time.time() + 60
    while time.time() < deadline and not host.get("/queue")["queue_running"]:
        time.sleep(0.05)
    time.sleep(1.0)
    interrupted_at = time.time()
    host.post("/interrupt", {})
    with pytest.raises(PromptFailed) as caught:
        host.wait(prompt_id, timeout=60)
    assert "execution_interrupted" in caught.value.kinds
    return time.time() - interrupted_at


def loaded_latent_graph(name: str, image: str, **kwargs) -> dict:
    """A FixedPoint round trip of the latent file `name` (LoadLatent) instead of the encoded image."""
    graph = round_trip_graph("fixed_point", image, latent_node=("load", 0), **kwargs)
    graph["load"] = {"class_type": "LoadLatent", "inputs": {"latent": name}}
    return graph


def prompt_samples_graph(files: dict, clip_type: str, latent: dict, prompts, steps: int, cfg: float) -> dict:
    """Core's UNETLoader, CLIPLoader (`clip_type`) and VAELoader on `files` ({"unet", "clip", "vae": file name}), and
    per prompt a KSampler (euler/normal, seed = the prompt's index, the empty prompt as negative) from the `latent`
    node (an empty-latent node), decoded and saved by `save<i>`."""
    graph = {"unet": {"class_type": "UNETLoader", "inputs": {"unet_name": files["unet"], "weight_dtype": "default"}},
             "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": files["clip"], "type": clip_type}},
             "vae": {"class_type": "VAELoader", "inputs": {"vae_name": files["vae"]}},
             "empty_prompt": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["clip", 0]}},
             "latent": latent}
    for i, prompt in enumerate(prompts):
        graph.update({
            f"prompt{i}": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["clip", 0]}},
            f"sample{i}": {"class_type": "KSampler", "inputs": {
                "model": ["unet", 0], "seed": i, "steps": steps, "cfg": cfg, "sampler_name": "euler",
                "scheduler": "normal", "positive": [f"prompt{i}", 0], "negative": ["empty_prompt", 0],
                "latent_image": ["latent", 0], "denoise": 1.0}},
            f"decode{i}": {"class_type": "VAEDecode", "inputs": {"samples": [f"sample{i}", 0], "vae": ["vae", 0]}},
            f"save{i}": {"class_type": "SaveImage", "inputs": {"images": [f"decode{i}", 0],
                                                               "filename_prefix": f"prompt_samples/sample{i}"}}})
    return graph


def saved_images(host, history: dict, node: str) -> list:
    """The uint8 RGB arrays a SaveImage node wrote."""
    import numpy as np
    from PIL import Image
    return [np.asarray(Image.open(host.output_file(record)).convert("RGB"))
            for record in history["outputs"][node]["images"]]
