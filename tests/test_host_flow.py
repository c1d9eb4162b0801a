"""RF-Inversion, FireFlow / RF-Solver and FlowEdit on a real server: on the trained flow demo model (UNETLoader →
ModelSamplingSD3 shift 1, the way a user loads it), the tiny random flow, SD3 and Flux fixtures, and refused on
an ε model."""
import pytest
from conftest import IMAGES
from support.graphs import ESTIMATE, expect_failure, relative_error, saved_latent, seconds_to_interrupt
from test_host_families import family_graph

from demo_model import install

pytestmark = pytest.mark.host

RED_DISC = install.image_name(install.DEMO_LABELS[0])  # a red disc on a blue background


def demo_flow_graph(image: str = RED_DISC, prompt: str = "a red disc on a blue background", shift: float = 1.0):
    """The flow demo model as a user loads it, the image encoded, its prompt and an empty one."""
    return {
        "unet": {"class_type": "UNETLoader", "inputs": {"unet_name": install.UNET_FILES["flow"],
                                                        "weight_dtype": "default"}},
        "flow": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["unet", 0], "shift": shift}},
        "clip": {"class_type": "CLIPLoader", "inputs": {"clip_name": install.CLIP_FILE, "type": "stable_diffusion"}},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": install.VAE_FILE}},
        "image": {"class_type": "LoadImage", "inputs": {"image": image}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["vae", 0]}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": ["clip", 0]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["clip", 0]}},
        "empty": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "save_encoded": {"class_type": "SaveLatent", "inputs": {"samples": ["encode", 0],
                                                                "filename_prefix": "latents/flow_encoded"}},
    }


def regenerate(graph: dict, invert: str, sampler: list, name: str, cfg: float = 1.0, positive=("pos", 0)) -> dict:
    """SamplerCustomAdvanced from `invert`'s noise and sigmas with `sampler`, saved as latents/<name>."""
    graph[f"guider_{name}"] = {"class_type": "CFGGuider", "inputs": {"model": ["flow", 0], "positive": list(positive),
                                                                     "negative": ["neg", 0], "cfg": cfg}}
    graph[f"sample_{name}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": [invert, 1], "guider": [f"guider_{name}", 0], "sampler": sampler, "sigmas": [invert, 2],
        "latent_image": ["empty", 0]}}
    graph[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"sample_{name}", 0],
                                                                    "filename_prefix": f"latents/{name}"}}
    return graph


def invert_node(class_type: str, steps: int = 10, **options) -> dict:
    return {"class_type": class_type, "inputs": {"model": ["flow", 0], "positive": ["pos", 0], "latent": ["encode", 0],
                                                 "steps": steps, "scheduler": "simple", "cfg": 1.0, "strength": 1.0,
                                                 **options}}


RF_OFF = {"gamma": 0.0, "noise_seed": 0, "eta": 0.0, "start_step": 0, "stop_step": 0}


