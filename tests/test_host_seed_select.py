"""SeedSelect on a real ComfyUI server with the trained demo model: a seed refined toward another picture (the loss
falls, the seed stays finite and samples), Cancel within an iteration, and references of the wrong shape named."""
import pytest
from support.graphs import (
    base_graph,
    expect_failure,
    on_demo_model,
    saved_latent,
    seconds_to_interrupt,
)

from demo_model import data, install

pytestmark = pytest.mark.host

SOURCE, REFERENCE = install.DEMO_LABELS[0], install.DEMO_LABELS[2]


STEPS = 5


def seed_select_graph(iterations: int = 3, references=("encode_ref", 0)) -> dict:
    """DDIM-invert a demo picture (5 steps, its caption), refine the seed toward another demo picture with the
    reference's caption, and sample the refined seed with euler."""
    graph = on_demo_model(base_graph(""), SOURCE)
    graph.update({
        "ref": {"class_type": "LoadImage", "inputs": {"image": install.image_name(REFERENCE)}},
        "encode_ref": {"class_type": "VAEEncode", "inputs": {"pixels": ["ref", 0], "vae": ["vae", 0]}},
        "ref_prompt": {"class_type": "CLIPTextEncode", "inputs": {"text": data.caption(REFERENCE),
                                                                  "clip": ["clip", 0]}},
        "invert": {"class_type": "SeedfinderDDIMInvert", "inputs": {
            "model": ["unet", 0], "positive": ["pos", 0], "latent": ["encode", 0], "steps": STEPS,
            "scheduler": "simple", "cfg": 1.0, "strength": 1.0, "sampler": "euler", "noise_seed": 0,
            "round_trip": "estimate"}},
        "select": {"class_type": "SeedfinderSeedSelect", "inputs": {
            "model": ["unet", 0], "positive": ["ref_prompt", 0], "cfg": 1.0, "seed": ["invert", 1],
            "references": list(references), "iterations": iterations, "learning_rate": 0.05, "semantic_weight": 10.0}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["ref_prompt", 0],
                                                         "negative": ["neg", 0], "cfg": 1.0}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "empty_large": {"class_type": "EmptyLatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}},
        "sample": {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["select", 1], "guider": ["guider", 0], "sampler": ["select", 3], "sigmas": ["select", 2],
            "latent_image": ["empty", 0]}},
        "save_seed": {"class_type": "SaveLatent", "inputs": {"samples": ["select", 0],
                                                             "filename_prefix": "latents/seed_select"}},
        "save_sample": {"class_type": "SaveLatent", "inputs": {"samples": ["sample", 0],
                                                               "filename_prefix": "latents/seed_select_sample"}},
    })
    del graph["save_encoded"]
    return graph


def test_seed_select_refines_cancels_and_names_bad_references(host):
    history = host.run(seed_select_graph())
    report = history["outputs"]["select"]["seedfinder"][0]
    losses = report["losses"]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert report["evaluations"] == 3 * 2 * STEPS + STEPS
    seed, sample = saved_latent(host, history, "save_seed"), saved_latent(host, history, "save_sample")
    assert seed.isfinite().all() and sample.isfinite().all() and seed.shape == (1, 4, 8, 8)
    # Cancel stops it within one evaluation (a few seconds here), not after its 200 iterations
    assert seconds_to_interrupt(host, seed_select_graph(iterations=200)) < 10
    expect_failure(host, seed_select_graph(references=("empty_large", 0)), "references: expected latents of shape")
