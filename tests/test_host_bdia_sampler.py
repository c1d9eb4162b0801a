"""BDIA Sampler through the real server: from a random seed, with SamplerCustomAdvanced, on the model families the
inverters support, on the trained demo UNet and on the trained DiT twin (SD3 MMDiT). γ = 0 is the stock sampler it
corrects (euler, heun) to float rounding; γ = 0.5 gives another finite picture."""

import pytest
from conftest import IMAGES
from support.graphs import on_demo_model, relative_error, saved_latent
from test_host_families import family_graph

pytestmark = pytest.mark.host

# the prediction types (ε, v, rectified flow, EDM), the DiT classes (SD3's MMDiT, Flux), and the trained demo UNet;
# the other families differ from these only in what test_host_families.py checks (schedules, latents), and the
# sampler is the same FunctionSampler that the flow methods' host tests run on video latents
FAMILIES = ("eps", "v_prediction", "flow", "edm", "sd3", "flux", "demo")
STEPS = 4
RUNS = {f"{base}_{gamma:g}": (base, gamma) for base in ("euler", "heun") for gamma in (0.0, 0.5)}
INVERSION_ONLY = ("invert", "ksampler", "custom", "save_latent_route", "save_noise_route", "save_encoded")


def sampler_graph(family: str) -> dict:
    """The family's model and prompts, sampled as `with_samplers` says through one CFGGuider."""
    graph = family_graph("eps" if family == "demo" else family, "ddim", IMAGES[0])
    if family == "demo":
        graph = on_demo_model(graph)
    for name in INVERSION_ONLY:
        graph.pop(name, None)  # a flow model's graph has no LATENT route
    scheduler = "karras" if family in ("edm", "cosmos_rflow") else "simple"
    return with_samplers(graph, scheduler)


def with_samplers(graph: dict, scheduler: str) -> dict:
    """`graph` (a CFGGuider "guider" and a latent "empty") sampled from RandomNoise over BasicScheduler's σ's by each
    BDIA Sampler of RUNS and by the stock euler and heun (KSamplerSelect), each saved as a latent."""
    model = graph["guider"]["inputs"]["model"]
    graph["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}}
    graph["sigmas"] = {"class_type": "BasicScheduler", "inputs": {"model": model, "scheduler": scheduler,
                                                                  "steps": STEPS, "denoise": 1.0}}
    samplers = {name: {"class_type": "SeedfinderBDIASampler", "inputs": {"base": base, "gamma": gamma}}
                for name, (base, gamma) in RUNS.items()}
    samplers.update({name: {"class_type": "KSamplerSelect", "inputs": {"sampler_name": name}}
                     for name in ("euler", "heun")})
    for name, node in samplers.items():
        graph[f"sampler_{name}"] = node
        graph[f"sample_{name}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["noise", 0], "guider": ["guider", 0], "sampler": [f"sampler_{name}", 0],
            "sigmas": ["sigmas", 0], "latent_image": ["empty", 0]}}
        graph[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"sample_{name}", 0],
                                                                         "filename_prefix": f"latents/bdia_{name}"}}
    return graph


def dit_graph() -> dict:
    """The DiT twin through core's loaders (UNETLoader, CLIPLoader sd3) at 128×128, the first scenes demo picture's
    caption."""
    from demo_model import install, twin
    return with_samplers({
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": twin.DIT_FILE, "weight_dtype": "default"}},
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": twin.CLIP_FILE, "type": "sd3"}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": install.scene_of(install.SCENE_DEMOS[0]).caption,
                                                           "clip": ["clip", 0]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["clip", 0]}},
        "guider": {"class_type": "CFGGuider", "inputs": {"model": ["unet", 0], "positive": ["pos", 0],
                                                        "negative": ["neg", 0], "cfg": twin.SAMPLE_CFG}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 128, "height": 128, "batch_size": 1}}},
        "simple")


def assert_bdia_corrects_its_base(host, history, label: str):
    """γ = 0 is the base sampler to float rounding; γ = 0.5 a finite picture that differs from it."""
    out = {name: saved_latent(host, history, f"save_{name}") for name in (*RUNS, "euler", "heun")}
    for base in ("euler", "heun"):
        assert relative_error(out[f"{base}_0"], out[base]) < 1e-6, (label, base)
        corrected = out[f"{base}_0.5"]
        assert corrected.isfinite().all(), (label, base)
        assert 1e-5 < relative_error(corrected, out[base]) < 1.0, (label, base)


@pytest.mark.parametrize("family", FAMILIES)
def test_bdia_sampler_generates_on_every_family(host, family):
    assert_bdia_corrects_its_base(host, host.run(sampler_graph(family)), family)


@pytest.mark.models
def test_bdia_sampler_generates_on_the_dit_twin(host):
    assert_bdia_corrects_its_base(host, host.run(dit_graph()), "dit")