def test_rf_inversion_at_gamma_0_and_eta_0_is_plain_euler_inversion_and_sampling(host):
    graph = demo_flow_graph()
    graph["rf"] = invert_node("SeedfinderRFInversionInvert", **RF_OFF)
    graph["ddim"] = invert_node("SeedfinderDDIMInvert", sampler="euler", noise_seed=0, **ESTIMATE)
    graph["euler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    regenerate(graph, "rf", ["rf", 3], "rf_own")
    regenerate(graph, "ddim", ["euler", 0], "ddim_euler")
    history = host.run(graph)
    assert relative_error(saved_latent(host, history, "save_rf_own"),
                          saved_latent(host, history, "save_ddim_euler")) < 1e-6
    report = history["outputs"]["rf"]["seedfinder"][0]
    assert report["method"] == "rf_inversion" and report["round_trip_estimate"] is None
    assert report["evaluations"] == 10 and "warning" not in report


def rf_inversion_errors(host) -> dict:
    """RF-Inversion (γ 0.5, η 0.9 on steps 0-5 of 10) on the flow demo model: relative error to the image when its
    seed is sampled with its own sampler ("pulled"), plain euler ("plain"), and its sampler with a target prompt
    ("edited")."""
    graph = demo_flow_graph()
    graph["yellow"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a yellow disc on a blue background",
                                                                  "clip": ["clip", 0]}}
    graph["rf"] = invert_node("SeedfinderRFInversionInvert", gamma=0.5, noise_seed=3, eta=0.9, start_step=0,
                              stop_step=6)
    graph["euler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    regenerate(graph, "rf", ["rf", 3], "pulled")
    regenerate(graph, "rf", ["euler", 0], "plain")
    regenerate(graph, "rf", ["rf", 3], "edited", positive=("yellow", 0))
    history = host.run(graph)
    encoded = saved_latent(host, history, "save_encoded")
    return {name: relative_error(saved_latent(host, history, f"save_{name}"), encoded)
            for name in ("pulled", "plain", "edited")}


def test_rf_inversion_reconstructs_through_its_eta_and_edits_with_a_target_prompt(host):
    """η pulls the reverse ODE toward the image: with the source prompt the image comes back closer than plain
    euler brings the steered seed back; a target prompt moves it further."""
    errors = rf_inversion_errors(host)
    assert errors["pulled"] < 0.5 * errors["plain"]
    assert errors["edited"] > errors["pulled"]


def midpoint_round_trips(host) -> tuple:
    """DDIM, FireFlow and RF-Solver on the flow demo model at 10 steps: (round trip per method, ui report per midpoint
    solver)."""
    graph = demo_flow_graph()
    graph["euler"] = {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    graph["ddim"] = invert_node("SeedfinderDDIMInvert", sampler="euler", noise_seed=0, **ESTIMATE)
    regenerate(graph, "ddim", ["euler", 0], "ddim")
    for solver in ("fireflow", "rf_solver"):
        graph[solver] = invert_node("SeedfinderFireFlowInvert", solver=solver)
        regenerate(graph, solver, [solver, 3], solver)
    history = host.run(graph)
    encoded = saved_latent(host, history, "save_encoded")
    errors = {name: relative_error(saved_latent(host, history, f"save_{name}"), encoded)
              for name in ("ddim", "fireflow", "rf_solver")}
    return errors, {solver: history["outputs"][solver]["seedfinder"][0] for solver in ("fireflow", "rf_solver")}


def test_fireflow_and_rf_solver_round_trip_far_closer_than_ddim(host):
    errors, reports = midpoint_round_trips(host)
    assert reports["fireflow"]["evaluations"] == 11 and reports["rf_solver"]["evaluations"] == 20
    assert errors["fireflow"] < errors["ddim"] / 3 and errors["rf_solver"] < errors["ddim"] / 3
    for solver, report in reports.items():  # midpoint corrections overstate the round trip: not reported as one
        assert report["round_trip_estimate"] is None and "warning" not in report, solver


def flowedit_node(source=("pos", 0), target=("pos", 0), **options) -> dict:
    inputs = {"model": ["flow", 0], "source_positive": list(source), "source_negative": ["neg", 0],
              "target_positive": list(target), "target_negative": ["neg", 0], "latent": ["encode", 0], "steps": 10,
              "scheduler": "simple", "n_max": 8, "n_min": 0, "n_avg": 1, "source_cfg": 2.0, "target_cfg": 5.0,
              "seed": 0}
    inputs.update(options)
    return {"class_type": "SeedfinderFlowEdit", "inputs": inputs}


def test_flowedit_edits_the_colour_and_keeps_the_image_with_its_own_prompt(host):
    from demo_model import measure
    graph = demo_flow_graph()
    graph["yellow"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a yellow disc on a blue background",
                                                                  "clip": ["clip", 0]}}
    graph["same"] = flowedit_node(source_cfg=5.0)
    graph["edit"] = flowedit_node(target=("yellow", 0))
    graph["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["edit", 0], "vae": ["vae", 0]}}
    graph["save_image"] = {"class_type": "SaveImage", "inputs": {"images": ["decode", 0],
                                                                 "filename_prefix": "flowedit"}}
    graph["save_same"] = {"class_type": "SaveLatent", "inputs": {"samples": ["same", 0],
                                                                 "filename_prefix": "latents/flowedit_same"}}
    history = host.run(graph)
    encoded = saved_latent(host, history, "save_encoded")
    assert relative_error(saved_latent(host, history, "save_same"), encoded) < 1e-4
    import numpy as np
    from PIL import Image
    picture = np.asarray(Image.open(host.output_file(history["outputs"]["save_image"]["images"][0])).convert("RGB"))
    colour, _, background = measure.classify(picture)
    assert (colour, background) == ("yellow", "blue")


def test_flowedit_with_a_noise_mask_edits_inside_it_only(host):
    """The left half masked (Set Latent Noise Mask): outside the mask the edited latent is the source latent, with
    and without the plain sampling steps of n_min; inside it the colour edit moves the latent."""
    graph = demo_flow_graph()
    graph["yellow"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a yellow disc on a blue background",
                                                                  "clip": ["clip", 0]}}
    graph["half"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}}
    graph["canvas"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}
    graph["mask"] = {"class_type": "MaskComposite", "inputs": {"destination": ["canvas", 0], "source": ["half", 0],
                                                               "x": 0, "y": 0, "operation": "add"}}
    graph["masked"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["encode", 0], "mask": ["mask", 0]}}
    for n_min in (0, 2):
        graph[f"edit_{n_min}"] = flowedit_node(target=("yellow", 0), latent=["masked", 0], n_min=n_min)
        graph[f"save_{n_min}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"edit_{n_min}", 0],
                                                                         "filename_prefix": f"latents/masked_{n_min}"}}
    history = host.run(graph)
    encoded = saved_latent(host, history, "save_encoded")
    inside, outside = (..., slice(0, 4)), (..., slice(4, 8))
    for n_min in (0, 2):
        edited = saved_latent(host, history, f"save_{n_min}")
        moved, kept = relative_error(edited[inside], encoded[inside]), relative_error(edited[outside], encoded[outside])
        assert kept <= 1e-4 and moved > 0.05


FLOW_FAMILIES = ("flow", "sd3", "flux", "wan21", "hunyuan_video")


def flow_family_graph(family: str) -> dict:
    """The family's DDIM round trip (10 steps) beside RF-Inversion, FireFlow (6 steps each, regenerated by their own
    samplers) and FlowEdit with the source prompt as target, all saved."""
    graph = family_graph(family, "ddim", IMAGES[0])
    model = graph["invert"]["inputs"]["model"]
    positive, latent = graph["invert"]["inputs"]["positive"], graph["invert"]["inputs"]["latent"]
    negative = graph["custom"]["inputs"]["guider"]
    common = {"model": model, "positive": positive, "latent": latent, "steps": 6, "scheduler": "simple", "cfg": 1.0,
              "strength": 1.0}
    graph["rf"] = {"class_type": "SeedfinderRFInversionInvert", "inputs": {**common, **RF_OFF, "gamma": 0.5,
                                                                          "eta": 0.9, "stop_step": 3}}
    graph["fireflow"] = {"class_type": "SeedfinderFireFlowInvert", "inputs": {**common, "solver": "fireflow"}}
    for name in ("rf", "fireflow"):
        graph[f"custom_{name}"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": [name, 1], "guider": negative, "sampler": [name, 3], "sigmas": [name, 2],
            "latent_image": graph["custom"]["inputs"]["latent_image"]}}
        graph[f"save_{name}"] = {"class_type": "SaveLatent", "inputs": {"samples": [f"custom_{name}", 0],
                                                                        "filename_prefix": f"latents/{name}"}}
    graph["edit"] = {"class_type": "SeedfinderFlowEdit", "inputs": {
        "model": model, "source_positive": positive, "target_positive": positive, "latent": latent, "steps": 6,
        "scheduler": "simple", "n_max": 4, "n_min": 1, "n_avg": 2, "source_cfg": 1.0, "target_cfg": 1.0, "seed": 0}}
    graph["save_edit"] = {"class_type": "SaveLatent", "inputs": {"samples": ["edit", 0],
                                                                 "filename_prefix": "latents/edit"}}
    graph["save_source"] = {"class_type": "SaveLatent", "inputs": {"samples": latent,
                                                                   "filename_prefix": "latents/source"}}
    return graph


def flow_family_round_trips(host, history: dict) -> dict:
    """{"noise_route": DDIM's round trip, "fireflow": FireFlow's} to the source latent of a flow_family_graph run."""
    source = saved_latent(host, history, "save_source")
    return {name: relative_error(saved_latent(host, history, f"save_{name}"), source)
            for name in ("noise_route", "fireflow")}


@pytest.mark.parametrize("family", FLOW_FAMILIES)
def test_flow_methods_run_on_every_flow_family(host, family):
    """The tiny random fixtures: each node runs and regenerates (structure, not quality); Flux with FluxGuidance on
    both of FlowEdit's prompts; the video models on 5-D latents."""
    history = host.run(flow_family_graph(family))
    source = saved_latent(host, history, "save_source")
    for name in ("rf", "fireflow", "edit"):
        result = saved_latent(host, history, f"save_{name}")
        assert result.isfinite().all() and result.shape == source.shape, (family, name)
    assert history["outputs"]["fireflow"]["seedfinder"][0]["family"] == "CONST"
    errors = flow_family_round_trips(host, history)
    assert errors["fireflow"] < errors["noise_route"]


@pytest.mark.parametrize("node", ["SeedfinderRFInversionInvert", "SeedfinderFireFlowInvert", "SeedfinderFlowEdit"])
def test_non_flow_models_are_refused_by_name(host, node):
    graph = family_graph("eps", "ddim", IMAGES[0])
    if node == "SeedfinderFlowEdit":
        graph["invert"] = {"class_type": node, "inputs": {
            "model": ["unet", 0], "source_positive": ["pos", 0], "target_positive": ["pos", 0],
            "latent": ["encode", 0], "steps": 4, "scheduler": "simple", "n_max": 3, "n_min": 0, "n_avg": 1,
            "source_cfg": 1.0, "target_cfg": 1.0, "seed": 0}}
        graph = {key: value for key, value in graph.items() if key in ("unet", "clip", "vae", "image", "encode",
                                                                       "pos", "invert")}
        graph["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["invert", 0], "filename_prefix": "x"}}
    else:
        extra = RF_OFF if node == "SeedfinderRFInversionInvert" else {"solver": "fireflow"}
        inputs = {key: value for key, value in graph["invert"]["inputs"].items() if key not in ("sampler",
                                                                                                "noise_seed")}
        graph["invert"] = {"class_type": node, "inputs": {**inputs, **extra}}
    expect_failure(host, graph, "model:", "needs a rectified-flow model", "got EPS")


def test_a_shifted_schedule_that_leaves_eta_no_room_is_warned_about(host):
    """The shift trap: at shift 3 the first 2 of 10 steps stay within σ 1 → 0.92, where η does next to nothing."""
    graph = demo_flow_graph(shift=3.0)
    graph["rf"] = invert_node("SeedfinderRFInversionInvert", **{**RF_OFF, "gamma": 0.5, "eta": 0.9, "stop_step": 2})
    regenerate(graph, "rf", ["rf", 3], "shifted")
    report = host.run(graph)["outputs"]["rf"]["seedfinder"][0]
    assert "eta acts on σ 1.000 → 0.923 only" in report["warning"] and "shift 3" in report["warning"]


def test_flowedit_refuses_a_missing_target_negative_by_name(host):
    graph = demo_flow_graph()
    graph["edit"] = flowedit_node()
    del graph["edit"]["inputs"]["target_negative"]
    graph["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["edit", 0], "filename_prefix": "x"}}
    expect_failure(host, graph, "target_negative: required when target_cfg ≠ 1 (got target_cfg=5.0)")



def test_interrupt_stops_a_long_flowedit_promptly(host):
    """8000 evaluations queued; Cancel stops them within a few, and the next prompt runs."""
    graph = family_graph("flow", "ddim", IMAGES[0])
    graph = {key: graph[key] for key in ("unet", "patched", "clip", "vae", "image", "encode", "pos")}
    graph["edit"] = {"class_type": "SeedfinderFlowEdit", "inputs": {
        "model": ["patched", 0], "source_positive": ["pos", 0], "target_positive": ["pos", 0],
        "latent": ["encode", 0], "steps": 1000, "scheduler": "simple", "n_max": 1000, "n_min": 0, "n_avg": 4,
        "source_cfg": 1.0, "target_cfg": 1.0, "seed": 0}}
    graph["save"] = {"class_type": "SaveLatent", "inputs": {"samples": ["edit", 0], "filename_prefix": "long"}}
    assert seconds_to_interrupt(host, graph) < 5.0
    graph["edit"]["inputs"].update(steps=4, n_max=2, n_avg=1)
    assert saved_latent(host, host.run(graph), "save").isfinite().all()
